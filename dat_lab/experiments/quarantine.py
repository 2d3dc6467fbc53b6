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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from dat_lab.atomic_files import fsync_dir
from dat_lab.experiments import durable
from dat_lab.experiments.documents import DamagedDocument
from dat_lab.experiments.locking import RunLock, now_iso, try_acquire
from dat_lab.experiments.records import RunRecord
from dat_lab.experiments.store import LOCK_NAME, RunStore

T = TypeVar("T")

QUARANTINE = "quarantine"
NOTE = "quarantined.json"

__all__ = ["NOTE", "QUARANTINE", "journal_note", "quarantine_run", "readable", "set_aside"]


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
    fsync_dir(run_dir.parent)
    fsync_dir(dest.parent)
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
    fsync_dir(path.parent)
    durable.write_json(folder / NOTE, {"file": str(path), "moved": now_iso(), "reason": reason})
    return dest


def readable(
    store: RunStore, run_id: str, read: Callable[[], T], say: Callable[[str], None]
) -> T | None:
    """``read()`` (a read of run ``run_id``); if one of the run's documents is damaged, the run
    is quarantined (said in one line) and ``read()`` runs again on the fresh run id. None when
    the damaged run is held by a live process (it cannot move now)."""
    try:
        return read()
    except DamagedDocument as err:
        moved = quarantine_run(store, run_id, str(err))
        if moved is None:
            return None
        where = moved.relative_to(store.root) if moved.is_relative_to(store.root) else moved
        say(f"damaged, not trusted: {err.line}; moved to {where}; training it again")
    return read()


def journal_note(record: RunRecord) -> str:
    """One line on a run whose events journal has unreadable lines (skipped when read)."""
    first = record.journal_damage[0]
    more = f" and {len(record.journal_damage) - 1} more" if len(record.journal_damage) > 1 else ""
    return (
        f"note: {first.line}{more}: skipped (the run's documents are intact); "
        "`dat-lab store check --repair` rewrites the journal"
    )
