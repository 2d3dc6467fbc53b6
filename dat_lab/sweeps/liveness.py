"""Which worker runs a trial, whether it is still alive, and retrying the trials of dead ones.

Optuna 5's own heartbeat works only with RDB storage and ``study.optimize`` (docs/design.md §6);
dat-lab's workers use ask/tell (a trial is claimed under the study lock) and the journal
storage, so they keep their own record, in the trial's system attributes:

- the worker's host, pid and process start time (like the run store's locks): on the same
  host a dead worker is seen at once, even after its pid was reused;
- a heartbeat timestamp, rewritten every ``interval_s`` by a thread: a worker on another host
  is dead when its heartbeat is older than ``grace_s``.

A dead worker's trial is failed with the reason and, unless it has used up ``max_retries``,
the same parameters are enqueued again (its run resumes from its last checkpoint). Retrying
is idempotent, so that the reaper and an interrupted worker (Ctrl-C) can both try it:

- it runs under the study lock, like every decision that counts trials;
- the trial's RUNNING -> FAIL transition is the guard: the storage lets exactly one writer make
  it (a row lock in PostgreSQL, the journal's order), so of a reaper, a Ctrl-C'd worker and a
  slow worker telling its result, only the winner goes on, and only it may enqueue a retry;
- no retry is enqueued while another WAITING, RUNNING or COMPLETE trial covers the same run.

A failed trial whose run is covered (by its retry or another trial) is marked ``retried``
before it fails and is not counted in the budget. If a worker dies between failing the trial
and enqueueing its retry, the run is simply uncovered: a grid enqueues the point again, other
samplers draw another trial within the budget.
"""

from __future__ import annotations

import enum
import os
import time
from dataclasses import dataclass

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from dat_lab.experiments.periodic import Periodic
from dat_lab.experiments.processes import host_name, pid_alive, process_start_ticks

ATTR_HOST = "dat_lab:host"
ATTR_PID = "dat_lab:pid"
ATTR_START_TICKS = "dat_lab:start_ticks"
ATTR_HEARTBEAT = "dat_lab:heartbeat"
ATTR_RETRIED = "dat_lab:retried"  # on a failed trial whose run another trial covers (its retry)
USER_FAIL_REASON = "fail_reason"
USER_ATTEMPT = "attempt"
USER_RETRY_OF = "retry_of"
USER_RUN_ID = "run_id"  # the run of a trial (set when it is claimed, kept by its retries)
GRACE_BEATS = 4  # missed heartbeats after which a worker on another host counts as dead


@dataclass(frozen=True)
class Liveness:
    """Heartbeat period and the silence after which a worker on another host counts as dead."""

    interval_s: float = 30.0
    grace_s: float = 120.0

    @classmethod
    def from_heartbeat(cls, interval_s: float) -> Liveness:
        """``--heartbeat``: a beat every ``interval_s``; dead after 4 missed beats. Workers and
        every ``--status`` (the launcher's too) use this, so they agree on who is dead."""
        return cls(interval_s=interval_s, grace_s=GRACE_BEATS * interval_s)

    @property
    def poll_s(self) -> float:
        """How often an idle worker looks again for work (or for dead workers' trials)."""
        return max(0.2, min(5.0, self.interval_s))


def mark_alive(storage: BaseStorage, trial_id: int) -> None:
    """Record this process as the trial's worker (call right after claiming the trial)."""
    pid = os.getpid()
    storage.set_trial_system_attr(trial_id, ATTR_HOST, host_name())
    storage.set_trial_system_attr(trial_id, ATTR_PID, pid)
    storage.set_trial_system_attr(trial_id, ATTR_START_TICKS, process_start_ticks(pid))
    storage.set_trial_system_attr(trial_id, ATTR_HEARTBEAT, time.time())


class Heartbeat(Periodic):
    """A thread that refreshes a running trial's heartbeat until the ``with`` block ends."""

    def __init__(self, storage: BaseStorage, trial_id: int, interval_s: float):
        super().__init__(interval_s, name=f"heartbeat-{trial_id}")
        self._storage = storage
        self._trial_id = trial_id

    def tick(self) -> bool:
        try:
            self._storage.set_trial_system_attr(self._trial_id, ATTR_HEARTBEAT, time.time())
        except optuna.exceptions.UpdateFinishedTrialError:
            return False  # told already (or failed by a worker that thought us dead)
        except Exception:  # noqa: BLE001 - a storage hiccup: the next beat tries again
            pass
        return True

    def __enter__(self) -> Heartbeat:
        return super().__enter__()


def stale_reason(trial: FrozenTrial, liveness: Liveness, now: float | None = None) -> str | None:
    """Why the RUNNING ``trial``'s worker is dead, or None while it is (or may be) alive."""
    now = time.time() if now is None else now
    attrs = trial.system_attrs
    host, pid = attrs.get(ATTR_HOST), attrs.get(ATTR_PID)
    if host is None or pid is None:  # the worker died between claiming and recording itself
        # Optuna stores naive local times, which .timestamp() reads as local time.
        age = now - trial.datetime_start.timestamp() if trial.datetime_start else 0.0
        return (
            f"its worker died before recording itself ({age:.0f} s ago)"
            if age > liveness.grace_s
            else None
        )
    if host == host_name():
        if pid_alive(int(pid), attrs.get(ATTR_START_TICKS)):
            return None
        return f"its worker (pid {pid} on {host}) died"
    silent = now - float(attrs.get(ATTR_HEARTBEAT, 0.0))
    if silent > liveness.grace_s:
        return f"its worker (pid {pid} on {host}) sent no heartbeat for {silent:.0f} s"
    return None


class Retry(enum.Enum):
    """What :func:`fail_and_retry` did with a trial."""

    ENQUEUED = "enqueued again"
    COVERED = "not enqueued: another trial covers its run"
    EXHAUSTED = "not retried: no retries left"
    SETTLED = "left alone: it had finished or failed already"


def fail_and_retry(
    study: optuna.Study,
    trial: FrozenTrial,
    reason: str,
    max_retries: int,
    force_retry: bool = False,
) -> Retry:
    """Fail the RUNNING ``trial`` with ``reason``; enqueue its parameters again if it has
    retries left (or ``force_retry``, for a trial stopped by Ctrl-C) and no other trial covers
    its run. Call under the study lock; safe to call twice (see the module docstring)."""
    current = study._storage.get_trial(trial._trial_id)  # ``trial`` may be an old snapshot
    if current.state is not TrialState.RUNNING:
        return Retry.SETTLED
    attempt = int(current.user_attrs.get(USER_ATTEMPT, 1))
    outcome, note = _retry_decision(study, current, attempt, max_retries, force_retry)
    reason += f"; {note}"
    covered = outcome is not Retry.EXHAUSTED  # its retry, or another trial, covers the run
    if not _fail(study._storage, current._trial_id, reason, covered):
        return Retry.SETTLED  # it finished meanwhile (a slow, not a dead, worker): it stands
    if outcome is Retry.ENQUEUED:
        user_attrs = {k: v for k, v in current.user_attrs.items() if k != USER_FAIL_REASON}
        user_attrs.update({USER_ATTEMPT: attempt + 1, USER_RETRY_OF: current.number})
        study.enqueue_trial(current.params, user_attrs=user_attrs)
    return outcome


def _retry_decision(
    study: optuna.Study, trial: FrozenTrial, attempt: int, max_retries: int, force_retry: bool
) -> tuple[Retry, str]:
    """Whether to enqueue ``trial`` again, and why (a note for its fail reason)."""
    cover = covering_trial(study, trial)
    if cover is not None:
        return Retry.COVERED, f"not retried: trial {cover.number} ({cover.state.name}) has its run"
    if force_retry or attempt <= max_retries:
        return Retry.ENQUEUED, f"retried as attempt {attempt + 1}"
    return Retry.EXHAUSTED, f"not retried (attempt {attempt}, max_retries {max_retries})"


def _fail(storage: BaseStorage, trial_id: int, reason: str, covered: bool) -> bool:
    """Record why the trial failed, then fail it; False if it was no longer running. Its
    attributes go first: a finished trial cannot be changed."""
    try:
        if covered:
            storage.set_trial_system_attr(trial_id, ATTR_RETRIED, True)
        storage.set_trial_user_attr(trial_id, USER_FAIL_REASON, reason)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    return True


def covering_trial(study: optuna.Study, trial: FrozenTrial) -> FrozenTrial | None:
    """Another WAITING, RUNNING or COMPLETE trial of the same run (or, before a run is
    resolved, the same parameters), or None."""
    run_id, params = trial.user_attrs.get(USER_RUN_ID), _params(trial)
    for other in study.get_trials(
        deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
    ):
        if other._trial_id == trial._trial_id:
            continue
        if run_id is not None and other.user_attrs.get(USER_RUN_ID) == run_id:
            return other
        if run_id is None and params and _params(other) == params:
            return other
    return None


def _params(trial: FrozenTrial) -> dict:
    """A trial's parameters; an enqueued (WAITING) trial keeps them aside until it runs."""
    return dict(trial.params or trial.system_attrs.get("fixed_params", {}))


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Finished, pruned, running, or failed for good (a retried failure is not counted: its
    retry is)."""
    if trial.state is TrialState.FAIL:
        return not trial.system_attrs.get(ATTR_RETRIED, False)
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


__all__ = [
    "Heartbeat",
    "Liveness",
    "Retry",
    "counts_toward_budget",
    "covering_trial",
    "fail_and_retry",
    "mark_alive",
    "stale_reason",
]
