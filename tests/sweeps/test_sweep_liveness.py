"""Which trials have a dead worker: by pid on this host, by heartbeat on another; and taking
over a run lock left on a shared store by a worker on another host that died."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState

from dat_lab.experiments.locking import LockInfo
from dat_lab.experiments.store import RunStore
from dat_lab.sweeps.liveness import (
    ATTR_HEARTBEAT,
    ATTR_HOST,
    ATTR_PID,
    ATTR_RETRIED,
    ATTR_START_TICKS,
    Liveness,
    counts_toward_budget,
    fail_and_retry,
    mark_alive,
    stale_reason,
)
from dat_lab.sweeps.worker import _store_for_lock_of

LIVENESS = Liveness(interval_s=1.0, grace_s=10.0)


def _running_trial(study: optuna.Study, **attrs) -> optuna.trial.FrozenTrial:
    trial = study.ask()
    mark_alive(study._storage, trial._trial_id)
    for key, value in attrs.items():
        study._storage.set_trial_system_attr(trial._trial_id, key, value)
    return study._storage.get_trial(trial._trial_id)


def test_a_worker_on_this_host_is_dead_when_its_process_is():
    study = optuna.create_study()
    assert stale_reason(_running_trial(study), LIVENESS) is None  # this process: alive
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = _running_trial(study, **{ATTR_PID: child.pid, ATTR_START_TICKS: None})
    assert (
        stale_reason(dead, LIVENESS)
        == f"its worker (pid {child.pid} on {dead.system_attrs[ATTR_HOST]}) died"
    )


def test_a_worker_on_another_host_is_dead_when_its_heartbeat_is_old():
    study = optuna.create_study()
    now = time.time()
    fresh = _running_trial(study, **{ATTR_HOST: "elsewhere", ATTR_HEARTBEAT: now - 5})
    silent = _running_trial(study, **{ATTR_HOST: "elsewhere", ATTR_HEARTBEAT: now - 30})
    assert stale_reason(fresh, LIVENESS, now) is None
    assert "sent no heartbeat for 30 s" in stale_reason(silent, LIVENESS, now)


def test_a_dead_workers_trial_is_failed_retried_and_counted_once():
    study = optuna.create_study()
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    frozen = study._storage.get_trial(trial._trial_id)
    assert fail_and_retry(study, frozen, "its worker died", max_retries=1)
    failed, retry = study.get_trials()
    assert failed.state is TrialState.FAIL and not counts_toward_budget(failed)
    assert retry.state is TrialState.WAITING and retry.user_attrs == {"attempt": 2, "retry_of": 0}
    again = study.ask()  # the retry, with the same parameters
    assert again.number == 1 and again.suggest_float("x", 0, 1) == failed.params["x"]
    # Its retries used up, a trial stays failed and counts toward the budget.
    assert not fail_and_retry(
        study, study._storage.get_trial(again._trial_id), "died again", max_retries=1
    )
    assert counts_toward_budget(study.get_trials()[1])


def test_a_run_lock_of_a_dead_worker_on_another_host_is_taken_over(tmp_path):
    store = RunStore(tmp_path / "store")
    store.create("run1", {"x": 1}, {"experiment": "sweep/s", "variant": "v", "seed": 0})
    lock = LockInfo(pid=4242, host="elsewhere", token="t", acquired="2026-01-01T00:00:00")
    store.lock_path("run1").write_text(json.dumps(lock.__dict__))
    study = optuna.create_study()
    assert _store_for_lock_of("run1", store, study).try_lock("run1") is None  # may be alive: wait
    trial = _running_trial(study, **{ATTR_HOST: "elsewhere", ATTR_PID: 4242})
    fail_and_retry(study, trial, "sent no heartbeat", max_retries=1)
    assert study._storage.get_trial(trial._trial_id).system_attrs[ATTR_RETRIED]
    taken = _store_for_lock_of("run1", store, study).try_lock("run1")  # declared dead: take it
    assert taken is not None
    taken.release()


def test_a_claimed_trial_without_a_worker_record_is_dead_after_the_grace_period():
    study = optuna.create_study()
    trial = study._storage.get_trial(study.ask()._trial_id)  # claimed; the worker died at once
    assert stale_reason(trial, LIVENESS, time.time() + 5) is None
    assert "died before recording itself" in stale_reason(trial, LIVENESS, time.time() + 20)
