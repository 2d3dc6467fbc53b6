"""The run lock as a lease between hosts: renewed while a run trains, taken over only after
it expires. Hosts are simulated with ``DAT_LAB_HOST`` (the host name a process records in
locks); across hosts no pid can be checked, so only the lease keeps them apart."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from experiment_helpers import cli_env, dat_lab_cmd, events, write_experiment

from dat_lab.experiments import locking
from dat_lab.experiments.locking import LeaseKeeper, acquire, lease_seconds, try_acquire
from dat_lab.experiments.spec import load_experiment
from dat_lab.experiments.store import RunState, RunStore
from dat_lab.schema import ConfigError


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_lock_from_another_host_is_taken_over_only_after_its_lease(tmp_path, monkeypatch):
    path = tmp_path / "run.lock"
    monkeypatch.setenv("DAT_LAB_HOST", "host-a")
    held = acquire(path, foreign_timeout=60)
    monkeypatch.setenv("DAT_LAB_HOST", "host-b")

    _age(path, 59)  # renewed 59 s ago: still host-a's
    assert try_acquire(path, foreign_timeout=60) is None
    _age(path, 61)  # host-a stopped renewing a minute ago: presumed dead
    taken = try_acquire(path, foreign_timeout=60)
    assert taken is not None and taken.info.host == "host-b"
    assert not held.still_ours()


def test_a_renewed_lease_keeps_another_host_out_and_a_lost_one_is_reported(tmp_path, monkeypatch):
    # A lease long enough that a loaded CI machine never stalls the renewal thread past it.
    path, lease = tmp_path / "run.lock", 6.0
    monkeypatch.setenv("DAT_LAB_HOST", "host-a")
    held = acquire(path, foreign_timeout=lease)
    with LeaseKeeper(held, lease) as keeper:
        monkeypatch.setenv("DAT_LAB_HOST", "host-b")
        for _ in range(8):  # 8 s: longer than the lease, renewed every 1.5 s
            time.sleep(1.0)
            assert try_acquire(path, foreign_timeout=lease) is None
        assert keeper.lost is None
        _age(path, lease + 1)  # as if host-a had frozen past its lease
        thief = try_acquire(path, foreign_timeout=lease)
        assert thief is not None
        deadline = time.monotonic() + 10
        while keeper.lost is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert isinstance(keeper.lost, locking.LockLost)  # host-a learns it and stops
    assert thief.still_ours()


def test_the_lease_comes_from_the_flag_then_the_environment_then_the_default(monkeypatch):
    monkeypatch.delenv("DAT_LAB_LEASE_S", raising=False)
    assert lease_seconds() == locking.DEFAULT_LEASE_S == 300
    monkeypatch.setenv("DAT_LAB_LEASE_S", "45")
    assert lease_seconds() == 45 and lease_seconds(10) == 10
    assert RunStore("x").foreign_lock_timeout == 45
    monkeypatch.setenv("DAT_LAB_LEASE_S", "soon")
    with pytest.raises(ConfigError, match="DAT_LAB_LEASE_S: got 'soon', must be seconds >= 0"):
        lease_seconds()
    with pytest.raises(ConfigError, match="--lease: got -1"):
        lease_seconds(-1)


@pytest.mark.slow
def test_two_hosts_on_one_store_never_hold_one_run_at_once(tmp_path, tmp_path_factory):
    """Each run trains for several leases; without renewal the other host would take it."""
    import subprocess

    variants = {f"s{s}": {"model.stages.3.offset_range": s} for s in (0, 4)}
    exp = write_experiment(tmp_path / "exp.yaml", variants, train={"epochs": 4},
                           data={"train_size": 64})  # fmt: skip
    _, specs = load_experiment(exp)
    store = RunStore(tmp_path / "store")
    cache = tmp_path_factory.getbasetemp() / "experiment_cache"
    procs, logs = [], []
    for host in ("host-a", "host-b"):
        env = {**cli_env(cache), "DAT_LAB_HOST": host, "DAT_LAB_LEASE_S": "1.5"}
        log = open(tmp_path / f"{host}.log", "w")  # noqa: SIM115 - the child holds it
        logs.append(tmp_path / f"{host}.log")
        cmd = dat_lab_cmd("run", exp, "--store", store.root, "--workers", "1")
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=log))
    for proc, log in zip(procs, logs, strict=True):
        assert proc.wait(timeout=600) == 0, log.read_text()

    text = "".join(p.read_text() for p in logs)
    for spec in specs:
        assert store.require(spec.run_id).state is RunState.FINISHED
        starts = events(store, spec.run_id, "running")
        assert len(starts) == 1, f"{spec.variant} trained {len(starts)} times: {text}"
    hosts = {e["host"] for s in specs for e in events(store, s.run_id, "running")}
    assert hosts <= {"host-a", "host-b"}
    assert "recovered stale lock" not in text


@pytest.mark.slow
def test_a_run_held_by_a_dead_host_is_taken_over_after_its_lease(tmp_path, tmp_path_factory):
    """The "host" renews its lease until the run has been seen held, then dies."""
    import subprocess

    exp = write_experiment(tmp_path / "exp.yaml", {"a": {}})
    (spec,) = load_experiment(exp)[1]
    store = RunStore(tmp_path / "store")
    store.create(spec.run_id, spec.config.to_dict(), {"experiment": "tiny", "variant": "a",
                                                      "seed": 0})  # fmt: skip
    lock = store.lock_path(spec.run_id)
    ghost = {"pid": 4242, "host": "dead-host", "token": "ghost", "acquired": locking.now_iso()}
    lock.write_text(json.dumps(ghost))

    env = {**cli_env(tmp_path_factory.getbasetemp() / "experiment_cache"),
           "DAT_LAB_LEASE_S": "3"}  # fmt: skip
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(dat_lab_cmd("run", exp, "--store", store.root), cwd=tmp_path,
                                env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 300
    while "held by pid 4242 on dead-host; will wait" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        os.utime(lock)  # the host is alive and renews its lease
        time.sleep(0.2)
    assert json.loads(lock.read_text())["token"] == "ghost"  # not taken while renewed
    # ... and now the host is gone: nobody renews the lease any more.
    assert proc.wait(timeout=300) == 0, log.read_text()
    text = log.read_text()
    assert text.index("will wait") < text.index(f"({spec.run_id}): training")
    assert store.require(spec.run_id).state is RunState.FINISHED
    assert [e["host"] for e in events(store, spec.run_id, "running")] == [locking.host_name()]
