"""Peak memory of a dat_tiny training step with and without gradient checkpointing.

Each setting runs in its own fresh process (spawned): build dat_tiny and one batch, then one
training step (forward, cross-entropy, backward, AdamW step). Reported: the peak memory the
step adds on top of the model and batch, and the ratio checkpointed / plain (target <= 0.6).

- CPU: the peak of the running sum of tensor allocations and frees during the step, from
  torch's profiler (``profile_memory=True``): the memory tensors hold, exact to the byte, as
  ``max_memory_allocated`` counts on CUDA (resident memory would add the allocator's slack);
- CUDA: ``torch.cuda.max_memory_allocated`` over the step minus the allocation before it
  (``peak_memory.peak_mib``, as the other benchmarks measure it).

Both include what the step creates and keeps (gradients, AdamW's two moments: ~340 MiB for
dat_tiny's 28M parameters), the same with or without checkpointing; the activations are the
part checkpointing shrinks, and their share grows with the batch.

The step's time is printed too (recomputation costs about one extra forward).

    python benchmarks/bench_grad_checkpointing.py [--batch 8] [--size 224] [--device cpu]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time


def _cpu_peak_bytes(step) -> int:
    """Peak of the running total of tensor memory allocated (and not yet freed) by ``step``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    total = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        total += e.nbytes()  # frees are negative
        peak = max(peak, total)
    return peak


def measure(
    checkpointing: bool, batch: int, size: int, device: str, threads: int, preset: str = "dat_tiny"
) -> dict:
    """One training step in this process; returns the step's peak memory (MiB) and time."""
    import torch
    import torch.nn.functional as F
    from peak_memory import peak_mib  # CUDA: allocated memory above the start, as elsewhere

    from dat_lab.models import build_model, get_preset

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(get_preset(preset)).to(device).train()
    model.set_grad_checkpointing(checkpointing)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, model.num_classes, (batch,), device=device)

    def step() -> None:
        F.cross_entropy(model(x), y).backward()
        opt.step()

    start = time.perf_counter()
    if device == "cuda":
        peak = peak_mib(step, device)
    else:
        peak = _cpu_peak_bytes(step) / 2**20
    return {"peak_mib": peak, "seconds": time.perf_counter() - start}


def _child(queue, *args) -> None:
    queue.put(measure(*args))


def in_fresh_process(*args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, *args))
    proc.start()
    result = queue.get()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"measuring process exited with {proc.exitcode}")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    rows = {
        ckpt: in_fresh_process(ckpt, args.batch, args.size, args.device, args.threads)
        for ckpt in (False, True)
    }
    print(f"dat_tiny train step, batch {args.batch} at {args.size} px on {args.device}")
    print("| grad checkpointing | peak step memory (MiB) | step time (s) |")
    print("|---|---|---|")
    for ckpt, r in rows.items():
        print(f"| {'on' if ckpt else 'off'} | {r['peak_mib']:.0f} | {r['seconds']:.1f} |")
    ratio = rows[True]["peak_mib"] / rows[False]["peak_mib"]
    verdict = "meets" if ratio <= 0.6 else "misses"
    print(f"ratio on/off: {ratio:.2f}x ({verdict} the target <= 0.6x)")


if __name__ == "__main__":
    main()
