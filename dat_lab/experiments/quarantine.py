"""Quarantine: where damaged runs and files are set aside, never deleted.

A run whose documents cannot be read is not trusted (``documents.py``); it is moved whole to
``<store>/quarantine/<run id>.<time>/``, with a ``quarantined.json`` saying why, so that its
run id is free for a fresh run (the id comes from the experiment file, not from the damaged
files) and a person can still look at everything it held. A single damaged file (a
checkpoint that does not load, an orphaned temporary file, a stale lock) is moved to
``<store>/quarantine/<owner>.<time>/`` keeping its path relative to the run (or the store).

With the default store ``./runs`` the folder is ``runs/quarantine/``. It is not under
``runs/runs/``, so nothing reads it as a run.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from dat_lab.experiments import durable
from dat_lab.experiments.locking import RunLock, now_iso, try_acquire
from dat_lab.experiments.store import LOCK_NAME, RunStore

QUARANTINE = "quarantine"
NOTE = "quarantined.json"

__all__ = ["NOTE", "QUARANTINE", "quarantine_run", "set_aside"]


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _new_folder(root: Path, owner: str) -> Path:
    """A fresh ``root/quarantine/<owner>.<time>`` (not created yet)."""
    base = Path(root) / QUARANTINE
    base.mkdir(parents=True, exist_ok=True)
    folder = base / f"{owner}.{_stamp()}"
    n = 1
    while folder.exists():  # two set-asides within a microsecond
        folder, n = base / f"{owner}.{_stamp()}.{n}", n + 1
    return folder


def quarantine_run(store: RunStore, run_id: str, reason: str) -> Path | None:
    """Move run ``run_id``'s directory to the quarantine; its new path.

    Taken under the run's lock, so that no worker trains in it while it moves. None when a
    live process holds that lock (or the directory is gone: another process moved it).
    """
    run_dir = store.run_dir(run_id)
    try:
        lock = try_acquire(run_dir / LOCK_NAME, store.foreign_lock_timeout)
    except FileNotFoundError:
        return None  # the directory was moved away meanwhile
    if lock is None:
        return None
    dest = _new_folder(store.root, run_id)
    try:
        os.rename(run_dir, dest)  # one filesystem: the store's
    except BaseException:
        lock.release()
        raise
    _release_moved(lock, dest / LOCK_NAME)
    durable.fsync_dir(run_dir.parent)
    durable.fsync_dir(dest.parent)
    note = {"run_id": run_id, "moved": now_iso(), "from": str(run_dir), "reason": reason}
    durable.write_json(dest / NOTE, note)
    return dest


def _release_moved(lock: RunLock, moved_to: Path) -> None:
    """Release our lock, which moved with the run directory."""
    lock.path = moved_to
    lock.release()


def set_aside(root: Path, path: Path, base: Path, owner: str, reason: str) -> Path:
    """Move the file ``path`` (under ``base``: a run directory or the store) to the quarantine,
    keeping its path relative to ``base``; its new path."""
    path = Path(path)
    folder = _new_folder(root, owner)
    dest = folder / path.relative_to(base)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.rename(path, dest)
    durable.fsync_dir(path.parent)
    durable.write_json(folder / NOTE, {"file": str(path), "moved": now_iso(), "reason": reason})
    return dest
