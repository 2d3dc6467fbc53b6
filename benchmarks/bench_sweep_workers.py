"""Speed-up of ``dat-lab sweep --workers 2`` over ``--workers 1`` on a fixed budget of trials.

The same grid study (``--trials`` tiny dat_nano runs on the bundled shapes data) is run from
scratch, in a fresh run store and journal, through the real command line: one worker with
every core (``OMP_NUM_THREADS`` = cores), one worker with one thread, and two workers with
half the cores each (as ``--workers 2`` splits them). Reported per setting:

- wall: the whole command (process start-up and imports included);
- trials: first trial start to last trial end, from the study's own timestamps;
- mean fit per trial: the runs' own ``train_time_s`` (grows when workers compete);

and the load average of the machine before and after (other work on it skews the figures).

    python benchmarks/bench_sweep_workers.py [--trials 8] [--epochs 2] [--train-size 256]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def write_study(folder: Path, trials: int, epochs: int, train_size: int) -> Path:
    base = {
        "model": "dat_nano",
        "data": {
            "name": "shapes",
            "img_size": 32,
            "batch_size": 32,
            "train_size": train_size,
            "val_size": 64,
        },
        "train": {
            "epochs": epochs,
            "warmup_epochs": 0,
            "lr": 2e-3,
            "lr_scale_batch": None,
            "min_lr": 1e-5,
            "warmup_lr": 1e-5,
            "label_smoothing": 0.0,
            "mixup": 0.0,
            "cutmix": 0.0,
            "accelerator": "cpu",
            "deterministic": True,
        },
    }
    (folder / "experiment.yaml").write_text(yaml.safe_dump({"name": "bench", "base": base}))
    offsets = [round(0.5 * (i + 1), 2) for i in range(trials)]
    space = {
        "s": {
            "type": "categorical",
            "choices": offsets,
            "set": ["model.stages.2.offset_range", "model.stages.3.offset_range"],
        }
    }
    study = {"name": "bench", "experiment": "experiment.yaml", "space": space, "sampler": "grid"}
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def generate_data(study: Path) -> None:
    """Draw and cache the shapes images before timing (every trial uses the same data)."""
    from dat_lab.data.datamodule import build_datamodule
    from dat_lab.sweeps.spec import load_study

    build_datamodule(load_study(study).base.data).prepare_data()


def run(study: Path, folder: Path, workers: int, threads: int) -> dict[str, float]:
    import optuna

    from dat_lab.experiments.store import RunStore

    store = folder / f"store_{workers}_{threads}"
    # A FLOP cache of its own: a setting must not find another one's counts.
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        DAT_LAB_CACHE=str(folder / f"flops_{workers}_{threads}"),
    )
    env.pop("DAT_LAB_STORAGE", None)
    command = [
        sys.executable,
        "-m",
        "dat_lab.cli",
        "sweep",
        "--study",
        str(study),
        "--store",
        str(store),
        "--workers",
        str(workers),
    ]
    started = time.perf_counter()
    subprocess.run(
        command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wall = time.perf_counter() - started
    journal = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(store / "sweeps" / "bench.journal"))
    )
    trials = optuna.load_study(study_name="bench", storage=journal).trials
    assert all(t.state.name == "COMPLETE" for t in trials), [t.state for t in trials]
    span = max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)
    fits = [RunStore(store).require(t.user_attrs["run_id"]).final["train_time_s"] for t in trials]
    return {"wall": wall, "trials": span.total_seconds(), "fit": sum(fits) / len(fits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        folder = Path(tmp)
        os.environ["XDG_CACHE_HOME"] = str(folder / "cache")  # the data, generated once below
        study = write_study(folder, args.trials, args.epochs, args.train_size)
        generate_data(study)
        load_before = os.getloadavg()
        cores = os.cpu_count() or 1
        # (workers, CPU threads per worker): --workers' own split, and one worker on one thread.
        settings = [(1, cores), (1, 1), (2, max(1, cores // 2))]
        results = {s: run(study, folder, *s) for s in settings}
        load_after = os.getloadavg()
    print(
        f"{args.trials} trials (dat_nano, shapes {args.train_size} images, "
        f"{args.epochs} epochs), {cores} cores"
    )
    for (workers, threads), r in results.items():
        print(
            f"  {workers} worker(s) x {threads} thread(s): wall {r['wall']:.1f} s, "
            f"trials {r['trials']:.1f} s, "
            f"mean fit per trial {r['fit']:.1f} s"
        )
    two = results[settings[2]]
    for one in settings[:2]:
        print(
            f"speed-up of 2 workers over 1 worker x {one[1]} thread(s): wall "
            f"{results[one]['wall'] / two['wall']:.2f}x, "
            f"trials {results[one]['trials'] / two['trials']:.2f}x"
        )
    print(
        "load average (1/5/15 min) before: "
        + "/".join(f"{x:.2f}" for x in load_before)
        + ", after: "
        + "/".join(f"{x:.2f}" for x in load_after)
    )


if __name__ == "__main__":
    main()
