"""The run lock against real processes: contention, kill -9, and racing recoveries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dat_lab.experiments import locking
from dat_lab.experiments.locking import LockInfo, RunLocked, acquire, break_stale, try_acquire
from dat_lab.experiments.store import RunIdentity, RunStore

WORKER = Path(__file__).with_name("_store_worker.py")
HAS_PROC = Path("/proc/self/stat").exists()


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    store = RunStore(tmp_path / "store")
    store.create("run1", {"lr": 0.1}, RunIdentity("exp", "base", 0))
    return store


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), *args])


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"worker exited early with {proc.returncode}"
        assert time.monotonic() < deadline, f"worker never wrote {path}"
        time.sleep(0.02)


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(path: Path, pid: int, host: str | None = None, token: str = "t0") -> None:
    info = {"pid": pid, "host": host or locking.host_name(), "token": token,
            "acquired": locking.now_iso(), "start_ticks": None}  # fmt: skip
    path.write_text(json.dumps(info))


def _race(store: RunStore, tmp_path: Path, racers: int) -> list[str]:
    """Start ``racers`` processes that call try_lock at the same instant; their outcomes."""
    go_at = time.time() + 1.5  # after every interpreter has started (a late one still loses)
    results = [tmp_path / f"result{i}" for i in range(racers)]
    for stale_result in results:
        stale_result.unlink(missing_ok=True)
    procs = [
        _spawn("race", str(store.root), "run1", str(go_at), str(r), str(racers)) for r in results
    ]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    return sorted(r.read_text() for r in results)


def test_second_lock_in_same_process_is_refused(store: RunStore):
    with store.lock("run1") as lock:
        with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
            store.lock("run1")
        assert store.try_lock("run1") is None
        assert lock.still_ours()
    assert not store.lock_path("run1").exists()


@pytest.mark.slow
def test_lock_held_by_live_process_names_run_pid_and_host(store: RunStore, tmp_path: Path):
    ready = tmp_path / "ready"
    holder = _spawn("hold", str(store.root), "run1", str(ready))
    try:
        _wait_for(ready, holder)
        with pytest.raises(RunLocked) as err:
            store.lock("run1")
        message = str(err.value)
        assert "run1" in message and f"pid {holder.pid}" in message
        assert locking.host_name() in message
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_lock_of_killed_holder_is_recovered_even_before_it_is_reaped(
    store: RunStore, tmp_path: Path
):
    ready = tmp_path / "ready"
    holder = _spawn("hold", str(store.root), "run1", str(ready))
    _wait_for(ready, holder)
    os.kill(holder.pid, signal.SIGKILL)
    time.sleep(0.2)  # not reaped yet: it is a zombie, and kill(pid, 0) still succeeds
    try:
        assert store.lock_holder("run1").pid == holder.pid
        with store.lock("run1") as lock:
            assert lock.info.pid == os.getpid()
            assert store.lock_holder("run1").token == lock.info.token
    finally:
        holder.wait()


def test_processes_contending_for_one_lock_exactly_one_wins(store: RunStore, tmp_path: Path):
    assert _race(store, tmp_path, racers=3) == ["lost", "lost", "won"]
    assert not store.lock_path("run1").exists()


def test_processes_racing_to_recover_one_stale_lock_exactly_one_wins(
    store: RunStore, tmp_path: Path
):
    for round_ in range(2):
        _write_lock(store.lock_path("run1"), _dead_pid(), token=f"stale{round_}")
        assert _race(store, tmp_path, racers=3) == ["lost", "lost", "won"]
        assert not store.lock_path("run1").exists()
        assert not list(store.run_dir("run1").glob("run.lock.break.*"))


def test_slow_recoverer_does_not_remove_the_winners_fresh_lock(tmp_path: Path):
    # The race that rename- or delete-based recovery loses: B saw the stale lock, A recovered
    # it and holds a fresh one, then B (late) tries to remove "the stale lock".
    path = tmp_path / "run.lock"
    _write_lock(path, _dead_pid(), token="stale")
    winner = acquire(path)
    assert break_stale(path, "stale", None) is False
    assert winner.still_ours()
    winner.release()


def test_recoverer_killed_mid_recovery_does_not_block_recovery(tmp_path: Path):
    path = tmp_path / "run.lock"
    _write_lock(path, _dead_pid(), token="stale")
    _write_lock(path.with_name("run.lock.break.stale.1"), _dead_pid(), token="m")
    with acquire(path) as lock:
        assert lock.still_ours()
    assert not list(tmp_path.glob("run.lock.break.*"))


def test_live_recoverer_makes_others_back_off(tmp_path: Path):
    path = tmp_path / "run.lock"
    _write_lock(path, _dead_pid(), token="stale")
    _write_lock(path.with_name("run.lock.break.stale.1"), os.getpid(), token="m")
    with pytest.raises(RunLocked, match="contended"):
        acquire(path)
    assert json.loads(path.read_text())["token"] == "stale"  # left to the live recoverer


@pytest.mark.skipif(not HAS_PROC, reason="process start times need /proc")
def test_lock_whose_pid_was_reused_is_stale(tmp_path: Path):
    path = tmp_path / "run.lock"
    me = LockInfo.for_this_process()
    path.write_text(json.dumps({**me.__dict__, "start_ticks": me.start_ticks - 1}))
    with acquire(path) as lock:
        assert lock.info.token != me.token


def test_lock_from_another_host_waits_for_the_timeout(tmp_path: Path):
    path = tmp_path / "run.lock"
    _write_lock(path, 1, host="some-other-host")
    with pytest.raises(RunLocked, match="some-other-host"):
        acquire(path, foreign_timeout=60)
    old = time.time() - 120
    os.utime(path, (old, old))
    assert try_acquire(path, foreign_timeout=None) is None  # default: never automatic
    with acquire(path, foreign_timeout=60) as lock:
        assert lock.still_ours()


def test_refresh_keeps_a_foreign_lock_fresh_and_detects_takeover(tmp_path: Path):
    path = tmp_path / "run.lock"
    lock = acquire(path)
    old = time.time() - 120
    os.utime(path, (old, old))
    lock.refresh()
    assert time.time() - path.stat().st_mtime < 10
    path.unlink()
    _write_lock(path, os.getpid(), token="someone-else")
    with pytest.raises(locking.LockLost):
        lock.refresh()
    lock.release()  # not ours any more: must leave the other holder's file alone
    assert json.loads(path.read_text())["token"] == "someone-else"


def test_half_written_lock_counts_as_held_until_its_grace_ends(tmp_path: Path):
    path = tmp_path / "run.lock"
    path.write_bytes(b"")  # a holder between O_EXCL create and its write
    with pytest.raises(RunLocked, match="writing the lock file"):
        acquire(path)
    old = time.time() - locking.PARTIAL_GRACE_S - 5
    os.utime(path, (old, old))
    with acquire(path) as lock:
        assert lock.still_ours()


def test_forked_child_does_not_release_its_parents_lock(tmp_path: Path):
    path = tmp_path / "run.lock"
    with acquire(path) as lock:
        child = os.fork()
        if child == 0:  # a DataLoader worker, say, that unwinds the same `with`
            lock.release()
            os._exit(0)
        os.waitpid(child, 0)
        assert lock.still_ours()
    assert not path.exists()
