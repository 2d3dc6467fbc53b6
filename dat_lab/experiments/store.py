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
    root/experiments/<name>.json     an experiment file's plan (baseline, claims), for reports

The directories are the truth; ``index.jsonl`` is a cheap summary for readers and may be
missing or torn without harm. Every JSON document is replaced atomically and every journal
line is appended with one ``O_APPEND`` write plus ``fsync`` (see ``durable.py``): a worker
killed at any instant leaves only complete files behind. This follows Optuna's journal
storage: the events are an append-only log replayed into frozen records.

Typical use by an engine::

    store.create(run_id, config, RunIdentity("placement", "stages_3_4", seed=0))
    lock = store.try_lock(run_id)  # None: another worker has this run; skip it
    if lock is not None:
        with lock:
            record = store.get(run_id)  # read under the lock: it may have finished meanwhile
            if record.state is not RunState.FINISHED:
                store.mark_running(run_id)
                ...  # train, resuming from record.last_checkpoint if there is one
                store.mark_finished(run_id, {"val/acc": 0.81})  # or mark_failed(run_id, why)

State changes (``mark_*``) require the calling process to hold the run's lock.
"""

from __future__ import annotations

import enum
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dat_lab.experiments import durable
from dat_lab.experiments.locking import (
    LockInfo,
    RunLock,
    RunLocked,
    acquire,
    now_iso,
    read_holder,
    try_acquire,
)
from dat_lab.experiments.processes import host_name
from dat_lab.schema import ConfigError, from_mapping, to_mapping
from dat_lab.train.log_dirs import attempt_dirs

__all__ = [
    "DEFAULT_ROOT",
    "STORE_FORMAT",
    "ConfigMismatch",
    "IndexEntry",
    "RunIdentity",
    "RunLocked",
    "RunNotFound",
    "RunRecord",
    "RunState",
    "RunStore",
    "StoreError",
    "attempt_metrics_csvs",
]

DEFAULT_ROOT = Path("runs")
STORE_FORMAT = 1

LOCK_NAME = "run.lock"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_DOC_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_STORE_DOCS = frozenset({"config", "run", "status", "final"})  # written only by the store


class StoreError(RuntimeError):
    """A misuse of the run store (unknown run, wrong state, lock not held, bad name)."""


class RunNotFound(StoreError):
    """No complete run with this id exists in the store."""


class ConfigMismatch(StoreError):
    """``create`` got a config that differs from the one already stored under that run id."""


class RunState(enum.StrEnum):
    """Where a run is. ``INTERRUPTED`` is never stored: it is how :meth:`RunStore.state`
    reports a run left ``RUNNING`` by a worker that died (its lock is stale or gone)."""

    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


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


@dataclass(frozen=True)
class RunIdentity:
    """Who asked for a run: the experiment, the variant in it, and the seed."""

    experiment: str
    variant: str
    seed: int

    def __post_init__(self) -> None:
        for key in ("experiment", "variant"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"expected a non-empty string, got {value!r}", key)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"expected an integer, got {self.seed!r}", "seed")

    @classmethod
    def coerce(cls, value: RunIdentity | Mapping[str, Any]) -> RunIdentity:
        """``value`` itself, or a strict build from a mapping with exactly these three keys."""
        if isinstance(value, RunIdentity):
            return value
        if value.keys() == {"experiment", "variant", "seed"}:  # the common case, read per run
            try:
                return cls(value["experiment"], value["variant"], value["seed"])
            except ConfigError:
                pass  # from_mapping below names the key with its "identity." prefix
        return from_mapping(cls, dict(value), "identity")

    def as_dict(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "variant": self.variant, "seed": self.seed}


@dataclass(frozen=True)
class IndexEntry:
    """One line of ``index.jsonl``."""

    time: str
    run_id: str
    experiment: str
    variant: str
    seed: int
    event: str


def attempt_metrics_csvs(run_dir: Path) -> list[Path]:
    """A run's ``logs/version_K/metrics.csv`` files, one per training attempt, by K.

    The trainer logs each attempt (first start, then each resume) into its own
    ``logs/version_K/`` because Lightning's CSVLogger would overwrite an existing file.
    """

    csvs = (d / "metrics.csv" for d in attempt_dirs(Path(run_dir) / "logs"))
    return [p for p in csvs if p.is_file()]


@dataclass(frozen=True)
class RunRecord:
    """A snapshot of one run as stored on disk (re-read with :meth:`RunStore.get`).

    ``state`` is the stored state; ask :meth:`RunStore.state` for the live view, which turns a
    ``RUNNING`` run with a dead worker into ``INTERRUPTED``. ``identity`` is the first
    requester; ``identities`` lists every (experiment, variant, seed) that shares this run.
    ``config`` and the metric dicts are plain data and must not be mutated.
    """

    run_id: str
    path: Path
    config: dict[str, Any]
    identity: RunIdentity
    identities: tuple[RunIdentity, ...]
    created: str
    state: RunState
    reason: str | None
    attempts: int
    updated: str
    pid: int | None
    host: str | None
    final: dict[str, float] | None
    cost: dict[str, Any] | None
    provenance: dict[str, Any] | None

    @property
    def logs_dir(self) -> Path:
        """Where Lightning's CSVLogger writes (``logs/version_K/metrics.csv``)."""
        return self.path / "logs"

    @property
    def metrics_csvs(self) -> list[Path]:
        """Lightning's ``metrics.csv`` files, one per training attempt, oldest first."""
        return attempt_metrics_csvs(self.path)

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path | None:
        """``checkpoints/last.ckpt`` if it exists: what a resumed run continues from."""
        last = self.checkpoints_dir / "last.ckpt"
        return last if last.is_file() else None

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"


class RunStore:
    """Runs under ``root`` (see the module docstring for the layout).

    Args:
        root: the store's directory; created on the first :meth:`create`.
        foreign_lock_timeout: seconds after which a lock held from *another host* counts as
            stale (its holder should :meth:`RunLock.refresh` it more often than that). ``None``
            (default): never; such a lock must be removed by hand. Locks from this host are
            checked by pid and need no timeout.
    """

    def __init__(self, root: Path | str = DEFAULT_ROOT, foreign_lock_timeout: float | None = None):
        self.root = Path(root)
        self.foreign_lock_timeout = foreign_lock_timeout

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
        durable.fsync_dir(path.parent)

        config_path = path / "config.json"
        durable.publish_json(config_path, plain, allow_nan=False)
        stored = durable.read_json(config_path)
        if stored != plain:
            where = _first_difference(stored, plain) or "(top level)"
            raise ConfigMismatch(
                f"run {run_id} at {path} already holds a different config (first difference at "
                f"{where}: stored {_at(stored, where)!r}, given {_at(plain, where)!r})"
            )

        created = now_iso()
        run_doc = {"format": STORE_FORMAT, "run_id": run_id, "created": created,
                   **identity.as_dict()}  # fmt: skip
        is_creator = durable.publish_json(path / "run.json", run_doc)
        durable.publish_json(path / "status.json", _status(RunState.PENDING, attempts=0))
        for sub in ("logs", "checkpoints"):
            (path / sub).mkdir(exist_ok=True)

        if is_creator:
            self._log_event(run_id, identity, "created")
        elif identity not in self.require(run_id).identities:
            self._log_event(run_id, identity, "attached")
        return self.require(run_id)

    def get(self, run_id: str) -> RunRecord | None:
        """The run ``run_id`` as stored now, or None if it does not exist (or is incomplete)."""
        path = self.run_dir(run_id)
        try:
            config = durable.read_json(path / "config.json")
            run_doc = durable.read_json(path / "run.json")
        except NotADirectoryError:
            return None
        if config is None or run_doc is None:
            return None  # a create() that crashed half-way; the next create() completes it
        status = durable.read_json(path / "status.json") or _status(RunState.PENDING, 0)
        identity = RunIdentity.coerce({k: run_doc[k] for k in ("experiment", "variant", "seed")})
        return RunRecord(
            run_id=run_id,
            path=path,
            config=config,
            identity=identity,
            identities=self._identities(path, identity),
            created=run_doc["created"],
            state=RunState(status["state"]),
            reason=status.get("reason"),
            attempts=int(status.get("attempts", 0)),
            updated=status.get("updated", run_doc["created"]),
            pid=status.get("pid"),
            host=status.get("host"),
            final=durable.read_json(path / "final.json"),
            cost=durable.read_json(path / "cost.json"),
            provenance=durable.read_json(path / "provenance.json"),
        )

    def require(self, run_id: str) -> RunRecord:
        """Like :meth:`get`, but :class:`RunNotFound` instead of None."""
        record = self.get(run_id)
        if record is None:
            raise RunNotFound(f"no run {run_id!r} in {self.root} (create it first)")
        return record

    def runs(self) -> list[RunRecord]:
        """Every complete run, oldest first, read from the run directories (not the index)."""
        return self.survey()[0]

    def survey(self) -> tuple[list[RunRecord], int]:
        """Every complete run, oldest first, and the number of incomplete run directories
        (a ``create`` cut short: no ``config.json`` or ``run.json`` yet)."""
        base = self.root / "runs"
        if not base.is_dir():
            return [], 0
        records, incomplete = [], 0
        with os.scandir(base) as entries:
            for entry in entries:
                if entry.is_dir() and _RUN_ID.fullmatch(entry.name):
                    record = self.get(entry.name)
                    if record is None:
                        incomplete += 1
                    else:
                        records.append(record)
        return sorted(records, key=lambda r: (r.created, r.run_id)), incomplete

    def index(self) -> list[IndexEntry]:
        """The lines of ``index.jsonl`` (a fast summary; [] if it is missing; may lag the runs)."""
        entries = []
        for rec in durable.read_records(self.index_path):
            try:
                entries.append(IndexEntry(**rec))
            except TypeError:
                continue  # a line from an unknown format version
        return entries

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """This run's journal of state changes, oldest first."""
        return durable.read_records(self.run_dir(run_id) / "events.jsonl")

    def read_json(self, run_id: str, name: str) -> Any | None:
        """The run's ``NAME.json`` (e.g. ``"cost"``), or None if it has not been written."""
        return durable.read_json(self.run_dir(run_id) / f"{_check_doc_name(name)}.json")

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

    # -- experiment plans (what reports compare; written by ``dat-lab run``) -------------

    def write_plan(self, experiment: str, plan: Mapping[str, Any]) -> Path:
        """Record an experiment file's plan (variants, seeds, baseline, claims) under
        ``root/experiments/``, replacing the last one: reports read it with :meth:`plans`."""
        folder = self.root / "experiments"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{quote(experiment, safe='')}.json"
        durable.write_json(target, {"experiment": experiment, **plan})
        return target

    def plans(self) -> dict[str, dict[str, Any]]:
        """Every recorded experiment plan by experiment name ({} if none)."""
        folder = self.root / "experiments"
        out = {}
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            doc = durable.read_json(path)
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
        final = _flat_floats(final_metrics)
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
        durable.fsync_dir(path)
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
        status = durable.read_json(record.path / "status.json") or {}
        status.update(_status(new, record.attempts))
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

    def _identities(self, path: Path, first: RunIdentity | None = None) -> tuple[RunIdentity, ...]:
        """Every identity recorded for the run, ``first`` first, without repeats."""
        found: list[RunIdentity] = [first] if first else []
        for rec in durable.read_records(path / "events.jsonl"):
            if rec.get("event") in ("created", "attached"):
                try:
                    identity = RunIdentity.coerce(rec["identity"])
                except (ConfigError, KeyError, TypeError):
                    continue
                if identity not in found:
                    found.append(identity)
        return tuple(found)


def _status(state: RunState, attempts: int) -> dict[str, Any]:
    return {
        "state": state.value,
        "attempts": attempts,
        "updated": now_iso(),
        "pid": os.getpid(),
        "host": host_name(),
    }


def _check_doc_name(name: str) -> str:
    if not isinstance(name, str) or not _DOC_NAME.fullmatch(name):
        raise StoreError(f"invalid document name {name!r}: use lower-case letters, digits, '_'")
    return name


def _flat_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``metrics`` as ``{str: float}``; StoreError naming the first value that is not a number."""
    out = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or isinstance(value, (bool, str, bytes)):
            raise StoreError(f"final metric {key!r}: expected a number, got {value!r}")
        try:
            out[key] = float(value)  # also takes 0-d tensors and numpy scalars
        except (TypeError, ValueError):
            raise StoreError(f"final metric {key!r}: expected a number, got {value!r}") from None
    return out


def _first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    """The dotted key of the first place where plain data ``a`` and ``b`` differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in a or key not in b:
                return where
            found = _first_difference(a[key], b[key], where)
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{prefix}.{i}" if prefix else str(i))
            if found:
                return found
        return None
    return None if a == b else prefix


def _at(data: Any, dotted: str) -> Any:
    """The value at ``dotted`` in plain data, or ``"<absent>"``."""
    if dotted == "(top level)":
        return data
    for part in dotted.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return "<absent>"
    return data
