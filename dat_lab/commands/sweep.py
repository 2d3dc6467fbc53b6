"""``dat-lab sweep``: an Optuna study over the DAT knobs whose trials are runs of the run store.

    dat-lab sweep --study NAME [KEY=VALUE ...] [--workers N | --gpus 0,1] [--storage URL]
    dat-lab sweep --study NAME --launcher slurm --workers N [--wait] [--partition P ...]
    dat-lab sweep --study NAME --status
    dat-lab sweep --study NAME --race [--top K] [--max-seeds N] [--margin M] [--budget 2h]

NAME is ``sweeps/NAME.yaml`` (or a path to a study file). Run the same command again, here or
on another machine against the same ``--storage``, to resume or to add workers: the study's
budget is completed, never exceeded. ``--race`` then adds seeds to the best configurations
until the winner is decided (``dat_lab.results.race``; docs/sweeps.md, "Racing").
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dat_lab.commands.launcher_args import add_launcher_args, slurm_resources
from dat_lab.commands.sweep_race import print_race_status, race, race_settings
from dat_lab.schema import ConfigError, parse_override
from dat_lab.text import print_line

if TYPE_CHECKING:
    from dat_lab.sweeps.launch import WorkerCommands
    from dat_lab.sweeps.liveness import Liveness
    from dat_lab.sweeps.spec import Study
    from dat_lab.sweeps.storage import StorageLocation


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
        "--rerun-stale",
        action="store_true",
        help="train again from scratch the runs that other model/train/data code made",
    )
    race = p.add_argument_group("racing (after the study's budget)")
    race.add_argument(
        "--race",
        action="store_true",
        help="add seeds to the best configurations until the leader is decided against each",
    )
    race.add_argument(
        "--top", type=int, default=3, help="how many of the best trials race (default 3)"
    )
    race.add_argument(
        "--max-seeds", type=int, default=10, help="seeds per configuration at most (default 10)"
    )
    race.add_argument(
        "--margin",
        type=float,
        default=0.0,
        help="equivalence margin in the metric's shown units (points of an accuracy); "
        "0: no equivalence verdict",
    )
    race.add_argument(
        "--budget",
        default=None,
        help="training time of the race's runs (from their cost.json), e.g. 2h, 90m, 600",
    )
    p.add_argument(
        "--heartbeat",
        type=float,
        default=30.0,
        help="seconds between a worker's heartbeats; "
        "a worker on another host silent for 4x this is dead",
    )
    add_launcher_args(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from dat_lab.sweeps.storage import StorageError

    try:
        return _run(args)
    except StorageError as err:  # its message holds no password
        print(f"error: {err}", file=sys.stderr)
        return 1


@dataclasses.dataclass(frozen=True)
class SweepRequest:
    """What one ``dat-lab sweep`` command works on, checked before anything starts."""

    study: Study
    path: Path  # the study file
    store: Path
    location: StorageLocation
    liveness: Liveness  # from --heartbeat: the same for workers and every --status
    n_workers: int
    gpus: list[str] | None
    gpu_overrides: dict[str, Any]  # the trial overrides that --gpus added
    gpus_per_worker: int = 1  # train.devices of the trials: each worker's share of --gpus


def prepare(args: argparse.Namespace) -> SweepRequest:
    """Parse and validate the command line and the study file (bad input: ConfigError)."""
    # Imported here so that `dat-lab --help` and bad-input errors stay fast.
    from dat_lab.experiments.store import DEFAULT_ROOT
    from dat_lab.sweeps.launch import gpu_overrides, gpus_per_worker, override_arg
    from dat_lab.sweeps.liveness import Liveness
    from dat_lab.sweeps.spec import find_study_file, load_study
    from dat_lab.sweeps.storage import StorageLocation

    overrides = dict(parse_override(o) for o in args.overrides)
    gpus = _parse_gpus(args.gpus)
    if not args.heartbeat > 0:
        raise ConfigError(f"must be > 0 seconds, got {args.heartbeat}", "--heartbeat")
    added = gpu_overrides(overrides) if gpus else {}
    if added:
        added_args = ", ".join(override_arg(k, v) for k, v in added.items())
        print(f"on GPUs: {added_args}", file=sys.stderr)
    path = find_study_file(args.study)
    study = load_study(path, {**overrides, **added})
    devices = gpus_per_worker(study, gpus) if gpus else 1
    workers = _check_workers(args.workers, gpus, devices)
    if args.study_name:
        study = dataclasses.replace(
            study, file=dataclasses.replace(study.file, name=args.study_name)
        )
    store = Path(args.store or study.experiment.store or DEFAULT_ROOT)
    location = StorageLocation.parse(args.storage, store / "sweeps" / f"{study.name}.journal")
    liveness = Liveness.from_heartbeat(args.heartbeat)
    return SweepRequest(study, path, store, location, liveness, workers, gpus, added, devices)


def _run(args: argparse.Namespace) -> int:
    from dat_lab.sweeps.launch import WORKER_INDEX_ENV, launch

    sweep = prepare(args)
    study, location = sweep.study, sweep.location
    if args.status:
        from dat_lab.sweeps.status import load_stored_study, status_text

        stored = load_stored_study(study, location)
        print(status_text(study, stored, location, sweep.liveness))
        print_race_status(args, sweep, stored)
        return 0
    settings = race_settings(args) if args.race else None
    if settings is not None:
        from dat_lab.sweeps.ranking import race_objective

        race_objective(study)  # a study of costs alone has nothing to race: say so first
    if args.launcher == "slurm":
        code = _submit_workers(args, sweep)
        return race(args, sweep, settings) if settings is not None and code == 0 else code
    worker_index = os.environ.get(WORKER_INDEX_ENV)
    if worker_index is None:
        print(
            f"study {study.name!r}: budget {study.n_trials} trials, storage {location.masked()}, "
            f"store {sweep.store}",
            flush=True,
        )
    if sweep.n_workers > 1 or sweep.gpus:
        code = launch(worker_commands(args, sweep), study, location, sweep.liveness, print_line)
    else:
        code = _work(study, location, sweep.store, args, sweep.liveness, worker_index)
    if settings is not None and worker_index is None and code == 0:
        return race(args, sweep, settings)
    return code


def _work(
    study, location, store, args: argparse.Namespace, liveness, worker_index: str | None
) -> int:
    from dat_lab.sweeps.status import load_stored_study, status_text
    from dat_lab.sweeps.worker import WorkerOptions, work

    prefix = f"[worker {worker_index}] " if worker_index is not None else ""
    log = lambda msg: print(prefix + msg, flush=True)  # noqa: E731
    signal.signal(signal.SIGTERM, _raise_interrupt)  # SLURM's time limit: stop like Ctrl-C
    options = WorkerOptions(
        Path(store),
        args.retry_failed,
        liveness,
        quiet=worker_index is not None,
        rerun_stale=args.rerun_stale,
    )
    report = work(study, location, options, log)  # creates or loads the study, under its lock
    log(f"done: {report}")
    if worker_index is None:
        print(
            status_text(study, load_stored_study(study, location), location, liveness), flush=True
        )
    return 0


def _submit_workers(args: argparse.Namespace, sweep: SweepRequest) -> int:
    """``--launcher slurm``: one array task per worker, each the local worker's command."""
    from dat_lab.launchers import slurm
    from dat_lab.sweeps.launch import build_worker_commands
    from dat_lab.sweeps.status import load_stored_study, status_text
    from dat_lab.sweeps.storage import STORAGE_ENV

    if sweep.gpus:
        raise ConfigError("SLURM places the workers: use --gpus-per-node, not --gpus", "--gpus")
    study = sweep.study
    resources = slurm_resources(args, study.file.slurm or study.experiment.slurm)
    slurm.check_available()
    workers = build_worker_commands(
        sweep.path.absolute(), _passthrough(args), args.overrides, sweep.location, None, 1
    )
    if sweep.location.url:  # sbatch exports this environment; argv and files never hold it
        os.environ[STORAGE_ENV] = sweep.location.url
    if study.base.train.world_size > 1:  # srun would start every rank as a worker
        raise ConfigError(
            f"got {study.base.train.devices} (x {study.base.train.num_nodes} nodes); a sweep "
            "worker under --launcher slurm trains one-device trials (DDP trials: local "
            "--gpus, or dat-lab run --launcher slurm on the study's configs)",
            "train.devices",
        )
    jobs = slurm.submit_workers(
        workers.argv, sweep.n_workers, sweep.store, resources, f"sweep-{study.name}"
    )
    print(
        f"submitted job array {jobs[0].split('_')[0]}: {len(jobs)} worker(s); logs under "
        f"{sweep.store / slurm.LOG_DIR}",
        flush=True,
    )
    if args.wait or args.race:  # a race starts from the finished trials
        slurm.wait(jobs)
        stored = load_stored_study(study, sweep.location)
        print(status_text(study, stored, sweep.location, sweep.liveness), flush=True)
    return 0


def worker_commands(args: argparse.Namespace, sweep: SweepRequest) -> WorkerCommands:
    """The command line and environments of the workers that --workers/--gpus start: this
    command's options and overrides, plus the overrides --gpus added (once), but neither
    --workers nor --gpus (each worker is one process, on its one GPU)."""
    from dat_lab.sweeps.launch import build_worker_commands, override_arg

    overrides = [*args.overrides, *(override_arg(k, v) for k, v in sweep.gpu_overrides.items())]
    return build_worker_commands(
        sweep.path,
        _passthrough(args),
        overrides,
        sweep.location,
        sweep.gpus,
        sweep.n_workers,
        devices=sweep.gpus_per_worker,
    )


def _passthrough(args: argparse.Namespace) -> list[str]:
    """The options every worker gets from this command (not --workers/--gpus/--storage)."""
    out = []
    if args.store is not None:
        out += ["--store", str(args.store)]
    if args.study_name:
        out += ["--study-name", args.study_name]
    if args.retry_failed:
        out.append("--retry-failed")
    if args.rerun_stale:
        out.append("--rerun-stale")
    out += ["--heartbeat", str(args.heartbeat)]
    return out


def _parse_gpus(text: str | None) -> list[str] | None:
    if text is None:
        return None
    gpus = [g.strip() for g in text.split(",") if g.strip()]
    if not gpus or not all(g.isdigit() for g in gpus):
        raise ConfigError(f"got {text!r}, expected comma-separated GPU ids like 0,1", "--gpus")
    if len(set(gpus)) != len(gpus):
        raise ConfigError(f"got {text!r}: a GPU is listed twice", "--gpus")
    return gpus


def _check_workers(workers: int, gpus: list[str] | None, devices: int = 1) -> int:
    if workers < 1:
        raise ConfigError(f"must be >= 1, got {workers}", "--workers")
    n_gpu_workers = len(gpus) // devices if gpus else 0
    if gpus and workers not in (1, n_gpu_workers):
        raise ConfigError(
            f"got {workers} workers for {len(gpus)} GPUs; --gpus starts one per "
            f"{devices} GPU(s) (train.devices)",
            "--workers",
        )
    return n_gpu_workers or workers


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
