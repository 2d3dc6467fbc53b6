"""``dat-lab sweep --status``: the trials of a study as a table, the budget, the best trials.

A RUNNING trial whose worker is dead is shown as such (the next worker fails and retries it).
For several objectives the Pareto front (Optuna's ``best_trials``) is listed.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from dat_lab.sweeps.liveness import USER_FAIL_REASON, USER_RUN_ID, Liveness, stale_reason
from dat_lab.sweeps.ranking import best_trials
from dat_lab.sweeps.space import label
from dat_lab.sweeps.spec import Study
from dat_lab.sweeps.storage import StorageLocation
from dat_lab.sweeps.study import budget_used
from dat_lab.text import text_table


def load_stored_study(study: Study, location: StorageLocation) -> optuna.Study | None:
    """The stored study, or None if no worker has created it yet."""
    if location.journal is not None and not location.journal.exists():
        return None  # not even the journal: do not create it just to look
    storage = location.open()
    names = {
        s.study_name
        for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)
    }
    return (
        optuna.load_study(study_name=study.name, storage=storage) if study.name in names else None
    )


def status_text(
    study: Study,
    optuna_study: optuna.Study | None,
    location: StorageLocation,
    liveness: Liveness | None = None,
) -> str:
    """The status report of ``study`` (``optuna_study`` None: not started)."""
    head = f"study {study.name!r} in {location.masked()}"
    if optuna_study is None:
        return f"{head}: not started (budget {study.n_trials} trials)"
    trials = optuna_study.get_trials(deepcopy=False)
    liveness = liveness or Liveness()
    by_state = {s: sum(t.state is s for t in trials) for s in TrialState}
    summary = ", ".join(f"{n} {s.name.lower()}" for s, n in by_state.items() if n)
    metrics = [o.metric for o in study.file.objectives]
    lines = [
        f"{head}: {budget_used(trials)}/{study.n_trials} trials of the budget used "
        f"({summary or 'none'})"
    ]
    rows = [["#", "state", *metrics, "params", "run id", "note"]]
    rows += [_row(t, liveness, len(metrics)) for t in trials]
    lines += text_table(rows)
    lines += _best(optuna_study, study)
    return "\n".join(lines)


def _row(trial: FrozenTrial, liveness: Liveness, n_values: int) -> list[str]:
    values = trial.values or [None] * n_values
    if trial.state is TrialState.PRUNED and trial.intermediate_values:
        step = max(trial.intermediate_values)
        values = [trial.intermediate_values[step]]
    # Only a failed trial's reason: a reaper racing a worker's tell may leave one on a trial
    # that completed after all (liveness.fail_and_retry: the state change decides).
    note = trial.user_attrs.get(USER_FAIL_REASON, "") if trial.state is TrialState.FAIL else ""
    if trial.state is TrialState.RUNNING:
        dead = stale_reason(trial, liveness)
        note = f"{dead}: will be retried" if dead else ""
    elif trial.state is TrialState.PRUNED and trial.intermediate_values:
        note = f"pruned after epoch {max(trial.intermediate_values) + 1}"
    state = trial.state.name
    return [
        str(trial.number),
        state,
        *(_fmt(v) for v in values),
        label(trial.params) if trial.params else label(_fixed(trial)),
        trial.user_attrs.get(USER_RUN_ID, "-"),
        note[:120],
    ]


def _fixed(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters of an enqueued (WAITING) trial, which Optuna keeps aside until it runs."""
    return dict(trial.system_attrs.get("fixed_params", {}))


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.4e}"


def _best(optuna_study: optuna.Study, study: Study) -> list[str]:
    done = optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return []
    metrics = ", ".join(f"{o.direction} {o.metric}" for o in study.file.objectives)
    if study.file.multi_objective:
        front = best_trials(optuna_study)
        return [
            f"Pareto front ({metrics}): trials "
            + ", ".join(f"#{t.number} ({', '.join(map(_fmt, t.values))})" for t in front)
        ]
    (best,) = best_trials(optuna_study)
    return [
        f"best ({metrics}): trial #{best.number} = {_fmt(best.value)} with {label(best.params)} "
        f"(run {best.user_attrs.get(USER_RUN_ID, '-')})"
    ]


__all__ = ["load_stored_study", "status_text"]
