"""Which trials have a dead worker: by pid on this host, by heartbeat on another; retrying a
trial at most once, whoever (reaper, Ctrl-C) tries; and taking over a run lock left on a
shared store by a worker on another host that died."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from sweep_helpers import offset_grid

from dat_lab.experiments.locking import LockInfo
from dat_lab.experiments.store import RunStore
from dat_lab.sweeps.liveness import (
    ATTR_HEARTBEAT,
    ATTR_HOST,
    ATTR_PID,
    ATTR_RETRIED,
    ATTR_START_TICKS,
    USER_FAIL_REASON,
    USER_RUN_ID,
    Liveness,
    Retry,
    counts_toward_budget,
    fail_and_retry,
    mark_alive,
    stale_reason,
)
from dat_lab.sweeps.spec import load_study
from dat_lab.sweeps.storage import StorageLocation
from dat_lab.sweeps.study import budget_used, claim_trial, open_study, reap_dead_workers
from dat_lab.sweeps.worker import _store_for_lock_of, requeue_interrupted

LIVENESS = Liveness(interval_s=1.0, grace_s=10.0)


def _running_trial(study: optuna.Study, **attrs) -> optuna.trial.FrozenTrial:
    trial = study.ask()
    mark_alive(study._storage, trial._trial_id)
    for key, value in attrs.items():
        study._storage.set_trial_system_attr(trial._trial_id, key, value)
    return study._storage.get_trial(trial._trial_id)


@pytest.mark.slow
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
    assert fail_and_retry(study, frozen, "its worker died", max_retries=1) is Retry.ENQUEUED
    failed, retry = study.get_trials()
    assert failed.state is TrialState.FAIL and not counts_toward_budget(failed)
    assert retry.state is TrialState.WAITING and retry.user_attrs == {"attempt": 2, "retry_of": 0}
    again = study.ask()  # the retry, with the same parameters
    assert again.number == 1 and again.suggest_float("x", 0, 1) == failed.params["x"]
    # Its retries used up, a trial stays failed and counts toward the budget.
    assert (
        fail_and_retry(
            study, study._storage.get_trial(again._trial_id), "died again", max_retries=1
        )
        is Retry.EXHAUSTED
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


def _looks_dead_from_afar(study: optuna.Study, trial_id: int) -> None:
    """Make a live worker's trial look like that of a worker on another host that has been
    silent past the grace period (as a slow network or a paused VM can make it look)."""
    study._storage.set_trial_system_attr(trial_id, ATTR_HOST, "elsewhere")
    study._storage.set_trial_system_attr(trial_id, ATTR_HEARTBEAT, time.time() - 60)


def test_ctrl_c_after_the_reaper_retried_the_trial_enqueues_nothing_more(tmp_path, study_file):
    study = load_study(study_file("twice", space=offset_grid([2.0, 4.0]), sampler="grid"))
    location = StorageLocation(journal=tmp_path / "twice.journal")
    optuna_study = open_study(study, location, location.open())
    claim = claim_trial(optuna_study, study, LIVENESS)  # trial 0: s=2.0; s=4.0 waits
    # Another worker takes this one for dead: it fails trial 0 and enqueues its retry ...
    _looks_dead_from_afar(optuna_study, claim.trial._trial_id)
    with location.lock(study.name):
        assert reap_dead_workers(optuna_study, study, LIVENESS, log=lambda _: None) == 1
    # ... then Ctrl-C reaches this worker, which is alive after all: nothing is enqueued twice.
    lines: list[str] = []
    outcome = requeue_interrupted(
        optuna_study, study, claim.trial._trial_id, location, lines.append
    )
    assert outcome is Retry.SETTLED and "left alone" in lines[-1]
    trials = optuna_study.get_trials()
    waiting = [t.user_attrs["run_id"] for t in trials if t.state is TrialState.WAITING]
    assert sorted(waiting) == sorted(p.run_id for p in study.grid)  # each point once
    assert budget_used(trials) == 0
    reaped = trials[0]
    assert "no heartbeat" in reaped.user_attrs[USER_FAIL_REASON]  # the reaper's reason stands


def test_a_trial_told_complete_meanwhile_is_neither_failed_nor_retried():
    # A reaper that saw the trial RUNNING acts after its (slow, not dead) worker told it.
    study = optuna.create_study()
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    seen_running = study._storage.get_trial(trial._trial_id)
    study.tell(trial, 0.5)
    assert fail_and_retry(study, seen_running, "its worker died", max_retries=1) is Retry.SETTLED
    (told,) = study.get_trials()
    assert told.state is TrialState.COMPLETE and USER_FAIL_REASON not in told.user_attrs


@pytest.mark.parametrize("other", [TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE])
def test_an_interrupted_trial_whose_run_another_trial_has_is_not_enqueued(other):
    study = optuna.create_study()
    interrupted = study.ask({"x": FloatDistribution(0, 1)})
    interrupted.set_user_attr(USER_RUN_ID, "run-a")
    study.enqueue_trial(interrupted.params, user_attrs={USER_RUN_ID: "run-a"})  # WAITING
    if other is not TrialState.WAITING:
        second = study.ask({"x": FloatDistribution(0, 1)})  # the enqueued one, now RUNNING
        if other is TrialState.COMPLETE:
            study.tell(second, 0.5)
    frozen = study._storage.get_trial(interrupted._trial_id)
    outcome = fail_and_retry(study, frozen, "interrupted", max_retries=2, force_retry=True)
    assert outcome is Retry.COVERED
    failed, second = study.get_trials()  # and no third trial
    assert failed.state is TrialState.FAIL and not counts_toward_budget(failed)
    assert "trial 1" in failed.user_attrs[USER_FAIL_REASON]
    assert second.state is other
