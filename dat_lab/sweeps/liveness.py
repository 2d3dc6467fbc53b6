"""Which worker runs a trial, whether it is still alive, and retrying the trials of dead ones.

Optuna 5's own heartbeat works only with RDB storage and ``study.optimize`` (DESIGN.md §6);
dat-lab's workers use ask/tell (a trial is claimed under the study lock) and the journal
storage, so they keep their own record, in the trial's system attributes:

- the worker's host, pid and process start time (like the run store's locks): on the same
  host a dead worker is seen at once, even after its pid was reused;
- a heartbeat timestamp, rewritten every ``interval_s`` by a thread: a worker on another host
  is dead when its heartbeat is older than ``grace_s``.

A dead worker's trial is failed with the reason and, unless it has used up ``max_retries``,
the same parameters are enqueued again (its run resumes from its last checkpoint). Order of
the writes (enqueue the retry, mark the old trial retried, then fail it) keeps any reader's
view consistent: the grid point is always covered and the budget never counts it twice.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from dat_lab.experiments.locking import host_name, pid_alive, process_start_ticks

ATTR_HOST = "dat_lab:host"
ATTR_PID = "dat_lab:pid"
ATTR_START_TICKS = "dat_lab:start_ticks"
ATTR_HEARTBEAT = "dat_lab:heartbeat"
ATTR_RETRIED = "dat_lab:retried"  # on a failed trial whose parameters were enqueued again
USER_FAIL_REASON = "fail_reason"
USER_ATTEMPT = "attempt"
USER_RETRY_OF = "retry_of"


@dataclass(frozen=True)
class Liveness:
    """Heartbeat period and the silence after which a worker on another host counts as dead."""

    interval_s: float = 30.0
    grace_s: float = 120.0

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


class Heartbeat:
    """A thread that refreshes a running trial's heartbeat until the ``with`` block ends."""

    def __init__(self, storage: BaseStorage, trial_id: int, interval_s: float):
        self._storage = storage
        self._trial_id = trial_id
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-{trial_id}", daemon=True
        )

    def _beat(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._storage.set_trial_system_attr(self._trial_id, ATTR_HEARTBEAT, time.time())
            except optuna.exceptions.UpdateFinishedTrialError:
                return  # told already (or failed by a worker that thought us dead)
            except Exception:  # noqa: BLE001 - a storage hiccup: the next beat tries again
                continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


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


def fail_and_retry(
    study: optuna.Study,
    trial: FrozenTrial,
    reason: str,
    max_retries: int,
    force_retry: bool = False,
) -> bool:
    """Fail the RUNNING ``trial`` with ``reason``; enqueue its parameters again if it has
    retries left (or ``force_retry``, for a trial stopped by Ctrl-C). True if retried."""
    storage = study._storage
    attempt = int(trial.user_attrs.get(USER_ATTEMPT, 1))
    retry = force_retry or attempt <= max_retries
    if retry:
        user_attrs = {k: v for k, v in trial.user_attrs.items() if k != USER_FAIL_REASON}
        user_attrs.update({USER_ATTEMPT: attempt + 1, USER_RETRY_OF: trial.number})
        study.enqueue_trial(trial.params, user_attrs=user_attrs)
        reason += f"; retried as attempt {attempt + 1}"
    else:
        reason += f"; not retried (attempt {attempt}, max_retries {max_retries})"
    try:
        if retry:
            storage.set_trial_system_attr(trial._trial_id, ATTR_RETRIED, True)
        storage.set_trial_user_attr(trial._trial_id, USER_FAIL_REASON, reason)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # it finished meanwhile (a slow, not a dead, worker): its result stands
    return retry


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Finished, pruned, running, or failed for good (a retried failure is not counted: its
    retry is)."""
    if trial.state is TrialState.FAIL:
        return not trial.system_attrs.get(ATTR_RETRIED, False)
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


__all__ = [
    "Heartbeat",
    "Liveness",
    "counts_toward_budget",
    "fail_and_retry",
    "mark_alive",
    "stale_reason",
]
