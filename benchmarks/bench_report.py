"""Time ``dat-lab report --all`` over 1,000 stored runs (target: under 5 s on CPU).

Creates a synthetic run store through the real RunStore API (atomic writes, locks, journals):
the four paper ablations x 5 seeds with CSV training logs (175 runs, a few failed, one
interrupted) and an 825-trial sweep (one run per trial), i.e. 1,000 run directories; then
runs the real command in a fresh process, as a user would, and prints the wall times.

    python benchmarks/bench_report.py [--runs 1000] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "results"))

from results_helpers import add_run, experiment_configs  # noqa: E402

from dat_lab.experiments.store import RunStore  # noqa: E402

ABLATIONS = ("offset_range", "stage_placement", "attention_ablation", "reduction")
SEEDS = 5


def make_store(root: Path, total: int) -> int:
    """Fill ``root`` with ``total`` runs; returns how many were made."""
    store = RunStore(root)
    made = 0
    for experiment in ABLATIONS:
        for i, (variant, config) in enumerate(experiment_configs(experiment)):
            for seed in range(SEEDS):
                state = "failed" if (i == 1 and seed == 4) else "finished"
                state = "interrupted" if (i == 2 and seed == 4) else state
                acc = 0.6 + 0.01 * i + 0.005 * seed
                add_run(store, experiment, variant, seed, config, state=state,
                        final={"val/acc1": acc, "val/acc1_best": acc + 0.01},
                        curve=[acc - 0.1, acc - 0.05, acc])  # fmt: skip
                made += 1
    sweep_configs = [c for _, c in experiment_configs("reduction")]
    for trial in range(total - made):
        config = sweep_configs[trial % len(sweep_configs)]
        config = {**config, "train": {**config["train"], "lr": 1e-4 * (1 + trial)}}
        acc = 0.5 + 0.3 * ((trial * 37) % 100) / 100
        cost = {"params": 395612 + trial % 7, "flops": 6.0e6 + 1e4 * (trial % 50)}
        add_run(store, "free_search", f"trial{trial:04d}", 0, config, final={"val/acc1": acc},
                cost=cost)  # fmt: skip
        made += 1
    return made


def time_report(store: Path, out: Path, *flags: str) -> tuple[float, float]:
    """Wall and CPU seconds (this process's children: the command and its workers)."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    cmd = [
        sys.executable,
        "-m",
        "dat_lab.cli",
        "report",
        "--all",
        "--store",
        str(store),
        "--out",
        str(out),
        *flags,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--keep", type=Path, help="make (or reuse) the store here instead of a temp dir"
    )
    args = p.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_report_"))
    store = work / "store"
    try:
        if not (store / "runs").is_dir():
            start = time.perf_counter()
            made = make_store(store, args.runs)
            print(f"made {made} runs in {time.perf_counter() - start:.1f} s ({store})")
        # Cold: a new output folder each time, every table and figure drawn. Warm: the same
        # folder again with nothing changed in the store (every group's stamp matches).
        cold = [time_report(store, work / f"out{i}") for i in range(args.repeat)]
        warm = time_report(store, work / "out0")
        # Reference in the same run: no report.html (and so no SVG figures to embed).
        plain = time_report(store, work / "out_plain", "--no-html")
        figures = len(list((work / "out0").rglob("*.png")))
        page = work / "out0" / "report.html"
        load = os.getloadavg()[0]
        for name, (wall, cpu) in [
            *((f"cold {i + 1}", c) for i, c in enumerate(cold)),
            ("warm", warm),
            ("cold, --no-html: reference", plain),
        ]:
            print(f"dat-lab report --all ({name}): wall {wall:.2f} s, CPU {cpu:.2f} s")
        print(
            f"{figures} figures (PNG + PDF + SVG), report.html {page.stat().st_size / 1e6:.1f} "
            f"MB; {os.cpu_count()} CPUs, load average {load:.1f} (wall times on a loaded "
            f"machine exceed an idle one's); target < 5 s"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
