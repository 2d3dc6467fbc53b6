"""``dat-lab sweep --race``: add seeds to a study's best configurations until the winner is
decided.

The race takes the ``top`` best configurations of the study's completed trials (the Pareto
front's members, by the first run metric, for several objectives; :mod:`dat_lab.sweeps.ranking`)
plus those the study file names under ``race:``. A configuration's seeds are the study's seed
``s`` (its trial's run), then ``s + 1``, ``s + 2``, ...; each seed is an ordinary run of the
store: the trial's resolved config with another ``train.seed`` (``Study.run_spec``), the same
run id whoever asks for it. The rounds:

1. every configuration's first seed (a trial's run is reused; a ``race:`` one may train);
2. look: the standings (:mod:`dat_lab.results.race_standings`: the leader by mean, each rival
   against it by the sequential rule, Holm over the rivals);
3. stop when the leader is decided better than (or equivalent within ``margin`` to) every
   rival, when the configurations still raced have ``max_seeds`` seeds, or when the training
   time of the race's runs (their own ``cost.json``) reaches the budget;
4. else the leader and every undecided rival get their next seed, and again from 2.

Nothing else is stored: the rounds are a function of the stored runs (a look at ``n`` seeds
reads only the first ``n`` seeds), so rerunning the command replays the finished rounds
without training, resumes an interrupted run and goes on; kill -9, workers and SLURM hold as
for ``dat-lab run``, whose executor trains the rounds' runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna

from dat_lab.experiments.records import RunState
from dat_lab.experiments.run_config import RunSpec
from dat_lab.experiments.store import RunStore
from dat_lab.results.race_standings import Standings, race_metric, race_rule, standings
from dat_lab.results.sequential import ALPHA
from dat_lab.results.tables import is_accuracy
from dat_lab.schema import check
from dat_lab.sweeps.ranking import Candidate, race_objective
from dat_lab.sweeps.spec import Study
from dat_lab.text import text_table

Log = Callable[[str], None]
# Trains (or resumes, or skips) the runs of a round; whether all of them finished.
Execute = Callable[[list[RunSpec]], bool]
DEFAULT_TOP = 3
DEFAULT_MAX_SEEDS = 10


@dataclass(frozen=True)
class RaceSettings:
    """``--top``, ``--max-seeds``, ``--margin`` (in the metric's shown units: points of an
    accuracy) and the budget in training seconds (None: none)."""

    top: int = DEFAULT_TOP
    max_seeds: int = DEFAULT_MAX_SEEDS
    margin: float = 0.0
    budget_s: float | None = None
    alpha: float = ALPHA

    def __post_init__(self) -> None:
        check(self.top >= 1, "--top", f"got {self.top}, must be >= 1")
        check(self.max_seeds >= 2, "--max-seeds", f"got {self.max_seeds}, must be >= 2")
        check(
            math.isfinite(self.margin) and self.margin >= 0,
            "--margin",
            f"got {self.margin}, must be >= 0 (0: no equivalence verdict)",
        )
        check(
            self.budget_s is None or self.budget_s > 0,
            "--budget",
            f"got {self.budget_s}, must be > 0 seconds",
        )


@dataclass(frozen=True)
class RaceOutcome:
    """How a race ended: the last standings, why it stopped, whether its runs all finished."""

    standings: Standings | None
    stopped: str
    ok: bool = True


class Race:
    """One race over ``candidates`` of ``study``, its runs in ``store``."""

    def __init__(
        self,
        study: Study,
        candidates: Sequence[Candidate],
        store: RunStore,
        settings: RaceSettings,
        log: Log = print,
    ):
        self.study, self.store, self.settings, self.log = study, store, settings, log
        self.candidates = {c.label: c for c in candidates}
        _, objective = race_objective(study)
        self.metric = objective.metric
        self.sign = 1.0 if objective.direction == "maximize" else -1.0
        self.scale = 100.0 if is_accuracy(self.metric) else 1.0
        self.seeds = [study.seed + i for i in range(settings.max_seeds)]
        self._specs: dict[tuple[str, int], RunSpec] = {}

    def spec(self, config: str, seed: int) -> RunSpec:
        key = (config, seed)
        if key not in self._specs:
            self._specs[key] = self.study.run_spec(self.candidates[config].params, seed)
        return self._specs[key]

    # -- what the store says ------------------------------------------------------------

    def value(self, config: str, seed: int) -> float | None:
        """The finished run's raced metric (shown units), else None."""
        record = self.store.get(self.spec(config, seed).run_id)
        if record is None or record.state is not RunState.FINISHED or not record.final:
            return None
        value = record.final.get(self.metric)
        return self.scale * float(value) if value is not None and math.isfinite(value) else None

    def look(self, n: int) -> Standings:
        """The standings on each configuration's finished seeds among the first ``n``."""
        values: dict[str, dict[int, float]] = {}
        for config in self.candidates:
            found = {s: self.value(config, s) for s in self.seeds[:n]}
            values[config] = {s: v for s, v in found.items() if v is not None}
        return standings(values, self.settings.margin, self.sign, self.settings.alpha)

    def spent_s(self, n: int) -> float:
        """Training seconds of the race's runs among the first ``n`` seeds (cost.json)."""
        total = 0.0
        for config in self.candidates:
            for seed in self.seeds[:n]:
                record = self.store.get(self.spec(config, seed).run_id)
                cost = (record.cost or {}) if record is not None else {}
                total += float(cost.get("train_time_s") or 0.0)
        return total

    # -- the rounds -----------------------------------------------------------------------

    def run(self, execute: Execute) -> RaceOutcome:
        """The rounds (see the module docstring) until a stop."""
        n, active = 1, list(self.candidates)
        while True:
            pending = [self.spec(c, s) for c in active for s in self.seeds[:n]]
            ok = execute(pending)
            now = self.look(n)
            self.report_look(n, now)
            if not ok:
                return RaceOutcome(now, "some runs did not finish", ok=False)
            stop = self.stop_reason(n, now)
            if stop is not None:
                return RaceOutcome(now, stop)
            n += 1
            active = [now.leader, *(r for r, d in now.decisions.items() if not d.decided)]
            self.log(
                f"race round {n - 1}: adding seed {self.seeds[n - 1]} to " + ", ".join(active)
            )

    def stop_reason(self, n: int, now: Standings) -> str | None:
        if now.decided:
            return "the leader is decided against every rival"
        if n >= self.settings.max_seeds:
            return f"--max-seeds ({self.settings.max_seeds}) is reached"
        budget = self.settings.budget_s
        if budget is None:
            return None
        spent = self.spent_s(n)
        if spent < budget:
            return None
        return f"the budget is spent ({spent:.0f} s of {budget:.0f} s)"

    def replay(self) -> RaceOutcome:
        """The race as far as the store has its runs, training nothing (``--status``, the
        report): the same rounds, with an executor that only asks whether they finished."""
        quiet = Race(self.study, list(self.candidates.values()), self.store, self.settings,
                     log=lambda _: None)  # fmt: skip
        outcome = quiet.run(quiet.all_finished)
        if outcome.ok:
            return outcome
        return RaceOutcome(outcome.standings, "runs still to train (rerun --race)", ok=False)

    def all_finished(self, specs: list[RunSpec]) -> bool:
        """Whether every run of ``specs`` has finished (the replay's executor)."""
        return all(self.value(s.variant, s.seed) is not None for s in specs)

    # -- what it prints -------------------------------------------------------------------

    def report_look(self, n: int, now: Standings) -> None:
        for rival in now.decisions:
            self.log(f"race at {n} seed(s): {now.rival_line(rival)}")

    def summary(self, outcome: RaceOutcome) -> list[str]:
        """The end: why it stopped, the table, the decided order, the seeds spent."""
        now = outcome.standings
        lines = [f"race stopped: {outcome.stopped}"]
        if now is None:
            return lines
        lines += self.header(now)
        lines += text_table(now.table())
        lines.append(f"order: {now.order_text()}")
        runs = sum(len(v) for v in now.values.values())
        n = max((len(v) for v in now.values.values()), default=0)
        lines.append(f"seeds spent: {runs} runs; {self.spent_s(n):.0f} s of training")
        return lines

    def header(self, now: Standings) -> list[str]:
        metric = race_metric(self.metric, self.scale)
        rule = race_rule(self.settings.alpha, self.settings.margin)
        return [f"race on {metric}: leader {now.leader}, {len(now.decisions)} rival(s), {rule}"]


ATTR_RACE = "dat_lab:race"  # the Optuna study's user attribute: the last --race's settings


def record_race(optuna_study: optuna.Study, race: Race) -> None:
    """Keep the race's settings and configurations with the study (its seeds are runs of the
    store): what ``--status`` and the report read to show the race."""
    settings = race.settings
    optuna_study.set_user_attr(
        ATTR_RACE,
        {
            "top": settings.top,
            "max_seeds": settings.max_seeds,
            "margin": settings.margin,
            "budget_s": settings.budget_s,
            "alpha": settings.alpha,
            "metric": race.metric,
            "sign": race.sign,
            "scale": race.scale,
            "seeds": race.seeds,
            "configurations": list(race.candidates),
        },
    )


def race_settings_of(optuna_study: optuna.Study | None) -> RaceSettings | None:
    """The settings of the last race recorded with the study, or None."""
    attrs = optuna_study.user_attrs.get(ATTR_RACE) if optuna_study is not None else None
    if not isinstance(attrs, dict):
        return None
    return RaceSettings(
        int(attrs["top"]),
        int(attrs["max_seeds"]),
        float(attrs["margin"]),
        attrs.get("budget_s"),
        float(attrs.get("alpha", ALPHA)),
    )


__all__ = [
    "ATTR_RACE",
    "DEFAULT_MAX_SEEDS",
    "DEFAULT_TOP",
    "Race",
    "RaceOutcome",
    "RaceSettings",
    "race_settings_of",
    "record_race",
]
