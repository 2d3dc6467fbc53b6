"""Several worker processes on one study: every grid point exactly once; a killed worker.

These start real ``dat-lab sweep`` processes that train real (tiny) runs, against the
journal file storage and a real PostgreSQL server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sweep_helpers import cli, offset_grid, url_password, worker_env

from dat_lab.experiments.store import RunState, RunStore
from dat_lab.sweeps.liveness import (
    ATTR_HEARTBEAT,
    ATTR_HOST,
    ATTR_PID,
    ATTR_RETRIED,
    USER_FAIL_REASON,
    Liveness,
)
from dat_lab.sweeps.spec import load_study
from dat_lab.sweeps.storage import StorageLocation
from dat_lab.sweeps.study import reap_dead_workers

GRID = [0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0]


def _trials(storage: str | Path, name: str) -> list[optuna.trial.FrozenTrial]:
    location = StorageLocation.parse(str(storage), Path("unused"))
    return optuna.load_study(study_name=name, storage=location.open()).get_trials()


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend", ["journal", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_four_workers_run_every_grid_point_exactly_once(backend, request, tmp_path, study_file):
    name = f"grid4_{backend}"
    path = study_file(name, space=offset_grid(GRID), sampler="grid")
    store = tmp_path / "store"
    storage = (
        request.getfixturevalue("postgres_url")
        if backend == "postgresql"
        else str(tmp_path / "s.journal")
    )
    # The URL goes in the environment: the workers' command lines (ps) never hold the password.
    proc = subprocess.run(
        cli("--study", str(path), "--store", str(store), "--workers", "4", "--heartbeat", "1"),
        env=worker_env(DAT_LAB_STORAGE=storage),
        capture_output=True,
        text=True,
        timeout=400,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    if backend == "postgresql":
        assert url_password(storage) not in output
    trials = _trials(storage, name)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * len(GRID)
    assert sorted(t.params["s"] for t in trials) == sorted(GRID)  # each point once, none skipped
    run_ids = [t.user_attrs["run_id"] for t in trials]
    assert len(set(run_ids)) == len(GRID)
    records = [RunStore(store).require(r) for r in run_ids]
    assert all(r.state is RunState.FINISHED and r.attempts == 1 for r in records)  # trained once
    workers = Counter(t.system_attrs[ATTR_PID] for t in trials)
    assert len(workers) >= 2, f"the workers did not run concurrently: {workers}"


@pytest.mark.slow
def test_killed_worker_trial_is_retried_and_the_budget_completes(tmp_path, study_file, experiment):
    # Trials long enough (several epochs of a larger set) to be killed in the middle of one.
    exp = experiment(data={"train_size": 256}, train={"epochs": 4})
    path = study_file("killed", exp=exp, space=offset_grid([2.0, 4.0]), sampler="grid")
    store, journal = tmp_path / "store", tmp_path / "killed.journal"
    args = cli(
        "--study", str(path), "--store", str(store), "--storage", str(journal), "--heartbeat", "1"
    )
    victim = subprocess.Popen(
        args, env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        run_dir = _wait_for_a_checkpointed_run(RunStore(store), victim)
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
    before = _trials(journal, "killed")
    assert [t.state for t in before] == [TrialState.RUNNING, TrialState.WAITING]  # left behind

    proc = subprocess.run(args, env=worker_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    trials = _trials(journal, "killed")
    assert not [t for t in trials if t.state is TrialState.RUNNING]
    killed = trials[0]
    assert killed.state is TrialState.FAIL and killed.system_attrs[ATTR_RETRIED]
    assert f"pid {victim.pid}" in killed.user_attrs[USER_FAIL_REASON]
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    assert sorted(t.params["s"] for t in complete) == [2.0, 4.0]  # the budget, no point twice
    retry = next(t for t in complete if t.user_attrs.get("retry_of") == killed.number)
    assert retry.user_attrs["run_id"] == killed.user_attrs["run_id"] == run_dir.name
    events = [e["event"] for e in RunStore(store).events(run_dir.name)]
    assert events.count("running") == 2 and events[-1] == "finished"  # resumed, then finished
    assert "resuming from checkpoints/last.ckpt" in proc.stdout


def _wait_for_a_checkpointed_run(
    store: RunStore, proc: subprocess.Popen, timeout: float = 240
) -> Path:
    """The first run that has written a checkpoint and is still training."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the worker ended before it could be killed"
        for record in store.runs():
            if record.state is RunState.RUNNING and record.last_checkpoint is not None:
                return record.path
        time.sleep(0.05)
    raise AssertionError("no run reached its first checkpoint")


@pytest.mark.slow
@pytest.mark.parametrize("reaped_first", [False, True], ids=["alone", "after_the_reaper"])
def test_ctrl_c_stops_cleanly_and_enqueues_the_trial_once(
    reaped_first, tmp_path, study_file, experiment
):
    exp = experiment(data={"train_size": 256}, train={"epochs": 4})
    path = study_file("ctrl_c", exp=exp, space=offset_grid([2.0]), sampler="grid")
    store, journal = tmp_path / "store", tmp_path / "ctrl_c.journal"
    args = cli("--study", str(path), "--store", str(store), "--storage", str(journal))
    worker = subprocess.Popen(
        args,
        env=worker_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Undo an inherited ignored SIGINT (a suite started with `cmd &`), or Ctrl-C is lost.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        run_dir = _wait_for_a_checkpointed_run(RunStore(store), worker)
        if reaped_first:  # another worker took this live one for dead and retried its trial
            _reap_as_if_silent(path, journal)
        worker.send_signal(signal.SIGINT)
        output, _ = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 130, output[-2000:]
    interrupted, retry = _trials(journal, "ctrl_c")  # one retry, never a second
    reason = "no heartbeat" if reaped_first else "interrupted"  # whoever failed it first
    assert interrupted.state is TrialState.FAIL
    assert reason in interrupted.user_attrs[USER_FAIL_REASON]
    assert (
        retry.state is TrialState.WAITING
        and retry.system_attrs["fixed_params"] == interrupted.params
    )
    assert RunStore(store).state(run_dir.name) is RunState.INTERRUPTED  # resumable, lock released
    if reaped_first:
        assert "trial 0: interrupted; left alone" in output


def _reap_as_if_silent(path: Path, journal: Path) -> None:
    """What a worker on another host does when the running trial's heartbeat looks old."""
    study = load_study(path)
    location = StorageLocation(journal=journal)
    optuna_study = optuna.load_study(study_name=study.name, storage=location.open())
    (running,) = optuna_study.get_trials(states=(TrialState.RUNNING,))
    optuna_study._storage.set_trial_system_attr(running._trial_id, ATTR_HOST, "elsewhere")
    optuna_study._storage.set_trial_system_attr(
        running._trial_id, ATTR_HEARTBEAT, time.time() - 60
    )
    with location.lock(study.name):
        assert (
            reap_dead_workers(optuna_study, study, Liveness.from_heartbeat(1.0), lambda _: None)
            == 1
        )
