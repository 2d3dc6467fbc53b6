"""``dat-lab run``: train every variant x seed of an experiment file.

    dat-lab run EXPERIMENT.yaml [key=value ...] [--dry-run] [--workers N] [--retry-failed] [--store DIR]

Finished runs are skipped, an interrupted run resumes from its last checkpoint, failed runs
are retrained only with ``--retry-failed``. Exit status 1 when any run failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dat_lab.schema import ConfigError, parse_override


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("run", help="train every variant x seed of an experiment file",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("experiment", type=Path, help="experiment YAML file (see experiments/)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides applied to every run, e.g. train.epochs=2")
    p.add_argument("--store", type=Path, default=None,
                   help="run store directory (default: the file's `store`, else ./runs)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (runs, state, params, FLOPs) and exit")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (CPU threads are split)")
    p.add_argument("--retry-failed", action="store_true", help="retrain runs that failed before")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    # Imported here so that `dat-lab --help` and bad-input errors stay fast.
    from dat_lab.experiments.plan import print_plan
    from dat_lab.experiments.runner import run_experiment
    from dat_lab.experiments.spec import load_experiment
    from dat_lab.experiments.store import DEFAULT_ROOT, RunStore

    overrides = dict(parse_override(o) for o in args.overrides)
    if args.workers < 1:
        raise ConfigError(f"must be >= 1, got {args.workers}", "--workers")
    exp, specs = load_experiment(args.experiment, overrides)
    store = RunStore(args.store or exp.store or DEFAULT_ROOT)
    print(f"experiment {exp.name!r}: {len(specs)} runs ({len(exp.variants)} variants x "
          f"{len(exp.seeds)} seeds), store {store.root}", flush=True)
    if args.dry_run:
        print_plan(specs, store)
        return 0
    outcomes = run_experiment(specs, store, workers=args.workers, retry_failed=args.retry_failed)
    results = ("finished", "skipped", "failed", "not retried", "busy")
    counts = {r: sum(o.result == r for o in outcomes) for r in results}
    print("done: " + ", ".join(f"{n} {r}" for r, n in counts.items() if n), flush=True)
    return 1 if counts["failed"] or counts["not retried"] else 0
