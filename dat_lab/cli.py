"""``dat-lab``: the command line.

    dat-lab run EXPERIMENT.yaml [key=value ...] [--dry-run] [--workers N] [--retry-failed]
    dat-lab flops MODEL_OR_EXPERIMENT [--size HxW] [--per-module] [--format md|csv|json]

Bad input (a missing file, an unknown key, an impossible knob, a missing data path) prints
one message naming the file and the key and exits with code 2 before any training starts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dat_lab.schema import ConfigError, parse_override

EXIT_BAD_INPUT = 2


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="train every variant x seed of an experiment file")
    p.add_argument("experiment", type=Path, help="experiment YAML file (see experiments/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides applied to every run, e.g. train.epochs=2")
    p.add_argument("--store", type=Path, default=None, help="run store directory (default: the file's `store`, else ./runs)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (runs, state, params, FLOPs) and exit")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (CPU threads are split)")
    p.add_argument("--retry-failed", action="store_true", help="retrain runs that failed before")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from dat_lab.experiments.plan import print_plan
    from dat_lab.experiments.runner import run_experiment
    from dat_lab.experiments.spec import load_experiment
    from dat_lab.experiments.store import DEFAULT_ROOT, RunStore

    overrides = dict(parse_override(o) for o in args.overrides)
    exp, specs = load_experiment(args.experiment, overrides)
    if args.workers < 1:
        raise ConfigError(f"must be >= 1, got {args.workers}", "--workers")
    store = RunStore(args.store or exp.store or DEFAULT_ROOT)
    print(f"experiment {exp.name!r}: {len(specs)} runs ({len(exp.variants)} variants x "
          f"{len(exp.seeds)} seeds), store {store.root}", flush=True)
    if args.dry_run:
        print_plan(specs, store)
        return 0
    outcomes = run_experiment(specs, store, workers=args.workers, retry_failed=args.retry_failed)
    counts = {r: sum(o.result == r for o in outcomes) for r in ("finished", "skipped", "failed", "not retried", "busy")}
    print("done: " + ", ".join(f"{n} {r}" for r, n in counts.items() if n), flush=True)
    return 1 if counts["failed"] or counts["not retried"] else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dat-lab", description="DAT ablation and research framework")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    try:
        from dat_lab import cli_flops
    except ImportError:  # TEMPORARY until dat_lab.flops lands
        return parser
    cli_flops.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: finished runs are recorded; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
