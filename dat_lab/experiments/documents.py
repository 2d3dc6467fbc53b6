"""The one reader of the run store's documents: a damaged file becomes a typed error.

Atomic writes (``durable.py``) keep a crash from tearing a file, but disks, NFS clients, sync
tools and people still damage files. Every read of a store document goes through
:func:`read_document` (JSON documents) or :func:`read_journal` (JSON-lines journals), which
tell the four ways a file can be unreadable apart and name the run and the file:

- ``empty``: zero bytes, or only whitespace (a file created but never written);
- ``not UTF-8``: bytes that no JSON writer produced (disk or transfer damage);
- ``not JSON``: text that does not parse (most often a file cut short);
- ``not the schema``: JSON, but not what this document holds (a wrong type, a missing key).

The journals tolerate damage by design, as Optuna's journal storage does: a torn last line is
ignored and any other unreadable line is skipped; :func:`read_journal` also returns what it
skipped, so that ``dat-lab store check`` can list it.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DOCUMENT_NAMES",
    "DamageKind",
    "DamagedDocument",
    "JournalRead",
    "read_document",
    "read_journal",
]


class DamageKind(enum.StrEnum):
    """How a store file is unreadable."""

    EMPTY = "empty"
    NOT_UTF8 = "not UTF-8"
    NOT_JSON = "not JSON"
    NOT_SCHEMA = "not the schema"


class DamagedDocument(Exception):
    """A store file that cannot be read: which run, which file, how, and the detail.

    Not a :class:`~dat_lab.experiments.records.StoreError` (a misuse of the store): the store
    was used right, its file is damaged."""

    def __init__(self, path: Path, kind: DamageKind, detail: str, run_id: str | None = None):
        self.path, self.kind, self.detail, self.run_id = Path(path), kind, detail, run_id
        owner = f"run {run_id}: " if run_id else ""
        super().__init__(f"{owner}{self.path.name} is {kind.value} ({detail}) at {self.path}")

    @property
    def file(self) -> str:
        return self.path.name

    @property
    def line(self) -> str:
        """One line for tables: ``status.json: not JSON (Expecting value ...)``."""
        return f"{self.file}: {self.kind.value} ({self.detail})"


Check = Callable[[Any], str | None]  # None if the value fits, else what is wrong


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fields(required: dict[str, Check], optional: dict[str, Check] | None = None) -> Check:
    """An object with these keys, each value passing its check."""

    def check(doc: Any) -> str | None:
        if not isinstance(doc, dict):
            return f"expected a JSON object, got {type(doc).__name__}"
        for key, test in required.items():
            if key not in doc:
                return f"no key {key!r}"
            wrong = test(doc[key])
            if wrong:
                return f"{key}: {wrong}"
        for key, test in (optional or {}).items():
            if doc.get(key) is not None:
                wrong = test(doc[key])
                if wrong:
                    return f"{key}: {wrong}"
        return None

    return check


def _typed(test: Callable[[Any], bool], what: str) -> Check:
    return lambda value: None if test(value) else f"expected {what}, got {value!r:.60}"


_STR = _typed(lambda v: isinstance(v, str), "a string")
_NONEMPTY = _typed(lambda v: isinstance(v, str) and bool(v), "a non-empty string")
_INT = _typed(_is_int, "an integer")
_COUNT = _typed(lambda v: _is_int(v) and v >= 0, "an integer >= 0")
_NUMBER = _typed(_is_number, "a number")
# The states a status.json may hold (INTERRUPTED is never stored; see records.RunState).
_STORED_STATES = ("pending", "running", "finished", "failed")
_STATE = _typed(lambda v: v in _STORED_STATES, f"one of {', '.join(_STORED_STATES)}")


def _object(doc: Any) -> str | None:
    return None if isinstance(doc, dict) else f"expected a JSON object, got {type(doc).__name__}"


def _metrics(doc: Any) -> str | None:
    """``final.json``: a flat object of numbers (NaN allowed: a diverged loss is a result)."""
    if not isinstance(doc, dict):
        return f"expected a JSON object, got {type(doc).__name__}"
    for key, value in doc.items():
        if not _is_number(value):
            return f"{key}: expected a number, got {value!r:.60}"
    return None


SCHEMAS: dict[str, Check] = {
    "config": _object,
    "run": _fields(
        {
            "run_id": _NONEMPTY,
            "created": _STR,
            "experiment": _NONEMPTY,
            "variant": _NONEMPTY,
            "seed": _INT,
        },
        {"format": _INT},
    ),  # fmt: skip
    "status": _fields(
        {"state": _STATE},
        {"attempts": _COUNT, "updated": _STR, "pid": _INT, "host": _STR, "reason": _STR},
    ),
    "final": _metrics,
    "cost": _fields(
        {},
        {"params": _NUMBER, "flops": _NUMBER, "flops_formula": _NUMBER, "train_time_s": _NUMBER},
    ),
    "provenance": _object,
}
DOCUMENT_NAMES = tuple(SCHEMAS)  # a run's documents, in the order a check reads them


def _decode(path: Path, raw: bytes, run_id: str | None) -> Any:
    """``raw`` parsed as JSON; DamagedDocument naming how it is not."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DamagedDocument(path, DamageKind.NOT_UTF8, f"byte {err.start}", run_id) from None
    if not text.strip():
        raise DamagedDocument(path, DamageKind.EMPTY, f"{len(raw)} bytes", run_id)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        cut = " (cut short?)" if err.pos >= len(text.rstrip()) else ""
        detail = f"{err.msg} at line {err.lineno} column {err.colno}{cut}"
        raise DamagedDocument(path, DamageKind.NOT_JSON, detail, run_id) from None


def read_document(
    path: Path, run_id: str | None = None, schema: str | Check | None = None
) -> Any | None:
    """The JSON document at ``path``, or None if there is none.

    ``schema``: a document name of :data:`SCHEMAS` (default: the file's stem, when it is one)
    or a check of its own. Raises :class:`DamagedDocument` naming ``run_id`` and the file.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    doc = _decode(path, raw, run_id)
    check = SCHEMAS.get(Path(path).stem) if schema is None else schema
    if isinstance(check, str):
        check = SCHEMAS[check]
    wrong = check(doc) if check is not None else None
    if wrong:
        raise DamagedDocument(path, DamageKind.NOT_SCHEMA, wrong, run_id)
    return doc


@dataclass(frozen=True)
class JournalRead:
    """A journal replayed: its complete records, and what was skipped.

    ``damaged``: one :class:`DamagedDocument` per line that is not a JSON object (the line
    number in its detail). ``torn``: the last line has no newline (a write cut short, or one
    being written right now); it is not a record.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    damaged: tuple[DamagedDocument, ...] = ()
    torn: bool = False


def read_journal(path: Path, run_id: str | None = None) -> JournalRead:
    """Replay the JSON-lines journal at ``path`` (an empty read if there is none)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return JournalRead()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" after a final newline; otherwise a torn last line
    records, damaged = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = _decode(path, line, run_id)
        except DamagedDocument as err:
            damaged.append(DamagedDocument(path, err.kind, f"line {number}: {err.detail}", run_id))
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            kind, detail = DamageKind.NOT_SCHEMA, f"line {number}: not a JSON object"
            damaged.append(DamagedDocument(path, kind, detail, run_id))
    return JournalRead(records, tuple(damaged), torn=bool(tail))
