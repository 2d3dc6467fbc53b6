"""N blocked against the per-query gather, and dat_pp_tiny against dat_tiny, in one run.

Prints five tables:
  1. exactness: the largest float64 difference between the blocked form and the gather, in the
     output and in the gradients of q, k, v and the bias, on odd, even and non-square maps, maps
     equal to the kernel, maps smaller than ``T + k - 1``, one smaller than the kernel (whole
     module, padded and cropped), k = 3, 5, 7 (target: at most 1e-10);
  2. the N module at DAT++-T's stage shapes at 224 px (k = 7): blocked against gather,
     forward+backward ms and peak memory;
  3. (``--tiles``) forward+backward ms of the blocked module per tile side T, to choose T;
  4. D's relative position term: ``grid_sample`` of the table (what D runs) against four
     integer-shifted gathers of the zero-padded table (a candidate: the bilinear weights depend
     only on the sampled point), float64 differences and forward+backward ms, at
     ``dat_pp_tiny``'s four D shapes;
  5. a ``dat_pp_tiny`` train step (forward+backward) against ``dat_tiny``'s (targets: at most
     1.5x the time, 1.1x the peak memory), and the tensors each model saves for backward, by
     the module that saves them (what the peak memory is made of).

Times: every candidate of a table in this process, interleaved, ``--repeats`` times, median
(and range) of the per-step milliseconds; a busy minute of a shared machine falls on all alike.
Peak memory: each workload in a fresh process (``peak_memory.py``).

    python benchmarks/bench_neighborhood.py [--batch 2] [--steps 2] [--repeats 3]
        [--threads 1] [--device cpu|cuda] [--dtype fp32|bf16] [--tiles 4,7,8,14] [--no-models]
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from peak_memory import peak_mib

import dat_lab.models as dm
from dat_lab.models.attention import NeighborhoodAttention
from dat_lab.models.attention.neighborhood import (
    blocked_neighborhood_attention,
    gathered_neighborhood_attention,
    tile_size,
)

STAGES = [(56, 64, 2), (28, 128, 4), (14, 256, 8)]  # DAT++-T's N stages at 224 px
KERNEL = 7
EXACT_CASES = [  # h, w, k, T, what the case covers
    (9, 9, 3, 4, "odd, tiles not dividing it"),
    (8, 8, 5, 4, "even"),
    (11, 6, 5, 3, "non-square"),
    (20, 13, 7, 5, "non-square, interior tiles"),
    (7, 7, 7, 8, "map = kernel"),
    (10, 12, 7, 8, "map < T + k - 1"),
    (15, 15, 3, 8, "k = 3"),
    (16, 12, 5, 8, "k = 5"),
    *((s, s, KERNEL, tile_size(s, s, KERNEL), f"{s}^2 stage, k = 7") for s, _, _ in STAGES),
]
MODELS = ("dat_pp_tiny", "dat_tiny")
# dat_pp_tiny's D blocks at 224 px: map side, offset groups; 49 keys and 2 heads per group each
D_STAGES = [(56, 1), (28, 2), (14, 4), (7, 8)]


def exactness(h: int, w: int, kernel: int, tile: int, heads: int = 2, d: int = 8) -> list[float]:
    """Largest float64 |blocked - gather| in the output and the gradients of q, k, v, bias."""
    torch.manual_seed(0)
    qkv = torch.randn(1, h, w, 3, heads, d, dtype=torch.double, requires_grad=True)
    rpb = torch.randn(heads, 2 * kernel - 1, 2 * kernel - 1, dtype=torch.double)
    rpb.requires_grad_()
    outs = [
        blocked_neighborhood_attention(qkv, rpb, kernel, tile),
        gathered_neighborhood_attention(qkv, rpb, kernel),
    ]
    grad = torch.randn_like(outs[0])
    (dqkv_b, drpb_b), (dqkv_g, drpb_g) = (torch.autograd.grad(o, (qkv, rpb), grad) for o in outs)
    diffs = [(outs[0] - outs[1]).abs().max().item()]
    diffs += [(dqkv_b[:, :, :, i] - dqkv_g[:, :, :, i]).abs().max().item() for i in range(3)]
    return diffs + [(drpb_b - drpb_g).abs().max().item()]


def gathered_module_forward(m: NeighborhoodAttention, x: torch.Tensor) -> torch.Tensor:
    """The module with the gather instead of the blocked form (same padding and crop)."""
    b, h0, w0, c = x.shape
    x = F.pad(x, (0, 0, 0, max(0, m.kernel - w0), 0, max(0, m.kernel - h0)))
    qkv = m.qkv(x).view(b, *x.shape[1:3], 3, m.heads, c // m.heads)
    return m.proj(gathered_neighborhood_attention(qkv, m.rpb, m.kernel))[:, :h0, :w0]


def module_exactness(h: int, w: int, kernel: int) -> list[float]:
    """The whole module (padding and crop included) on a map smaller than the kernel."""
    torch.manual_seed(0)
    m = NeighborhoodAttention(16, 2, kernel).double()
    with torch.no_grad():
        m.rpb.normal_()
    x = torch.randn(2, h, w, 16, dtype=torch.double, requires_grad=True)
    params = [x, m.rpb, m.qkv.weight, m.proj.weight]
    outs = [m(x), gathered_module_forward(m, x)]
    grad = torch.randn_like(outs[0])
    grads = [torch.autograd.grad(o, params, grad) for o in outs]
    return [(outs[0] - outs[1]).abs().max().item()] + [
        (a - b).abs().max().item() for a, b in zip(*grads, strict=True)
    ]


def print_exactness() -> bool:
    print("\n| map | k | T | case | out | dq | dk | dv | d rpb |")
    print("|---|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for h, w, k, tile, what in EXACT_CASES:
        diffs = exactness(h, w, k, tile)
        worst = max(worst, *diffs)
        print(
            f"| {h}x{w} | {k} | {tile} | {what} | " + " | ".join(f"{d:.1e}" for d in diffs) + " |"
        )
    diffs = module_exactness(5, 4, KERNEL)
    worst = max(worst, *diffs)
    print(
        f"| 5x4 | {KERNEL} | - | map < kernel, whole module: out, dx, d rpb, d W_qkv, d W_proj | "
        + " | ".join(f"{d:.1e}" for d in diffs)
        + " |"
    )
    ok = worst <= 1e-10
    print(f"largest float64 difference {worst:.1e} (target <= 1e-10): {'ok' if ok else 'FAILED'}")
    return ok


def workload(name: str, args) -> Callable[[], None]:
    """One forward+backward step of ``name``: ``N-blocked@56``, ``N-gather@56``, a preset."""
    torch.manual_seed(0)
    dev = args.device
    autocast = torch.autocast(dev, dtype=torch.bfloat16) if args.dtype == "bf16" else nullcontext()
    if name in MODELS:
        model = dm.build_model(dm.get_preset(name)).to(dev).train()
        x = torch.randn(args.batch, 3, 224, 224, device=dev)
        forward = model
    else:
        kind, side = name.split("@")
        size, c, heads = next(s for s in STAGES if s[0] == int(side.split("/")[0]))
        tile = int(side.split("/")[1]) if "/" in side else None
        m = NeighborhoodAttention(c, heads, KERNEL, tile).to(dev)
        x = torch.randn(args.batch, size, size, c, device=dev, requires_grad=True)
        forward = m if kind == "N-blocked" else (lambda t: gathered_module_forward(m, t))

    def step() -> None:
        with autocast:
            out = forward(x)
        out.float().square().mean().backward()

    return step


def time_interleaved(names: list[str], args) -> dict[str, list[float]]:
    """Per-step ms of every workload, interleaved, ``args.repeats`` times (after a warm-up)."""
    steps = {name: workload(name, args) for name in names}
    for step in steps.values():
        step()
    ms: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.repeats):
        for name, step in steps.items():
            _sync(args.device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            _sync(args.device)
            ms[name].append((time.perf_counter() - t0) / args.steps * 1000)
    return ms


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _peak_child(name: str, args, out) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    step = workload(name, args)
    out.put(peak_mib(lambda: (step(), step()), args.device))


def peak_in_own_process(name: str, args) -> float:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_peak_child, args=(name, args, q))
    p.start()
    p.join()
    if p.exitcode != 0 or q.empty():
        raise RuntimeError(f"measuring the peak memory of {name} failed (exit {p.exitcode})")
    return q.get()


def _fmt(ms: list[float]) -> str:
    return f"{statistics.median(ms):.1f} ({min(ms):.1f}-{max(ms):.1f})"


def print_modules(args) -> None:
    print(
        f"\nN module, k = {KERNEL}, batch {args.batch}, forward+backward, ms per step median "
        f"(range) of {args.repeats}; peak MiB in a fresh process each\n"
        "| map x C / heads | T | blocked ms | gather ms | speed-up | blocked MiB | gather MiB |"
        "\n|---|---|---|---|---|---|---|"
    )
    for size, c, heads in STAGES:
        names = [f"N-blocked@{size}", f"N-gather@{size}"]
        ms = time_interleaved(names, args)
        mib = [peak_in_own_process(n, args) for n in names]
        speedup = statistics.median(ms[names[1]]) / statistics.median(ms[names[0]])
        print(
            f"| {size}^2 x {c} / {heads} | {tile_size(size, size, KERNEL)} | "
            f"{_fmt(ms[names[0]])} | {_fmt(ms[names[1]])} | {speedup:.1f}x | "
            f"{mib[0]:.0f} | {mib[1]:.0f} |",
            flush=True,
        )


def print_tiles(args, tiles: list[int]) -> None:
    print(
        f"\nBlocked N per tile side T, forward+backward ms, batch {args.batch}\n"
        "| map | " + " | ".join(f"T={t}" for t in tiles) + " |\n|---|" + "---|" * len(tiles)
    )
    for size, _, _ in STAGES:
        ms = time_interleaved([f"N-blocked@{size}/{t}" for t in tiles], args)
        print(f"| {size}^2 | " + " | ".join(_fmt(v) for v in ms.values()) + " |", flush=True)


def saved_for_backward_mib(name: str, batch: int) -> collections.Counter[str]:
    """MiB of tensors one forward saves for backward, by the class of the module saving them.

    Each storage counts once, for the innermost module running when it is first saved.
    """
    model = dm.build_model(dm.get_preset(name)).train()
    stack, seen, mib = ["(model)"], set(), collections.Counter[str]()

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if (storage.data_ptr(), storage.nbytes()) not in seen:
            seen.add((storage.data_ptr(), storage.nbytes()))
            mib[stack[-1]] += storage.nbytes() / 2**20
        return t

    def enter(module: torch.nn.Module, _) -> None:
        stack.append(type(module).__name__)

    def leave(module: torch.nn.Module, _, __) -> None:
        stack.pop()

    for module in model.modules():
        module.register_forward_pre_hook(enter)
        module.register_forward_hook(leave)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.randn(batch, 3, 224, 224))
    return mib


def print_saved(args) -> None:
    saved = {name: saved_for_backward_mib(name, args.batch) for name in MODELS}
    kinds = sorted(set().union(*saved.values()), key=lambda k: -saved["dat_pp_tiny"][k])
    print("\nSaved for backward, MiB, by module class\n| module | " + " | ".join(MODELS) + " |")
    print("|---|" + "---|" * len(MODELS))
    for kind in kinds:
        if max(saved[n][kind] for n in MODELS) >= 0.5:
            print(f"| {kind} | " + " | ".join(f"{saved[n][kind]:.1f}" for n in MODELS) + " |")
    print("| total | " + " | ".join(f"{sum(saved[n].values()):.1f}" for n in MODELS) + " |")


def print_models(args) -> bool:
    ms = time_interleaved(list(MODELS), args)
    mib = {name: peak_in_own_process(name, args) for name in MODELS}
    print(
        f"\nTrain step (forward+backward), 224 px, batch {args.batch}, ms median (range) of "
        f"{args.repeats}\n| model | ms | peak MiB |\n|---|---|---|"
    )
    for name in MODELS:
        print(f"| {name} | {_fmt(ms[name])} | {mib[name]:.0f} |")
    time_ratio = statistics.median(ms["dat_pp_tiny"]) / statistics.median(ms["dat_tiny"])
    mem_ratio = mib["dat_pp_tiny"] / mib["dat_tiny"]
    ok = time_ratio <= 1.5 and mem_ratio <= 1.1
    print(
        f"dat_pp_tiny vs dat_tiny: {time_ratio:.2f}x the time (target <= 1.5x), "
        f"{mem_ratio:.2f}x the peak memory (target <= 1.1x): {'ok' if ok else 'MISSED'}"
    )
    return ok


def table_by_four_gathers(table: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``F.grid_sample(table, grid, "bilinear", align_corners=True)`` as four gathers.

    The candidate rewrite of D's position term (rejected: slower, see table 4). ``table``
    ``(N, C, Ht, Wt)``, ``grid`` ``(N, Q, K, 2)`` normalised (x, y); zero padding: the table
    gets a border of zeros, and corners past it are clamped onto the border.
    """
    n, c, ht, wt = table.shape
    flat = F.pad(table, (1, 1, 1, 1)).flatten(2)  # N, C, (Ht + 2)(Wt + 2)
    ix = (grid[..., 0] + 1) * (0.5 * (wt - 1))
    iy = (grid[..., 1] + 1) * (0.5 * (ht - 1))
    x0, y0 = ix.detach().floor(), iy.detach().floor()
    fx, fy = ix - x0, iy - y0
    xs = [((x0 + i).long().clamp(-1, wt) + 1, fx if i else 1 - fx) for i in (0, 1)]
    ys = [((y0 + i).long().clamp(-1, ht) + 1, fy if i else 1 - fy) for i in (0, 1)]
    out = torch.zeros((), dtype=table.dtype)
    for yi, wy in ys:
        for xi, wx in xs:
            index = (yi * (wt + 2) + xi).flatten(1)[:, None].expand(n, c, -1)
            out = out + flat.gather(2, index).view(n, c, *grid.shape[1:3]) * (wy * wx)[:, None]
    return out


def _d_position_inputs(side: int, groups: int, batch: int, dtype: torch.dtype):
    torch.manual_seed(0)
    table = torch.randn(batch * groups, 2, 2 * side - 1, 2 * side - 1, dtype=dtype)
    # Half displacements of points in [-1, 1] (the official scale), a little past the table.
    grid = torch.rand(batch * groups, side * side, 49, 2, dtype=dtype) * 2.1 - 1.05
    return table.requires_grad_(), grid.requires_grad_()


def print_d_position(args) -> None:
    def by_grid_sample(t: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return F.grid_sample(t, g, mode="bilinear", align_corners=True)

    print(
        f"\nD's position term, batch {args.batch}, forward+backward ms median (range) of "
        f"{args.repeats}; float64 differences of the four gathers from grid_sample\n"
        "| map | groups | grid_sample ms | four gathers ms | out | d table | d points |"
        "\n|---|---|---|---|---|---|---|"
    )
    for side, groups in D_STAGES:
        table, grid = _d_position_inputs(side, groups, args.batch, torch.double)
        outs = [f(table, grid) for f in (by_grid_sample, table_by_four_gathers)]
        go = torch.randn_like(outs[0])
        grads = [torch.autograd.grad(o, (table, grid), go) for o in outs]
        diffs = [(outs[0] - outs[1]).abs().max().item()]
        diffs += [(a - b).abs().max().item() for a, b in zip(*grads, strict=True)]
        table, grid = _d_position_inputs(side, groups, args.batch, torch.float)
        ms: dict[str, list[float]] = {"grid_sample": [], "four": []}
        fns = {"grid_sample": by_grid_sample, "four": table_by_four_gathers}
        for _ in range(args.repeats + 1):  # the first round is the warm-up
            for name, f in fns.items():
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    f(table, grid).sum().backward()
                ms[name].append((time.perf_counter() - t0) / args.steps * 1000)
        print(
            f"| {side}^2 | {groups} | {_fmt(ms['grid_sample'][1:])} | {_fmt(ms['four'][1:])} | "
            + " | ".join(f"{d:.1e}" for d in diffs)
            + " |",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch's default)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16: autocast")
    ap.add_argument("--tiles", default="", help="comma-separated T to sweep (e.g. 4,7,8,14)")
    ap.add_argument("--no-models", action="store_true", help="skip the dat_pp_tiny step")
    ap.add_argument("--no-modules", action="store_true", help="skip table 2 (N modules)")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.steps < 1 or args.batch < 1:
        ap.error("--batch, --steps and --repeats must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, device {args.device}, {args.dtype}, "
        f"threads {torch.get_num_threads()}, batch {args.batch}, {args.steps} timed steps "
        f"after 1 warm-up, {args.repeats} interleaved repeats"
    )
    ok = print_exactness()
    if not args.no_modules:
        print_modules(args)
    if args.tiles:
        print_tiles(args, [int(t) for t in args.tiles.split(",")])
    print_d_position(args)
    if not args.no_models:
        ok &= print_models(args)
        print_saved(args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
