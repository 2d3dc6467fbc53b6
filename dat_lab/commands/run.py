"""``dat-lab run``: train every variant x seed of an experiment file.

    dat-lab run EXPERIMENT.yaml [key=value ...] [--dry-run] [--workers N] [--retry-failed]
                [--rerun-stale] [--store DIR] [--lease SECONDS]
                [--launcher local|slurm [--wait] [--status]]
                [--until-decided [--max-seeds N] [--budget 2h]]

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
With ``--until-decided`` (or an ``until_decided:`` section in the file) the file's seeds run
first, then seeds are added in rounds to the variants of the claims still undecided, until
every claim is decided, ``--max-seeds`` or the ``--budget`` of training time is reached
(``dat_lab.results.until_decided``).
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
    g = p.add_argument_group("sequential seeds (docs/until_decided.md)")
    g.add_argument(
        "--until-decided",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after the file's seeds, add seeds to the variants of undecided claims until "
        "every claim is decided (default: on when the file has an until_decided: section)",
    )
    g.add_argument(
        "--max-seeds", type=int, default=None, help="seeds per variant at most (default 20)"
    )
    g.add_argument(
        "--budget",
        default=None,
        help="stop adding seeds once the runs' recorded training time reaches this (2h, 90m)",
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
    limits = _until_decided(args, exp)
    workers = workers or default_workers(specs)
    check_workers(specs, workers)
    if args.status:
        from dat_lab.launchers.slurm import status_lines

        print("\n".join(status_lines(specs, store)), flush=True)
        return 0
    if args.dry_run:
        print_plan(specs, store, retry_failed=args.retry_failed, rerun_stale=args.rerun_stale)
        if limits is not None:
            return _sequential(args, exp, specs, store, limits, workers, dry=True)
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
    if limits is not None:
        return _sequential(args, exp, specs, store, limits, workers, resources=resources)
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


def _until_decided(args: argparse.Namespace, exp: Any) -> Any:
    """The sequential run's limits (the file's section, the flags on top), or None."""
    from dat_lab.experiments.stopping import UntilDecided

    on = args.until_decided if args.until_decided is not None else exp.until_decided is not None
    if not on:
        for flag, value in (("--max-seeds", args.max_seeds), ("--budget", args.budget)):
            if value is not None:
                raise ConfigError("is a limit of --until-decided, which is off", flag)
        return None
    if not exp.claims:
        raise ConfigError(
            "the experiment has no claims to decide (claims: [{better: A, than: B}])",
            "--until-decided",
            args.experiment,
        )
    limits = (exp.until_decided or UntilDecided()).with_flags(args.max_seeds, args.budget)
    if limits.max_seeds < len(exp.seeds):
        raise ConfigError(
            f"got {limits.max_seeds}, fewer than the file's {len(exp.seeds)} seeds", "--max-seeds"
        )
    return limits


def _sequential(
    args: argparse.Namespace,
    exp: Any,
    specs: list,
    store: Any,
    limits: Any,
    workers: int,
    dry: bool = False,
    resources: Any = None,
) -> int:
    """``--until-decided``: the rounds, each trained like a plain ``dat-lab run``."""
    from dat_lab.experiments.plan import print_results
    from dat_lab.launchers.rounds import RoundExecutor
    from dat_lab.results.until_decided import UntilDecidedRun

    overrides = dict(parse_override(o) for o in args.overrides)
    seq = UntilDecidedRun(exp, args.experiment, overrides, store, limits, _say)
    seq.seed_specs(specs)
    if resources is not None and not dry:
        from dat_lab.launchers import slurm

        slurm.check_available()
    train_round = RoundExecutor(
        store, workers, args.retry_failed, args.rerun_stale, slurm=resources
    )
    trained: list = []

    def execute(batch: list) -> bool:
        trained.extend(batch)
        return train_round(batch)

    started = time.monotonic()
    outcome = seq.run(seq.finished if dry else execute, dry=dry)
    if not dry:
        print_results(trained, store)
        print(f"done in {time.monotonic() - started:.0f} s", flush=True)
    for line in seq.summary(outcome):
        _say(line)
    if not outcome.ok:
        _say(
            "some runs did not finish: see the reasons above; rerun to resume, "
            "--retry-failed to retrain failed runs"
        )
        return 1
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


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
