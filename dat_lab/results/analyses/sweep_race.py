"""A sweep's race (``dat-lab sweep --race``), or the warning that no race confirmed its best.

The race's seeds are runs of the group (identity ``sweep/NAME``, the configuration's label,
the seed); which configurations raced, and at what margin, is the study's ``dat_lab:race``
attribute (:func:`dat_lab.results.race.record_race`). The standings are computed from the
runs as ``--status`` computes them (:mod:`dat_lab.results.race_standings`): per configuration
its seeds, mean and the interval of ``leader - it``, and the decided order. Without a race,
the study's best trial is one seed, and the section says it is not confirmed.
"""

from __future__ import annotations

from typing import Any

import optuna
import pandas as pd

from dat_lab.results.analyses.base import Group, Output
from dat_lab.results.compare import seed_values
from dat_lab.results.race import ATTR_RACE
from dat_lab.results.race_standings import Standings, race_metric, race_rule, standings
from dat_lab.results.tables import Table
from dat_lab.sweeps.liveness import USER_RUN_ID
from dat_lab.sweeps.ranking import best_trials

NAME = "sweep_race"


def applies(group: Group) -> bool:
    return group.study is not None and bool(_completed(group.study))


def build(group: Group) -> Output:
    study = group.study
    race = study.user_attrs.get(ATTR_RACE)
    best = best_trials(study)
    if not isinstance(race, dict):
        which = ", ".join(f"#{t.number}" for t in best)
        what = "best trial" if len(best) == 1 else "Pareto front's trials"
        return Output(notes=[f"{group.name}: the {what} ({which}) is one seed each, not "
                             f"confirmed by a race (dat-lab sweep --study {study.study_name} "
                             "--race)"])  # fmt: skip
    now = _standings(group, race)
    if now is None:
        return Output(notes=[f"{group.name}: a race was started but none of its runs finished"])
    leader_run = _run_id(group, now.leader, int(race["seeds"][0]))
    confirmed = now.decided and any(t.user_attrs.get(USER_RUN_ID) == leader_run for t in best)
    verdict = (
        f"best trial confirmed by the race: {now.leader}"
        if confirmed
        else f"best trial NOT confirmed by a race (leader {now.leader}"
        + (", decided" if now.decided else ", undecided")
        + ")"
    )
    return Output(tables=[_table(group, now, race)], notes=[f"{group.name}: {verdict}; "
                                                            f"{now.order_text()}"])  # fmt: skip


def _completed(study: Any) -> list[Any]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def _standings(group: Group, race: dict[str, Any]) -> Standings | None:
    values = seed_values(group.runs, f"final.{race['metric']}")
    seeds = {int(s) for s in race["seeds"]}
    scale = float(race.get("scale", 1.0))
    chosen = {
        config: {
            int(s): scale * float(v)
            for s, v in values.get(config, pd.Series(dtype=float)).items()
            if int(s) in seeds
        }
        for config in race["configurations"]
    }
    if not any(chosen.values()):
        return None
    return standings(
        chosen, float(race["margin"]), float(race.get("sign", 1.0)), float(race["alpha"])
    )


def _run_id(group: Group, variant: str, seed: int) -> str | None:
    runs = group.runs
    rows = runs[(runs["variant"].astype(str) == variant) & (runs["seed"] == seed)]
    return str(rows["run_id"].iloc[0]) if len(rows) and "run_id" in rows else None


def _table(group: Group, now: Standings, race: dict[str, Any]) -> Table:
    rows = now.table()
    metric = race_metric(race["metric"], float(race.get("scale", 1.0)))
    terms = f"{metric}, {race_rule(float(race['alpha']), float(race['margin']))}"
    caption = (
        "The race: seeds, mean, and leader - it with its anytime-valid interval (Holm over "
        f"the rivals); {terms}. Order: {now.order_text()}."
    )
    return Table(
        name="race",
        title=f"{group.name}: race",
        caption=caption,
        header=rows[0],
        cells=rows[1:],
        data=pd.DataFrame(rows[1:], columns=rows[0]),
    )
