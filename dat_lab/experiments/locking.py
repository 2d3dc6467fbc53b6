"""An exclusive, crash-recoverable lock file: one worker per run.

The lock is a file created with ``O_CREAT | O_EXCL`` (atomic on every filesystem dat-lab
supports, NFSv3+ included) holding JSON: the holder's pid, host, process start time, a
random token and the time it was taken. Release removes it.

If the lock exists, the holder decides what happens:

- same host, holder alive: :class:`RunLocked` (the error names the path, pid and host);
- same host, holder dead (its pid is gone, a zombie, or reused by a process that started
  later): the lock is *stale* and is recovered;
- another host: liveness cannot be checked, so the lock is a *lease*: it is recovered only
  when its file is older than ``foreign_timeout`` seconds (``None``: never). Its holder
  renews it while it works (:class:`LeaseKeeper` calls :meth:`RunLock.refresh`, which
  touches the file, every quarter of the lease), so only a holder that stopped renewing (a
  dead host, a frozen process) loses it. The hosts' clocks must roughly agree. The run
  store's default lease is ``DEFAULT_LEASE_S``; ``DAT_LAB_LEASE_S`` or ``--lease`` change it;
- the file is empty or unreadable: it is being written right now, or its writer died in
  the microseconds between creating and writing it; stale after ``PARTIAL_GRACE_S``.

Recovering a stale lock safely when several processes race for it is the subtle part.
Deleting it and creating a new one is wrong: a slow racer that saw the same stale lock would
then delete the winner's fresh lock. Renaming it away first has the same flaw (the slow racer
renames the fresh lock). Here the right to remove the stale lock whose identity is ``X`` (its
token) is itself an ``O_EXCL`` file, ``NAME.break.X.N``; its holder re-reads the lock and
removes it only if it is still ``X`` and still stale, so a slow racer finds a different token
and removes nothing. ``N`` moves on only past markers whose own holders are dead, so a
recoverer killed mid-way cannot block recovery forever. Then everyone retries ``O_EXCL``:
exactly one process wins.

Same-host detection trusts the host name (``DAT_LAB_HOST`` overrides it); two containers that
share a run directory must have different host names (Docker's default) for pid checks to be
meaningful.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dat_lab.experiments.periodic import Periodic
from dat_lab.experiments.processes import host_name, pid_alive, process_start_ticks
from dat_lab.schema import ConfigError

log = logging.getLogger(__name__)

PARTIAL_GRACE_S = 10.0
DEFAULT_LEASE_S = 300.0  # a run held from another host is taken over 5 min after its last renewal
LEASE_ENV = "DAT_LAB_LEASE_S"
_ACQUIRE_ATTEMPTS = 4


class RunLocked(RuntimeError):
    """The lock is held by a live process (or by another host, within the staleness timeout)."""

    def __init__(self, path: Path, holder: LockInfo | None, detail: str = ""):
        self.path = path
        self.holder = holder
        who = (
            f"pid {holder.pid} on host {holder.host!r} since {holder.acquired}"
            if holder
            else "a process that is writing the lock file right now"
        )
        super().__init__(f"{path} is held by {who}{detail}")


class LockLost(RuntimeError):
    """Our lock file was removed or replaced by another process (a stale-lock recovery)."""


def lease_seconds(given: float | None = None) -> float:
    """The lease of a run lock: ``given``, else ``$DAT_LAB_LEASE_S``, else DEFAULT_LEASE_S.
    ``inf`` means never (a lock from another host must then be removed by hand); 0 takes a
    foreign lock over at once (a holder known dead)."""
    if given is None and LEASE_ENV not in os.environ:
        return DEFAULT_LEASE_S
    raw, source = (given, "--lease") if given is not None else (os.environ[LEASE_ENV], LEASE_ENV)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not value >= 0:  # NaN too
        raise ConfigError(f"got {raw!r}, must be seconds >= 0 (inf: never)", source)
    return value


def now_iso() -> str:
    """The current time as a UTC ISO-8601 string with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class LockInfo:
    """What a lock file says about its holder."""

    pid: int
    host: str
    token: str
    acquired: str
    start_ticks: int | None = None

    @classmethod
    def for_this_process(cls) -> LockInfo:
        pid = os.getpid()
        return cls(pid, host_name(), uuid.uuid4().hex, now_iso(), process_start_ticks(pid))

    @classmethod
    def parse(cls, raw: bytes) -> LockInfo | None:
        """The holder described by a lock file's bytes, or None if they are incomplete."""
        try:
            data = json.loads(raw)
            return cls(
                pid=int(data["pid"]),
                host=str(data["host"]),
                token=str(data["token"]),
                acquired=str(data["acquired"]),
                start_ticks=data.get("start_ticks"),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class _Observed:
    """One look at a lock file: its holder (None if unreadable), identity and age."""

    info: LockInfo | None
    identity: str  # the token, or for an unreadable file a stat fingerprint
    age_s: float


def _observe(path: Path) -> _Observed | None:
    """Read the lock file at ``path``; None if there is none."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            raw = f.read()
    except FileNotFoundError:
        return None
    info = LockInfo.parse(raw)
    identity = info.token if info else f"raw{st.st_ino}-{st.st_mtime_ns}-{st.st_size}"
    return _Observed(info, identity, time.time() - st.st_mtime)


def _is_stale(seen: _Observed, foreign_timeout: float | None) -> bool:
    if seen.info is None:
        return seen.age_s > PARTIAL_GRACE_S
    if seen.info.host == host_name():
        return not pid_alive(seen.info.pid, seen.info.start_ticks)
    return foreign_timeout is not None and seen.age_s > foreign_timeout


def _create_exclusive(path: Path, info: LockInfo) -> bool:
    """Create ``path`` holding ``info``; False if it already exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, json.dumps(asdict(info)).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def break_stale(path: Path, identity: str, foreign_timeout: float | None) -> bool:
    """Remove the lock at ``path`` if it is still the stale lock ``identity``; True if removed.

    Safe against any number of processes doing the same at once (see the module docstring).
    """
    for level in range(1, 1000):
        marker = path.with_name(f"{path.name}.break.{identity}.{level}")
        if _create_exclusive(marker, LockInfo.for_this_process()):
            break
        seen = _observe(marker)
        if seen is not None and not _is_stale(seen, foreign_timeout):
            return False  # a live process is recovering this lock right now
    else:  # pragma: no cover - needs 1000 recoverers killed in a row
        return False
    try:
        seen = _observe(path)
        if seen is None or seen.identity != identity or not _is_stale(seen, foreign_timeout):
            return False  # someone recovered it before us and a fresh lock may stand there
        os.unlink(path)
        log.warning("recovered stale lock %s (holder %s)", path, seen.info)
        return True
    finally:
        for stale_marker in path.parent.glob(f"{path.name}.break.{identity}.*"):
            stale_marker.unlink(missing_ok=True)


class RunLock:
    """A held lock file; a context manager that releases it on exit.

    Obtain one with :func:`acquire` or :func:`try_acquire` (or the run store's ``lock``).
    """

    def __init__(self, path: Path, info: LockInfo):
        self.path = path
        self.info = info
        self._held = True

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock (it has not been released)."""
        return self._held

    def still_ours(self) -> bool:
        """Whether the file on disk is still our lock (False after another host broke it)."""
        seen = _observe(self.path)
        return seen is not None and seen.identity == self.info.token

    def refresh(self) -> None:
        """Touch the lock file so other hosts keep seeing it as fresh; LockLost if not ours."""
        if not self.still_ours():
            raise LockLost(f"{self.path} is no longer held by this process")
        os.utime(self.path)

    def release(self) -> None:
        """Remove the lock file if it is still ours. Idempotent; a no-op in forked children."""
        if not self._held or os.getpid() != self.info.pid:
            return  # a fork (e.g. a DataLoader worker) must not release its parent's lock
        self._held = False
        if self.still_ours():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        else:
            log.warning("lock %s was taken over by another process before release", self.path)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RunLock({str(self.path)!r}, pid={self.info.pid}, held={self._held})"


def read_holder(path: Path, foreign_timeout: float | None = None) -> tuple[LockInfo | None, bool]:
    """``(holder, stale)`` of the lock at ``path``; ``(None, True)`` if there is no lock."""
    seen = _observe(path)
    if seen is None:
        return None, True
    return seen.info, _is_stale(seen, foreign_timeout)


def try_acquire(path: Path, foreign_timeout: float | None = None) -> RunLock | None:
    """Take the lock at ``path``, recovering it if stale; None if a live holder has it."""
    try:
        return acquire(path, foreign_timeout)
    except RunLocked:
        return None


def acquire(path: Path, foreign_timeout: float | None = None) -> RunLock:
    """Take the lock at ``path``, recovering it if stale; :class:`RunLocked` if it is held."""
    info = LockInfo.for_this_process()
    seen = None
    for _ in range(_ACQUIRE_ATTEMPTS):
        if _create_exclusive(path, info):
            return RunLock(path, info)
        seen = _observe(path)
        if seen is None:
            continue  # released between our attempt and our look: try again
        if not _is_stale(seen, foreign_timeout):
            raise RunLocked(path, seen.info)
        break_stale(path, seen.identity, foreign_timeout)
    raise RunLocked(path, seen.info if seen else None, " (contended: gave up after retries)")


class LeaseKeeper(Periodic):
    """Renews a held lock's lease from a background thread while a run trains.

    A thread, not a training callback: the lease must stay fresh through data loading,
    validation and checkpointing, whatever one step takes. If the lock was taken over (this
    process stalled past its lease), :attr:`lost` says so and the trainer stops
    (:class:`dat_lab.experiments.run_callbacks.LeaseCheck`).
    """

    def __init__(self, lock: RunLock, lease_s: float | None) -> None:
        # A lease of 0 (a store that takes a known-dead holder's lock at once) says nothing
        # about how others judge ours: renew as for the default lease then.
        lease = lease_s or DEFAULT_LEASE_S
        super().__init__(None if math.isinf(lease) else lease / 4, name="dat-lab-lease")
        self.lock = lock
        self.lost: LockLost | None = None

    def tick(self) -> bool:
        try:
            self.lock.refresh()
        except LockLost as err:
            self.lost = err
            return False
        except OSError as err:  # a store briefly unreachable: try again next time
            log.warning("could not renew the lease of %s: %s", self.lock.path, err)
        return True

    def __enter__(self) -> LeaseKeeper:
        return super().__enter__()
