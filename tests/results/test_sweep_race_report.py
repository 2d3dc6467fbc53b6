"""The report's sweep section: a race's standings, or a best trial no race has confirmed."""

from __future__ import annotations

import optuna
import pandas as pd

from dat_lab.experiments.records import RunState
from dat_lab.results.analyses import sweep_race
from dat_lab.results.analyses.base import Group
from dat_lab.results.race import ATTR_RACE

VALUES = {"cfg=a": [0.60, 0.64, 0.57, 0.62], "cfg=b": [0.10, 0.08, 0.09, 0.08]}


def _runs() -> pd.DataFrame:
    rows = [
        {"run_id": f"{config[-1]}{seed}", "variant": config, "seed": seed,
         "state": RunState.FINISHED.value, "final.val/acc1": value}
        for config, values in VALUES.items()
        for seed, value in enumerate(values)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def _study(race: bool) -> optuna.Study:
    study = optuna.create_study(study_name="planted", direction="maximize")
    for config in VALUES:  # one trial per configuration: its seed-0 run
        trial = study.ask({"cfg": optuna.distributions.CategoricalDistribution(["a", "b"])})
        trial.set_user_attr("run_id", f"{config[-1]}0")
        study.tell(trial, VALUES[config][0])
    if race:
        study.set_user_attr(ATTR_RACE, {
            "top": 3, "max_seeds": 6, "margin": 0.0, "budget_s": None, "alpha": 0.05,
            "metric": "val/acc1", "sign": 1.0, "scale": 100.0, "seeds": list(range(6)),
            "configurations": list(VALUES),
        })  # fmt: skip
    return study


def test_without_a_race_the_best_trial_is_marked_unconfirmed():
    out = sweep_race.build(Group("sweep/planted", _runs(), study=_study(race=False)))
    assert not out.tables
    assert "not confirmed by a race" in out.notes[0] and "#0" in out.notes[0]


def test_a_decided_race_confirms_the_best_trial_with_its_order_and_table():
    out = sweep_race.build(Group("sweep/planted", _runs(), study=_study(race=True)))
    (table,) = out.tables
    assert table.header == ["configuration", "seeds", "mean", "leader - it", "verdict"]
    by_config = {row[0]: row for row in table.cells}
    assert by_config["cfg=a"][1:3] == ["4", "60.75"] and by_config["cfg=a"][4] == "leader"
    assert by_config["cfg=b"][4] == "better"
    assert "best trial confirmed by the race: cfg=a" in out.notes[0]
    assert "cfg=a > cfg=b (decided, 4 seeds each)" in out.notes[0]
