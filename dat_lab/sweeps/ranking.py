"""The configurations a race starts from: a study's completed trials, best first.

A race (``dat-lab sweep --race``, :mod:`dat_lab.results.race`) adds seeds to the best
configurations of a study. Which are best is read here, from the stored trials alone: the
objective a race compares is the study's first run metric (``val/acc1``); cost objectives
(``params``, ``flops``) are deterministic and need no seeds. In a multi-objective study the
candidates are the members of the Pareto front (Optuna's ``best_trials``), ranked by that
metric; two trials of the same configuration (a retry, a repeated TPE draw) count once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from dat_lab.schema import ConfigError
from dat_lab.sweeps.liveness import USER_RUN_ID
from dat_lab.sweeps.schema import COST_METRICS, ObjectiveSpec
from dat_lab.sweeps.space import label
from dat_lab.sweeps.spec import Study


@dataclass(frozen=True)
class Candidate:
    """One configuration of a race: its parameters, the run id of its trial seed, and the
    trial that found it (None: named by the study file's ``race:``)."""

    params: dict[str, Any]
    run_id: str
    trial: int | None = None
    value: float | None = None  # the trial's raced objective (one seed)

    @property
    def label(self) -> str:
        return label(self.params)


def race_objective(study: Study) -> tuple[int, ObjectiveSpec]:
    """The index and spec of the objective a race compares: the first run metric."""
    for i, objective in enumerate(study.file.objectives):
        if objective.metric not in COST_METRICS:
            return i, objective
    raise ConfigError(
        "a race compares seeds of a run metric, but every objective is a cost "
        f"({', '.join(COST_METRICS)}: deterministic, no seeds)",
        "objectives",
        study.path,
    )


def best_trials(optuna_study: optuna.Study) -> list[FrozenTrial]:
    """The study's best: its best trial, or for several objectives the Pareto front's
    members in trial order (what ``--status`` names and a race should confirm)."""
    if len(optuna_study.directions) > 1:
        return sorted(optuna_study.best_trials, key=lambda t: t.number)
    return [optuna_study.best_trial]


def ranked_trials(optuna_study: optuna.Study, study: Study) -> list[Candidate]:
    """The completed trials' distinct configurations, best first by the raced objective
    (only the Pareto front's members for several objectives)."""
    index, objective = race_objective(study)
    if study.file.multi_objective:
        trials = best_trials(optuna_study)
    else:
        trials = optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    sign = -1.0 if objective.direction == "maximize" else 1.0
    trials = sorted(trials, key=lambda t: (sign * t.values[index], t.number))
    out: dict[str, Candidate] = {}
    for trial in trials:
        run_id = trial.user_attrs.get(USER_RUN_ID)
        if isinstance(run_id, str) and run_id not in out:
            params = _in_space_order(study, trial.params)
            out[run_id] = Candidate(params, run_id, trial.number, trial.values[index])
    return list(out.values())


def race_candidates(optuna_study: optuna.Study | None, study: Study, top: int) -> list[Candidate]:
    """The ``top`` best trials' configurations, then every one the study file names under
    ``race:`` that is not among them (each resolved as a trial would be)."""
    ranked = ranked_trials(optuna_study, study)[:top] if optuna_study is not None else []
    chosen = {c.run_id: c for c in ranked}
    for params in study.file.race:
        run_id = study.run_spec(dict(params)).run_id
        if run_id not in chosen:
            chosen[run_id] = Candidate(_in_space_order(study, params), run_id)
    return list(chosen.values())


def _in_space_order(study: Study, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters in the order of the space (as a trial's label names them)."""
    return {k: params[k] for k in study.file.space if k in params}


__all__ = ["Candidate", "race_candidates", "race_objective", "ranked_trials"]
