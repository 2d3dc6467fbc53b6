"""``dat-lab run``: train every variant x seed of an experiment file.

    dat-lab run EXPERIMENT.yaml [key=value ...] [--dry-run] [--workers N] [--retry-failed]
                [--rerun-stale] [--store DIR] [--lease SECONDS]
                [--launcher local|slurm [--wait] [--status]]

Finished runs are skipped, an interrupted run resumes from its last checkpoint, failed runs
are retrained only with ``--retry-failed``. A skipped or resumed run that other model,
training or data code made is named so; ``--rerun-stale`` trains those again from scratch.
Exit status: 0 when every run has finished, 1 when some failed (now or before), 2 on bad
input (nothing trains), 3 when a write to the store failed (full disk, quota, I/O error,
read-only; rerun to resume), 130 on Ctrl-C (rerun to resume). A run with an unreadable
document is moved to the store's quarantine and trained again (see docs/store.md).
With ``--launcher slurm`` the runs are submitted as a SLURM job array and the command returns
(0) at once, or with ``--wait`` once the jobs have ended (then as above); ``--status`` shows
each run's state and job.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import Any

from dat_lab.commands.launcher_args import add_launcher_args, slurm_resources
from dat_lab.schema import ConfigError, parse_override


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "run",
        help="train every variant x seed of an experiment file",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("experiment", type=Path, help="experiment YAML file (see experiments/)")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides applied to every run, e.g. train.epochs=2",
    )
    p.add_argument(
        "--store",
        type=Path,
        default=None,
        help="run store directory (default: the file's `store`, else ./runs)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (runs, state, params, FLOPs) and exit",
    )
    p.add_argument(
        "--workers",
        default="auto",
        help="parallel worker processes, CPU threads split between them (default auto: one "
        "per CPU core for CPU runs, 1 on a GPU)",
    )
    p.add_argument("--retry-failed", action="store_true", help="retrain runs that failed before")
    p.add_argument(
        "--rerun-stale",
        action="store_true",
        help="retrain from scratch the runs (and checkpoints) that other model, training or "
        "data code made",
    )
    p.add_argument(
        "--lease",
        type=float,
        default=None,
        help="seconds after which a run held from another host that stopped renewing its "
        "lock is taken over (default $DAT_LAB_LEASE_S, else 300)",
    )
    p.add_argument(
        "--status", action="store_true", help="print each run's state and SLURM job, and exit"
    )
    add_launcher_args(p)
    p.set_defaults(func=run)
    return p


def _workers(text: str) -> int | None:
    """``--workers``: a count >= 1, or ``auto`` (None: decided once the runs are known)."""
    if text == "auto":
        return None
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"must be an integer >= 1 or 'auto', got {text!r}", "--workers")
    return int(text)


def run(args: argparse.Namespace) -> int:
    # Imported here so that `dat-lab --help` and bad-input errors stay fast.
    from dat_lab.experiments.durable import store_writes
    from dat_lab.experiments.plan import print_plan, print_results
    from dat_lab.experiments.pool import check_workers, default_workers, run_experiment
    from dat_lab.experiments.spec import load_experiment
    from dat_lab.experiments.store import DEFAULT_ROOT, RunStore

    workers = _workers(args.workers)
    overrides = dict(parse_override(o) for o in args.overrides)
    exp, specs = load_experiment(args.experiment, overrides)  # every bad input stops here
    store = RunStore(args.store or exp.store or DEFAULT_ROOT, foreign_lock_timeout=args.lease)
    resources = slurm_resources(args, exp.slurm) if args.launcher == "slurm" else None
    print(
        f"experiment {exp.name!r}: {len(specs)} runs ({len(exp.variants)} variants x "
        f"{len(exp.seeds)} seeds), store {store.root}",
        flush=True,
    )
    workers = workers or default_workers(specs)
    check_workers(specs, workers)
    if args.status:
        from dat_lab.launchers.slurm import status_lines

        print("\n".join(status_lines(specs, store)), flush=True)
        return 0
    if args.dry_run:
        print_plan(specs, store, retry_failed=args.retry_failed, rerun_stale=args.rerun_stale)
        from dat_lab.results.seeds import seeds_needed_lines

        for line in seeds_needed_lines(store.root, exp.name, exp.design()):
            print(line, flush=True)
        return 0
    try:
        store.root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        where = ("--store", None) if args.store else ("store", args.experiment)
        raise ConfigError(
            f"cannot create the run store {store.root}: {err.strerror}", *where
        ) from None
    with store_writes(store.root):  # a full or read-only store: one line, exit 3
        store.write_design(exp.name, exp.design())  # the report's baseline and claims
    if resources is not None:
        return _submit(args, specs, store, resources)
    started = time.monotonic()
    outcomes = run_experiment(
        specs, store, workers=workers, retry_failed=args.retry_failed, rerun_stale=args.rerun_stale
    )
    counts = Counter(o.result for o in outcomes)
    print(
        f"done in {time.monotonic() - started:.0f} s: "
        + ", ".join(f"{n} {r}" for r, n in counts.items()),
        flush=True,
    )
    print_results(specs, store)
    if not all(o.ok for o in outcomes):
        print(
            "some runs did not finish: see the reasons above; rerun to resume, "
            "--retry-failed to retrain failed runs",
            flush=True,
        )
        return 1
    return 0


def _submit(args: argparse.Namespace, specs: list, store: Any, resources: Any) -> int:
    """``--launcher slurm``: submit the runs; with ``--wait``, report them once ended."""
    from dat_lab.experiments.plan import print_results
    from dat_lab.experiments.runner import stored_outcome
    from dat_lab.launchers import slurm

    slurm.check_available()
    slurm.submit_runs(specs, store, resources, retry_failed=args.retry_failed)
    if not args.wait:
        return 0
    slurm.wait([job["job_id"] for s in specs if (job := slurm.recorded_job(store, s.run_id))])
    print_results(specs, store)
    return 0 if all(stored_outcome(s, store).ok for s in specs) else 1
