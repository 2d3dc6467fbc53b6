"""Step time of one run as a 2-process DDP group (gloo, CPU) against one process, at the same
global batch, through the real command line (``dat-lab run``).

Both train the same dat_nano run on the bundled shapes data: one process at batch ``2B`` with
two threads and with one, and ``train.devices=2`` at ``B`` per process, one thread each.
Reported per setting: milliseconds per optimizer step (the run's own ``train_time_s`` over its
steps; no validation), the whole command's wall time (process start-up, DDP rendezvous), and
the machine's load average before and after (other work on it skews the figures).

    python benchmarks/bench_ddp.py [--batch 16] [--steps 32]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def experiment(folder: Path, name: str, batch: int, devices: int, steps: int, threads: int):
    train = {
        "epochs": 1, "warmup_epochs": 0, "lr": 1e-3, "lr_scale_batch": None, "min_lr": 0.0,
        "warmup_lr": 0.0, "mixup": 0.0, "cutmix": 0.0, "label_smoothing": 0.0,
        "accelerator": "cpu", "devices": devices, "threads": threads, "limit_val_batches": 0,
        "log_every_n_steps": 1000,
    }  # fmt: skip
    data = {"name": "shapes", "img_size": 32, "batch_size": batch,
            "train_size": batch * devices * steps, "val_size": 32}  # fmt: skip
    doc = {"name": name, "base": {"model": "dat_nano", "data": data, "train": train}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def measure(folder: Path, exp: Path, threads: int) -> tuple[float, float]:
    """(ms per step, wall s) of one ``dat-lab run``."""
    store = folder / exp.stem
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dat_lab.cli", "run", str(exp), "--store",
                           str(store), "--workers", "1"], env=env, capture_output=True,
                          text=True)  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{exp.stem} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    (final,) = [json.loads(p.read_text()) for p in store.glob("runs/*/final.json")]
    return 1000 * final["train_time_s"] / final["steps"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16, help="per-process batch of the group")
    parser.add_argument("--steps", type=int, default=32)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # A shared data cache, made once, so neither setting pays for generating it.
        os.environ.setdefault("XDG_CACHE_HOME", str(folder / "cache"))
        one = experiment(folder, "one_process", 2 * args.batch, 1, args.steps, threads=2)
        single = experiment(folder, "one_thread", 2 * args.batch, 1, args.steps, threads=1)
        two = experiment(folder, "ddp_2", args.batch, 2, args.steps, threads=1)
        measure(folder / "warm", one, 2)
        rows = [
            (f"1 process, batch {2 * args.batch}, 2 threads", *measure(folder, one, 2)),
            (f"1 process, batch {2 * args.batch}, 1 thread", *measure(folder, single, 1)),
            (f"2 DDP processes, batch {args.batch} each, 1 thread each", *measure(folder, two, 1)),
        ]
    print(f"global batch {2 * args.batch}, {args.steps} steps, dat_nano 32x32 shapes, CPU")
    for label, ms, wall in rows:
        print(f"{label:<48} {ms:8.1f} ms/step   command {wall:6.1f} s")
    print(f"DDP step time / 1 process, 2 threads: {rows[2][1] / rows[0][1]:.2f}x; "
          f"/ 1 process, 1 thread: {rows[2][1] / rows[1][1]:.2f}x")  # fmt: skip
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
