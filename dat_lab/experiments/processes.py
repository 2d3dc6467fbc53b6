"""Process helpers shared by runs and sweeps: host identity, liveness, orphan handling.

A run's lock (``locking``), a run worker pool (``pool``) and a sweep's worker launcher and
heartbeats (``sweeps``) all need to know who a process is and whether it still lives:

- ``host_name``: this machine's name, as recorded in locks, status files and heartbeats;
- ``process_start_ticks`` / ``pid_alive``: a pid plus its start time names one process, so a
  dead holder whose pid was reused is still seen as dead;
- ``parent_pid``: which ``dat-lab run`` a worker belongs to;
- ``die_with_parent``: a worker never outlives the command that started it;
- ``usable_cpus``: the cores this process may run on (its affinity, not the machine's count).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
from pathlib import Path


def host_name() -> str:
    """This machine's name, as recorded in locks and status files."""
    return socket.gethostname()


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (Linux), or None where unknown.

    Stored in the lock so that a dead holder whose pid was reused is still seen as dead.
    """
    stat = _proc_stat(pid)
    return int(stat[19]) if stat else None


def parent_pid(pid: int) -> int | None:
    """The parent of process ``pid`` on this host (Linux), or None where unknown."""
    stat = _proc_stat(pid)
    return int(stat[1]) if stat else None


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/PID/stat`` (after the parenthesised command name), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def pid_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether process ``pid`` on this host is alive (and, given ``start_ticks``, is the same
    process that took the lock rather than a later one that reused its pid)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by another user
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc (macOS) or a race with its exit: assume alive, the safe side
    if stat[0] in ("Z", "X"):
        return False  # killed but not yet reaped by its parent
    return start_ticks is None or int(stat[19]) == start_ticks


def die_with_parent(parent_pid: int | None = None) -> None:
    """Linux: SIGKILL this worker when its parent dies (a `kill -9` of `dat-lab run` must not
    leave workers training behind it; their runs resume on the next invocation).

    ``parent_pid``: the parent this process was started by. A spawned worker calls this only
    after its imports; if the parent died meanwhile (the signal would never come), it exits.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # orphaned before the line above: nothing of ours to stop cleanly


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells it)."""
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


__all__ = [
    "die_with_parent",
    "host_name",
    "parent_pid",
    "pid_alive",
    "process_start_ticks",
    "usable_cpus",
]
