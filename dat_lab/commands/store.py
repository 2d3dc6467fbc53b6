"""``dat-lab store check``: list what is damaged in a run store; ``--repair`` sets it aside.

    dat-lab store check [--store DIR] [--repair]

Lists, one line each: every damaged document (a run's config, run, status, final, cost or
provenance JSON, an experiment plan, a line of an events journal or of the index), orphaned
temporary files, stale locks, checkpoints that do not load (cut short, or another model's),
and runs that a sweep's journal names but the store lacks. ``--repair`` moves each to
``<store>/quarantine/`` (nothing is deleted): a run with a damaged document moves whole and
the next ``dat-lab run`` or ``sweep`` trains it again. Exit status: 0 when nothing is wrong (or
everything was set aside), 1 when problems remain, 2 when there is no store.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXIT_PROBLEMS = 1


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "store",
        help="check a run store for damage (and repair it)",
        description=__doc__.split("\n\n")[0],
    )
    actions = p.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="list damaged documents, orphans, stale locks ...")
    check.add_argument("--store", type=Path, default=None, help="run store (default ./runs)")
    check.add_argument(
        "--repair", action="store_true", help="move every problem found to <store>/quarantine/"
    )
    check.set_defaults(func=run)
    return p


def find_problems(store: Any) -> list:
    """Everything ``store check`` lists: the store's own problems (``experiments.check``),
    then the runs that a sweep's journal names but the store lacks."""
    from dat_lab.experiments.check import Problem, ProblemKind, check_store
    from dat_lab.results.studies import load_studies, missing_trial_runs

    problems = check_store(store)
    for study, number, run_id in missing_trial_runs(store.root, load_studies(store.root)):
        detail = f"named by trial {number} of study {study!r}, but not in the store"
        problems.append(Problem(ProblemKind.MISSING_RUN, store.run_dir(run_id), detail, run_id))
    return problems


def run(args: argparse.Namespace) -> int:
    from dat_lab.experiments.check import repair
    from dat_lab.experiments.store import DEFAULT_ROOT, RunStore
    from dat_lab.schema import ConfigError

    store = RunStore(args.store or DEFAULT_ROOT)
    if not (store.root / "runs").is_dir():
        raise ConfigError(f"no run store at {store.root} (no runs/ folder)", "--store")
    problems = find_problems(store)
    for problem in problems:
        print(problem.line(store.root), flush=True)
    print(f"store check {store.root}: {_summary(problems)}", flush=True)
    if not problems:
        return 0
    if not args.repair:
        print("run `dat-lab store check --repair` to move them to the quarantine", flush=True)
        return EXIT_PROBLEMS
    left = 0
    for fixed in repair(store, problems):
        where = fixed.moved_to.relative_to(store.root) if fixed.moved_to else None
        if where is None:
            left += 1
        text = f"moved to {where}" if where else "not repaired"
        note = f" ({fixed.note})" if fixed.note else ""
        print(f"repair: {fixed.problem.line(store.root)}: {text}{note}", flush=True)
    print(f"repaired {len(problems) - left} of {len(problems)}", flush=True)
    return EXIT_PROBLEMS if left else 0


def _summary(problems: list) -> str:
    if not problems:
        return "no problems"
    counts: dict[str, int] = {}
    for p in problems:
        counts[p.kind.value] = counts.get(p.kind.value, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())
