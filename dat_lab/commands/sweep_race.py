"""``dat-lab sweep --race``: the command side of a race (flags, executor, status lines).

The race itself is :mod:`dat_lab.results.race`; here its settings come from the command line,
its rounds' runs are trained by ``dat-lab run``'s executor (the local pool, or SLURM), and
``--status`` replays it from the store.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from dat_lab.commands.launcher_args import slurm_resources
from dat_lab.text import print_line

if TYPE_CHECKING:
    from dat_lab.commands.sweep import SweepRequest


def race_settings(args: argparse.Namespace) -> Any:
    from dat_lab.experiments.stopping import parse_duration
    from dat_lab.results.race import RaceSettings

    budget = None if args.budget is None else parse_duration(args.budget, "--budget")
    return RaceSettings(args.top, args.max_seeds, args.margin, budget)


def race(args: argparse.Namespace, sweep: SweepRequest, settings: Any) -> int:
    """``--race``: the study's best configurations race, their seeds trained as runs of the
    store by ``dat-lab run``'s executor (the local pool, or SLURM)."""
    from dat_lab.experiments.store import RunStore
    from dat_lab.results.race import Race, record_race
    from dat_lab.sweeps.ranking import race_candidates
    from dat_lab.sweeps.status import load_stored_study

    stored = load_stored_study(sweep.study, sweep.location)
    candidates = race_candidates(stored, sweep.study, settings.top)
    if len(candidates) < 2:
        print_line(f"race: {len(candidates)} configuration(s) to race; nothing to decide")
        return 0
    store = RunStore(sweep.store)
    race = Race(sweep.study, candidates, store, settings, print_line)
    if stored is not None:
        record_race(stored, race)  # what the report reads: which race, which margin
    print_line(f"race: {', '.join(race.candidates)}; up to {settings.max_seeds} seeds each")
    started = time.monotonic()
    outcome = race.run(_race_executor(args, sweep, store))
    for line in race.summary(outcome):
        print_line(line)
    print_line(f"race: {time.monotonic() - started:.0f} s wall time")
    return 0 if outcome.ok else 1


def _race_executor(args: argparse.Namespace, sweep: SweepRequest, store: Any) -> Any:
    """Trains a round's runs as ``dat-lab run`` does: the local worker pool (``--workers``),
    or one SLURM job per run (``--launcher slurm``, waited for)."""
    from dat_lab.launchers.rounds import RoundExecutor

    if args.launcher == "slurm":
        resources = slurm_resources(args, sweep.study.file.slurm or sweep.study.experiment.slurm)
        return RoundExecutor(store, retry_failed=args.retry_failed, slurm=resources)
    workers = 1 if sweep.gpus else sweep.n_workers
    return RoundExecutor(store, workers, args.retry_failed, args.rerun_stale)


def print_race_status(args: argparse.Namespace, sweep: SweepRequest, stored: Any) -> None:
    """``--status``: the race as the store holds it (settings: the last ``--race``'s, or this
    command's flags)."""
    from dat_lab.experiments.store import RunStore
    from dat_lab.results.race import Race, race_settings_of
    from dat_lab.sweeps.ranking import race_candidates

    settings = race_settings(args) if args.race else race_settings_of(stored)
    if settings is None:
        return
    candidates = race_candidates(stored, sweep.study, settings.top)
    if len(candidates) < 2:
        return
    race = Race(sweep.study, candidates, RunStore(sweep.store), settings, print_line)
    for line in race.summary(race.replay()):
        print_line(line)


__all__ = ["print_race_status", "race", "race_settings"]
