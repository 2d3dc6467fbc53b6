"""``dat-lab sweep``: an Optuna study over the DAT knobs whose trials are runs of the run store.

    dat-lab sweep --study NAME [KEY=VALUE ...] [--workers N | --gpus 0,1] [--storage URL]
    dat-lab sweep --study NAME --status

NAME is ``sweeps/NAME.yaml`` (or a path to a study file). Run the same command again, here or
on another machine against the same ``--storage``, to resume or to add workers: the study's
budget is completed, never exceeded.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path
from typing import Any

from dat_lab.schema import ConfigError, parse_override

GPU_OVERRIDES = {"train.accelerator": "gpu", "train.deterministic": False}  # see _gpu_overrides


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sweep",
        help="run an Optuna study over the knobs (trials are stored runs)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "--study", required=True, help="study name (sweeps/NAME.yaml) or a study file path"
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides applied to every trial, e.g. train.epochs=2",
    )
    p.add_argument(
        "--status",
        action="store_true",
        help="print the trials (state, params, values, run id) and exit",
    )
    p.add_argument(
        "--store",
        type=Path,
        default=None,
        help="run store directory (default: the experiment's `store`, else ./runs)",
    )
    p.add_argument(
        "--storage",
        default=None,
        help="postgresql://USER:PASSWORD@HOST/DB (many machines), or a journal file path; "
        "default: STORE/sweeps/NAME.journal; also read from $DAT_LAB_STORAGE",
    )
    p.add_argument(
        "--study-name",
        default=None,
        help="name of the study in the storage (default: the file's name)",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="local worker processes (CPU cores are split)"
    )
    p.add_argument(
        "--gpus",
        default=None,
        help="comma-separated GPU ids: one worker per GPU (sets train.accelerator=gpu)",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="retrain runs that failed before, instead of failing their trials",
    )
    p.add_argument(
        "--heartbeat",
        type=float,
        default=30.0,
        help="seconds between a worker's heartbeats; a worker on another host silent for 4x this is dead",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from dat_lab.sweeps.storage import StorageError

    try:
        return _run(args)
    except StorageError as err:  # its message holds no password
        print(f"error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    # Imported here so that `dat-lab --help` and bad-input errors stay fast.
    from dat_lab.experiments.store import DEFAULT_ROOT
    from dat_lab.sweeps.liveness import Liveness
    from dat_lab.sweeps.spec import find_study_file, load_study
    from dat_lab.sweeps.storage import StorageLocation

    overrides = dict(parse_override(o) for o in args.overrides)
    gpus = _parse_gpus(args.gpus)
    workers = _check_workers(args.workers, gpus)
    if not args.heartbeat > 0:
        raise ConfigError(f"must be > 0 seconds, got {args.heartbeat}", "--heartbeat")
    if gpus:
        overrides = _gpu_overrides(overrides)
    path = find_study_file(args.study)
    study = load_study(path, overrides)
    if args.study_name:
        study = dataclasses.replace(
            study, file=dataclasses.replace(study.file, name=args.study_name)
        )
    store = args.store or study.experiment.store or DEFAULT_ROOT
    location = StorageLocation.parse(
        args.storage, Path(store) / "sweeps" / f"{study.name}.journal"
    )
    liveness = Liveness(interval_s=args.heartbeat, grace_s=4 * args.heartbeat)
    if args.status:
        from dat_lab.sweeps.status import load_stored_study, status_text

        print(status_text(study, load_stored_study(study, location), location, liveness))
        return 0
    worker_index = os.environ.get("DAT_LAB_WORKER_INDEX")
    if worker_index is None:
        print(
            f"study {study.name!r}: budget {study.n_trials} trials, storage {location.masked()}, "
            f"store {store}",
            flush=True,
        )
    if workers > 1 or gpus:
        return _launch(args, study, path, location, workers, gpus)
    return _work(study, location, store, args.retry_failed, liveness, worker_index)


def _work(study, location, store, retry_failed: bool, liveness, worker_index: str | None) -> int:
    from dat_lab.sweeps.status import load_stored_study, status_text
    from dat_lab.sweeps.worker import WorkerOptions, work

    prefix = f"[worker {worker_index}] " if worker_index is not None else ""
    log = lambda msg: print(prefix + msg, flush=True)  # noqa: E731
    signal.signal(signal.SIGTERM, _raise_interrupt)  # SLURM's time limit: stop like Ctrl-C
    options = WorkerOptions(Path(store), retry_failed, liveness, quiet=worker_index is not None)
    report = work(study, location, options, log)
    log(f"done: {report}")
    if worker_index is None:
        print(
            status_text(study, load_stored_study(study, location), location, liveness), flush=True
        )
    return 0


def _launch(args, study, path: Path, location, workers: int, gpus: list[str] | None) -> int:
    from dat_lab.sweeps.launch import run_workers, worker_envs
    from dat_lab.sweeps.status import load_stored_study, status_text
    from dat_lab.sweeps.study import open_study

    with location.lock(study.name):  # create tables and study once, before the workers race
        open_study(study, location, location.open())
    worker_args = ["--study", str(path), *_passthrough(args)]
    if location.url is None:
        worker_args += ["--storage", str(location.journal)]
    worker_args += args.overrides
    if gpus:
        worker_args += [
            f"{k}={_yaml(v)}" for k, v in GPU_OVERRIDES.items() if k not in _given(args)
        ]
    envs = worker_envs(workers, gpus, location.url)
    code = run_workers(worker_args, envs)
    print(status_text(study, load_stored_study(study, location), location), flush=True)
    return code


def _passthrough(args: argparse.Namespace) -> list[str]:
    """The options every worker gets from this command (not --workers/--gpus/--storage)."""
    out = []
    if args.store is not None:
        out += ["--store", str(args.store)]
    if args.study_name:
        out += ["--study-name", args.study_name]
    if args.retry_failed:
        out.append("--retry-failed")
    out += ["--heartbeat", str(args.heartbeat)]
    return out


def _given(args: argparse.Namespace) -> set[str]:
    return {parse_override(o)[0] for o in args.overrides}


def _yaml(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _parse_gpus(text: str | None) -> list[str] | None:
    if text is None:
        return None
    gpus = [g.strip() for g in text.split(",") if g.strip()]
    if not gpus or not all(g.isdigit() for g in gpus):
        raise ConfigError(f"got {text!r}, expected comma-separated GPU ids like 0,1", "--gpus")
    if len(set(gpus)) != len(gpus):
        raise ConfigError(f"got {text!r}: a GPU is listed twice", "--gpus")
    return gpus


def _check_workers(workers: int, gpus: list[str] | None) -> int:
    if workers < 1:
        raise ConfigError(f"must be >= 1, got {workers}", "--workers")
    if gpus and workers not in (1, len(gpus)):
        raise ConfigError(
            f"got {workers} workers for {len(gpus)} GPUs; --gpus starts one per GPU", "--workers"
        )
    return len(gpus) if gpus else workers


def _gpu_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Trials on GPUs: accelerator gpu and, unless given, deterministic off (grid_sample's
    CUDA backward, used by deformable attention, has no deterministic kernel and raises)."""
    added = {k: v for k, v in GPU_OVERRIDES.items() if k not in overrides}
    if added:
        print(
            "on GPUs: " + ", ".join(f"{k}={_yaml(v)}" for k, v in added.items()), file=sys.stderr
        )
    return {**overrides, **added}


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
