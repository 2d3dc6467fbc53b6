"""The run store: one directory per training run, named by the hash of its resolved config.

The store is what lets experiments never lose a result. A run's identity is its fully
resolved config (the caller names the run by a hash of it, e.g. ``schema.config_hash``), so
re-running an experiment finds the runs it already has, two experiments that share a
configuration share one run, and a renamed variant does not orphan its results.

Layout under ``root`` (the CLI's default is ``./runs``, :data:`DEFAULT_ROOT`)::

    root/index.jsonl                 journal of (run_id, experiment, variant, seed, event)
    root/runs/<run_id>/config.json   the resolved config as plain data (written once)
         run.json                    identity: run_id, experiment, variant, seed, created
         status.json                 state, reason, attempts, pid/host of the worker, times
         events.jsonl                journal of this run's state changes
         run.lock                    present while a worker holds the run (see locking.py)
         logs/version_K/             Lightning's CSVLogger, one folder per attempt (K = 0, 1, ...)
         checkpoints/                Lightning's ModelCheckpoint: last.ckpt, best
         final.json cost.json provenance.json ...   written with write_json / mark_finished
         superseded/K/               what a restart (``restart``) moved aside: checkpoints, logs,
                                     final.json, provenance.json of the earlier training
    root/experiments/<name>.json     an experiment file's design (baseline, claims), for reports
    root/quarantine/<id>.<time>/     damaged runs and files, set aside whole (see quarantine.py)

The directories are the truth; ``index.jsonl`` is a cheap summary for readers and may be
missing or torn without harm. Every JSON document is replaced atomically and every journal
line is appended with one ``O_APPEND`` write plus ``fsync`` (see ``durable.py``): a worker
killed at any instant leaves only complete files behind. A run's state is read from its
``status.json`` (replaced whole on every change); ``events.jsonl`` is its history, appended
beside it and never replayed (:meth:`RunStore.events` reads it back).

Every document is read through ``documents.py``: a file damaged after it was written (by a
disk, an NFS client, a sync tool or a person) raises :class:`DamagedDocument` naming the run
and the file, so no command trusts a run it cannot read or dies on it with a traceback.

State changes (``mark_*``) require the calling process to hold the run's lock; docs/store.md
shows how an engine uses the store ("The store from Python").
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dat_lab.atomic_files import fsync_dir
from dat_lab.experiments import durable
from dat_lab.experiments.documents import DamagedDocument, read_document, read_journal
from dat_lab.experiments.locking import (
    LockInfo,
    RunLock,
    RunLocked,
    acquire,
    lease_seconds,
    now_iso,
    read_holder,
    try_acquire,
)
from dat_lab.experiments.processes import host_name
from dat_lab.experiments.records import (
    ConfigMismatch,
    IndexEntry,
    RunIdentity,
    RunNotFound,
    RunRecord,
    RunState,
    StoreError,
    StoreScan,
    attempt_metrics_csvs,
    first_difference,
    flat_floats,
    read_record,
    status_doc,
    value_at,
)
from dat_lab.schema import to_mapping

__all__ = [
    "DEFAULT_ROOT",
    "STORE_FORMAT",
    "ConfigMismatch",
    "DamagedDocument",
    "IndexEntry",
    "RunIdentity",
    "RunLocked",
    "RunNotFound",
    "RunRecord",
    "RunState",
    "RunStore",
    "StoreError",
    "StoreScan",
    "attempt_metrics_csvs",
]

DEFAULT_ROOT = Path("runs")
STORE_FORMAT = 1

LOCK_NAME = "run.lock"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_DOC_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_STORE_DOCS = frozenset({"config", "run", "status", "final"})  # written only by the store


# The transitions the mark_* methods allow, from the stored state.
_ALLOWED_FROM = {
    RunState.RUNNING: {RunState.PENDING, RunState.RUNNING, RunState.FAILED},
    RunState.FINISHED: {RunState.RUNNING},
    RunState.FAILED: {RunState.RUNNING, RunState.PENDING},
    # restart: a run made by other code is trained again from scratch (--rerun-stale)
    RunState.PENDING: {RunState.FINISHED, RunState.RUNNING, RunState.FAILED},
}
SUPERSEDED = "superseded"
# What a restart moves aside: the earlier training's output.
_TRAINING_OUTPUT = ("checkpoints", "logs", "final.json", "provenance.json")


class RunStore:
    """Runs under ``root`` (see the module docstring for the layout).

    Args:
        root: the store's directory; created on the first :meth:`create`.
        foreign_lock_timeout: the lease of a run lock: seconds after which a lock held from
            *another host* counts as stale unless its holder renewed it (a training run renews
            it, see :class:`~dat_lab.experiments.locking.LeaseKeeper`). ``None`` (default):
            ``$DAT_LAB_LEASE_S``, else 300 s; ``inf``: never. Locks from this host are checked
            by pid and need no lease.
    """

    def __init__(self, root: Path | str = DEFAULT_ROOT, foreign_lock_timeout: float | None = None):
        self.root = Path(root)
        self.foreign_lock_timeout = lease_seconds(foreign_lock_timeout)

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    # -- paths ----------------------------------------------------------------------------

    @property
    def index_path(self) -> Path:
        return self.root / "index.jsonl"

    def run_dir(self, run_id: str) -> Path:
        """The directory of run ``run_id`` (whether or not it exists)."""
        if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or ".." in run_id:
            raise StoreError(
                f"invalid run id {run_id!r}: use 1-128 letters, digits, '_', '-', '.'"
            )
        return self.root / "runs" / run_id

    # -- creating and reading -------------------------------------------------------------

    def create(
        self, run_id: str, config: Any, identity: RunIdentity | Mapping[str, Any]
    ) -> RunRecord:
        """Create run ``run_id`` for ``config`` (a config dataclass or plain mapping); idempotent.

        Calling it again with the same config returns the existing run (a new ``identity`` is
        recorded as sharing it). A different config under an existing id raises
        :class:`ConfigMismatch` naming the first differing key: a hash collision, or a caller
        that names runs by something other than their resolved config. Safe to call from
        several processes at once.
        """
        identity = RunIdentity.coerce(identity)
        plain = json.loads(json.dumps(to_mapping(config), allow_nan=False))
        if not isinstance(plain, dict):
            raise StoreError(f"a run config must be a mapping, got {type(plain).__name__}")
        path = self.run_dir(run_id)
        path.mkdir(parents=True, exist_ok=True)
        fsync_dir(path.parent)

        config_path = path / "config.json"
        durable.publish_json(config_path, plain, allow_nan=False)
        stored = read_document(config_path, run_id)
        if stored != plain:
            where = first_difference(stored, plain) or "(top level)"
            raise ConfigMismatch(
                f"run {run_id} at {path} already holds a different config (first difference at "
                f"{where}: stored {value_at(stored, where)!r}, given {value_at(plain, where)!r})"
            )

        created = now_iso()
        run_doc = {"format": STORE_FORMAT, "run_id": run_id, "created": created,
                   **identity.as_dict()}  # fmt: skip
        is_creator = durable.publish_json(path / "run.json", run_doc)
        durable.publish_json(path / "status.json", status_doc(RunState.PENDING, attempts=0))
        for sub in ("logs", "checkpoints"):
            (path / sub).mkdir(exist_ok=True)

        if is_creator:
            self._log_event(run_id, identity, "created")
        elif identity not in self.require(run_id).identities:
            self._log_event(run_id, identity, "attached")
        return self.require(run_id)

    def get(self, run_id: str, lenient: bool = False) -> RunRecord | None:
        """The run as stored now; None if there is none (or its ``create`` was cut short).

        Raises :class:`DamagedDocument` (naming the run and the file) when one of its
        documents is unreadable: the run is not trusted (see ``quarantine.py``). With
        ``lenient`` a damaged run reads as None, for readers that only look (progress lines,
        the plan's counts)."""
        try:
            return read_record(self.run_dir(run_id), run_id)
        except DamagedDocument:
            if lenient:
                return None
            raise

    def require(self, run_id: str) -> RunRecord:
        """Like :meth:`get`, but :class:`RunNotFound` instead of None."""
        record = self.get(run_id)
        if record is None:
            raise RunNotFound(f"no run {run_id!r} in {self.root} (create it first)")
        return record

    def find(self, prefix: str) -> RunRecord:
        """The run whose id is ``prefix``, else the one run whose id starts with it.

        Raises :class:`RunNotFound` when no run or several runs match (with the closest id).
        """
        if _RUN_ID.fullmatch(prefix) and ".." not in prefix:
            record = self.get(prefix)
            if record is not None:
                return record
        base = self.root / "runs"
        ids = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        matches = [i for i in ids if i.startswith(prefix)]
        if len(matches) == 1:
            return self.require(matches[0])
        close = difflib.get_close_matches(prefix, ids, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        what = f"{len(matches)} runs start with {prefix!r}" if matches else f"no run {prefix!r}"
        raise RunNotFound(f"{what} in {self.root}{hint}")

    def runs(self) -> list[RunRecord]:
        """Every complete run, oldest first, read from the run directories (not the index)."""
        return self.scan().records

    def scan(self) -> StoreScan:
        """Every run directory, read: the complete runs (oldest first), the number of
        incomplete ones, and the first damaged document of each damaged run."""
        base = self.root / "runs"
        if not base.is_dir():
            return StoreScan([], 0, [])
        records, incomplete, damaged = [], 0, []
        with os.scandir(base) as entries:
            for entry in entries:
                if entry.is_dir() and _RUN_ID.fullmatch(entry.name):
                    try:
                        record = self.get(entry.name)
                    except DamagedDocument as err:
                        damaged.append(err)
                        continue
                    if record is None:
                        incomplete += 1
                    else:
                        records.append(record)
        records.sort(key=lambda r: (r.created, r.run_id))
        return StoreScan(records, incomplete, sorted(damaged, key=lambda e: str(e.path)))

    def index(self) -> list[IndexEntry]:
        """The lines of ``index.jsonl`` (a fast summary; [] if it is missing; may lag the runs)."""
        entries = []
        for rec in read_journal(self.index_path).records:
            try:
                entries.append(IndexEntry(**rec))
            except TypeError:
                continue  # a line from an unknown format version
        return entries

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """This run's journal of state changes, oldest first."""
        return read_journal(self.run_dir(run_id) / "events.jsonl", run_id).records

    def read_json(self, run_id: str, name: str) -> Any | None:
        """The run's ``NAME.json`` (e.g. ``"cost"``), or None if it has not been written;
        :class:`DamagedDocument` if it cannot be read."""
        path = self.run_dir(run_id) / f"{_check_doc_name(name)}.json"
        return read_document(path, run_id)

    def write_json(self, run_id: str, name: str, data: Any) -> Path:
        """Atomically write the run's ``NAME.json`` (e.g. ``"cost"``, ``"provenance"``).

        ``config``, ``run``, ``status`` and ``final`` belong to the store and are refused.
        """
        if _check_doc_name(name) in _STORE_DOCS:
            raise StoreError(f"{name}.json is written by the store itself, not by write_json")
        self.require(run_id)
        target = self.run_dir(run_id) / f"{name}.json"
        durable.write_json(target, data)
        return target

    # -- locking and liveness -------------------------------------------------------------

    def lock_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / LOCK_NAME

    def lock(self, run_id: str) -> RunLock:
        """Take the run's exclusive lock (use as ``with store.lock(run_id):``).

        Raises :class:`RunLocked` if a live process holds it; recovers a stale one.
        """
        self.require(run_id)
        return acquire(self.lock_path(run_id), self.foreign_lock_timeout)

    def try_lock(self, run_id: str) -> RunLock | None:
        """Like :meth:`lock`, but None instead of :class:`RunLocked` (for workers that skip)."""
        self.require(run_id)
        return try_acquire(self.lock_path(run_id), self.foreign_lock_timeout)

    def lock_holder(self, run_id: str) -> LockInfo | None:
        """Who holds the run's lock file right now (None if nobody, or it is unreadable)."""
        return read_holder(self.lock_path(run_id), self.foreign_lock_timeout)[0]

    def state(self, run_id: str) -> RunState:
        """The run's live state: the stored one, except that a ``RUNNING`` run whose lock is
        gone or stale (its worker died) is ``INTERRUPTED``, ready to be resumed."""
        return self.live_state(self.require(run_id))

    def live_state(self, record: RunRecord) -> RunState:
        """:meth:`state` of a record already read (no second read of its documents)."""
        if record.state is RunState.RUNNING:
            _, stale = read_holder(self.lock_path(record.run_id), self.foreign_lock_timeout)
            if stale:
                return RunState.INTERRUPTED
        return record.state

    # -- experiment designs (what reports compare; written by ``dat-lab run``) -------------

    def write_design(self, experiment: str, design: Mapping[str, Any]) -> Path:
        """Record an experiment file's design (variants, seeds, baseline, claims) under
        ``root/experiments/``, replacing the last one: reports read it with :meth:`designs`."""
        folder = self.root / "experiments"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{quote(experiment, safe='')}.json"
        durable.write_json(target, {"experiment": experiment, **design})
        return target

    def designs(self) -> dict[str, dict[str, Any]]:
        """Every recorded experiment design by experiment name ({} if none)."""
        folder = self.root / "experiments"
        out = {}
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                doc = read_document(path)
            except DamagedDocument:
                continue  # `dat-lab store check` lists it; the next `dat-lab run` rewrites it
            if isinstance(doc, dict) and isinstance(doc.get("experiment"), str):
                out[doc["experiment"]] = doc
        return out

    def interrupted(self) -> list[RunRecord]:
        """Every run whose live state is ``INTERRUPTED``."""
        return [
            r for r in self.runs()
            if r.state is RunState.RUNNING and self.state(r.run_id) is RunState.INTERRUPTED
        ]  # fmt: skip

    # -- state changes (the caller must hold the run's lock) ------------------------------

    def mark_running(self, run_id: str) -> RunRecord:
        """Record that this process starts (or resumes) the run: attempts + 1, pid, host."""
        status = self._transition(run_id, RunState.RUNNING)
        status["attempts"] = int(status.get("attempts", 0)) + 1
        status["started"] = status["updated"]
        return self._commit(run_id, status, {"attempt": status["attempts"]})

    def mark_finished(self, run_id: str, final_metrics: Mapping[str, float]) -> RunRecord:
        """Record the run's final metrics (a flat dict of numbers) and mark it finished."""
        final = flat_floats(final_metrics)
        status = self._transition(run_id, RunState.FINISHED)
        durable.write_json(self.run_dir(run_id) / "final.json", final)  # before the state says so
        return self._commit(run_id, status, {"final": final})

    def mark_failed(self, run_id: str, reason: str) -> RunRecord:
        """Record that the run failed and why (e.g. the exception's one-line summary)."""
        status = self._transition(run_id, RunState.FAILED)
        status["reason"] = str(reason)
        return self._commit(run_id, status, {"reason": status["reason"]})

    def restart(self, run_id: str, reason: str) -> RunRecord:
        """Set the run back to pending, to be trained again from scratch (e.g. its code
        changed). Its checkpoints, logs and final metrics move to ``superseded/K/`` (kept,
        never deleted; K counts restarts), so nothing resumes from them or reports them."""
        status = self._transition(run_id, RunState.PENDING)
        path = self.run_dir(run_id)
        archive = path / SUPERSEDED / str(len(list((path / SUPERSEDED).glob("*"))))
        archive.mkdir(parents=True)
        for name in _TRAINING_OUTPUT:
            if (path / name).exists():
                os.replace(path / name, archive / name)
        for sub in ("logs", "checkpoints"):
            (path / sub).mkdir(exist_ok=True)
        fsync_dir(path)
        status["reason"] = str(reason)
        return self._commit(run_id, status, {"restarted": str(reason), "moved_to": archive.name})

    # -- internals ------------------------------------------------------------------------

    def _transition(self, run_id: str, new: RunState) -> dict[str, Any]:
        """The run's status dict, moved to ``new``, after checking the lock and the move."""
        record = self.require(run_id)
        holder = self.lock_holder(run_id)
        if holder is None or holder.pid != os.getpid() or holder.host != host_name():
            raise StoreError(
                f"mark {new.value} on run {run_id}: this process (pid {os.getpid()}) does not "
                f"hold its lock {self.lock_path(run_id)} (holder: {holder}); use store.lock()"
            )
        if record.state not in _ALLOWED_FROM[new]:
            allowed = ", ".join(sorted(s.value for s in _ALLOWED_FROM[new]))
            raise StoreError(
                f"run {run_id} is {record.state.value}; it can become {new.value} only from: "
                f"{allowed}"
            )
        status = read_document(record.path / "status.json", run_id) or {}
        status.update(status_doc(new, record.attempts))
        status.pop("reason", None)
        return status

    def _commit(self, run_id: str, status: dict[str, Any], details: dict[str, Any]) -> RunRecord:
        path = self.run_dir(run_id)
        durable.write_json(path / "status.json", status)
        record = self.require(run_id)
        self._log_event(run_id, record.identity, status["state"], **details)
        return record

    def _log_event(self, run_id: str, identity: RunIdentity, event: str, **details: Any) -> None:
        """Append ``event`` to the run's journal, then a summary line to the store's index."""
        when = now_iso()
        durable.append_record(
            self.run_dir(run_id) / "events.jsonl",
            {"time": when, "event": event, "pid": os.getpid(), "host": host_name(),
             "identity": identity.as_dict(), **details},
        )  # fmt: skip
        durable.append_record(
            self.index_path, {"time": when, "run_id": run_id, "event": event, **identity.as_dict()}
        )


def _check_doc_name(name: str) -> str:
    if not isinstance(name, str) or not _DOC_NAME.fullmatch(name):
        raise StoreError(f"invalid document name {name!r}: use lower-case letters, digits, '_'")
    return name
