"""What the run store stores: a run's identity and record, its states, the store's errors.

These are the plain types that readers of the store (reports, the runner, launchers) pass
around; :mod:`dat_lab.experiments.store` writes and reads them (its docstring has the layout).
:func:`read_record` turns a run directory into a :class:`RunRecord`.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dat_lab.experiments.documents import DamagedDocument, read_document, read_journal
from dat_lab.experiments.locking import now_iso
from dat_lab.experiments.processes import host_name
from dat_lab.schema import ConfigError, from_mapping
from dat_lab.train.log_dirs import attempt_dirs

__all__ = [
    "ConfigMismatch",
    "DamagedDocument",
    "IndexEntry",
    "RunIdentity",
    "RunNotFound",
    "RunOutcome",
    "RunRecord",
    "RunState",
    "StoreError",
    "StoreScan",
    "attempt_metrics_csvs",
    "read_record",
]


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


class RunOutcome(enum.StrEnum):
    """What happened to one run in one invocation (``Outcome.result``). Read back from the
    store after parallel workers, an outcome is the run's stored state: the values of
    :class:`RunState` are outcomes too, with the same text."""

    FINISHED = "finished"  # trained now (or, read back, finished)
    SKIPPED = "skipped"  # finished before, or by another worker
    FAILED = "failed"  # now (or, read back, failed)
    NOT_RETRIED = "not retried"  # failed before, and not asked to retry
    BUSY = "busy"  # another live process holds the run
    LOST = "lost"  # the lock was lost: another host took the run over
    PENDING = "pending"  # read back: never started
    RUNNING = "running"  # read back: another worker trains it
    INTERRUPTED = "interrupted"  # read back: left running by a worker that died

    @classmethod
    def of(cls, state: RunState) -> RunOutcome:
        return cls(state.value)


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
    journal_damage: tuple[DamagedDocument, ...] = ()  # lines of events.jsonl skipped

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


@dataclass(frozen=True)
class StoreScan:
    """Every run directory of a store, read (:meth:`RunStore.scan`): the complete runs
    (oldest first), how many are incomplete, and the first damaged document of each damaged
    run."""

    records: list[RunRecord]
    incomplete: int
    damaged: list[DamagedDocument]


def read_record(path: Path, run_id: str) -> RunRecord | None:
    """The run in directory ``path`` as stored now, or None if it is incomplete or missing.

    Raises :class:`DamagedDocument` (naming the run and the file) when one of its documents
    is unreadable: such a run is not trusted, whatever its status says. Unreadable lines of
    its events journal are skipped and listed in ``journal_damage``.
    """
    try:
        config = read_document(path / "config.json", run_id)
        run_doc = read_document(path / "run.json", run_id)
    except NotADirectoryError:
        return None
    if config is None or run_doc is None:
        return None  # a create() that crashed half-way; the next create() completes it
    status = read_document(path / "status.json", run_id) or status_doc(RunState.PENDING, 0)
    final = read_document(path / "final.json", run_id)
    cost = read_document(path / "cost.json", run_id)
    prov = read_document(path / "provenance.json", run_id)
    identity = RunIdentity.coerce({k: run_doc[k] for k in ("experiment", "variant", "seed")})
    journal = read_journal(path / "events.jsonl", run_id)
    return RunRecord(
        run_id=run_id,
        path=path,
        config=config,
        identity=identity,
        identities=_identities(journal.records, identity),
        created=run_doc["created"],
        state=RunState(status["state"]),
        reason=status.get("reason"),
        attempts=int(status.get("attempts", 0)),
        updated=status.get("updated", run_doc["created"]),
        pid=status.get("pid"),
        host=status.get("host"),
        final=final,
        cost=cost,
        provenance=prov,
        journal_damage=journal.damaged,
    )


def _identities(events: list[dict[str, Any]], first: RunIdentity) -> tuple[RunIdentity, ...]:
    """Every identity recorded in the run's ``events``, ``first`` first, without repeats."""
    found: list[RunIdentity] = [first]
    for rec in events:
        if rec.get("event") in ("created", "attached"):
            try:
                identity = RunIdentity.coerce(rec["identity"])
            except (ConfigError, KeyError, TypeError, AttributeError):
                continue
            if identity not in found:
                found.append(identity)
    return tuple(found)


def status_doc(state: RunState, attempts: int) -> dict[str, Any]:
    """A ``status.json`` document: ``state`` now, set by this process."""
    return {
        "state": state.value,
        "attempts": attempts,
        "updated": now_iso(),
        "pid": os.getpid(),
        "host": host_name(),
    }


def flat_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
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


def first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    """The dotted key of the first place where plain data ``a`` and ``b`` differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in a or key not in b:
                return where
            found = first_difference(a[key], b[key], where)
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{prefix}.{i}" if prefix else str(i))
            if found:
                return found
        return None
    return None if a == b else prefix


def value_at(data: Any, dotted: str) -> Any:
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
