"""``dat-lab store check``'s engine: walk a run store and list what is damaged, once each.

What it finds (:class:`Problem`):

- a *damaged document*: a run's ``config``, ``run``, ``status``, ``final``, ``cost`` or
  ``provenance`` JSON, or an experiment plan, that is empty, not UTF-8, not JSON or not its
  schema (``documents.py``); an unreadable line of an events journal or of ``index.jsonl``,
  or a journal whose last line is cut short while no live process writes it;
- an *orphaned temporary file*: a ``.NAME.HEX.tmp`` left by a writer that died (in a run no
  live process holds, or older than :data:`ORPHAN_AGE_S` elsewhere);
- a *stale lock*: a run lock (or a lock-recovery marker) whose holder is dead, or that holds
  garbage and is older than the lock's grace period;
- a *checkpoint that does not load*: cut short, not a checkpoint, or another model's shapes.

:func:`repair` sets each one aside in the quarantine (``quarantine.py``), deleting nothing: a
run with a damaged document moves whole (a rerun trains it again), a journal keeps its
readable records and its damaged original is kept, a file moves alone.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dat_lab.atomic_files import TMP_SUFFIX
from dat_lab.experiments import durable
from dat_lab.experiments.documents import (
    DOCUMENT_NAMES,
    DamagedDocument,
    JournalRead,
    read_document,
    read_journal,
)
from dat_lab.experiments.locking import read_holder
from dat_lab.experiments.quarantine import QUARANTINE, quarantine_run, set_aside
from dat_lab.experiments.resume import candidates, checkpoint_problem, model_shapes
from dat_lab.experiments.run_config import RunConfig
from dat_lab.experiments.store import LOCK_NAME, RunStore

ORPHAN_AGE_S = 600.0  # a store-level temporary file older than this has no live writer
EVENTS = "events.jsonl"


class ProblemKind(enum.StrEnum):
    DAMAGED_DOCUMENT = "damaged document"
    ORPHANED_TEMP = "orphaned temporary file"
    STALE_LOCK = "stale lock"
    BAD_CHECKPOINT = "checkpoint does not load"
    MISSING_RUN = "missing run"


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the store: what, where, and (for runs) which run."""

    kind: ProblemKind
    path: Path
    detail: str
    run_id: str | None = None
    whole_run: bool = False  # a run document: the run is not trusted and moves whole

    def line(self, root: Path) -> str:
        where = self.path.relative_to(root) if self.path.is_relative_to(root) else self.path
        return f"{self.kind.value}: {where}: {self.detail}"


def _journal_problems(path: Path, run_id: str | None, live: bool) -> list[Problem]:
    """A journal's unreadable lines; its torn last line or its emptiness when no live
    process writes it (an append never leaves a journal empty)."""
    read: JournalRead = read_journal(path, run_id)
    found = [_damage(err) for err in read.damaged]
    if not live and path.is_file() and path.stat().st_size == 0:
        found.append(Problem(ProblemKind.DAMAGED_DOCUMENT, path, "empty (0 bytes)", run_id))
    if read.torn and not live:
        found.append(
            Problem(ProblemKind.DAMAGED_DOCUMENT, path, "last line cut short (torn)", run_id)
        )
    return found


def _damage(err: DamagedDocument, whole_run: bool = False) -> Problem:
    detail = f"{err.kind.value} ({err.detail})"
    return Problem(ProblemKind.DAMAGED_DOCUMENT, err.path, detail, err.run_id, whole_run)


class _Shapes:
    """Model shapes by model config hash: one model built per distinct model."""

    def __init__(self) -> None:
        self._by_hash: dict[str, dict[str, tuple[int, ...]]] = {}

    def of(self, config: dict) -> dict[str, tuple[int, ...]]:
        model = RunConfig.from_dict(config).model
        if model.hash not in self._by_hash:
            self._by_hash[model.hash] = model_shapes(model)
        return self._by_hash[model.hash]


def check_run(store: RunStore, run_dir: Path, shapes: _Shapes) -> list[Problem]:
    """Every problem of one run directory."""
    run_id = run_dir.name
    found: list[Problem] = []
    docs = {}
    for name in DOCUMENT_NAMES:
        try:
            docs[name] = read_document(run_dir / f"{name}.json", run_id)
        except DamagedDocument as err:
            found.append(_damage(err, whole_run=True))
    holder, stale = read_holder(run_dir / LOCK_NAME, store.foreign_lock_timeout)
    lock_exists = (run_dir / LOCK_NAME).exists()
    live = lock_exists and not stale
    if lock_exists and stale:
        who = f"pid {holder.pid} on {holder.host} is gone" if holder else "holds no lock record"
        found.append(Problem(ProblemKind.STALE_LOCK, run_dir / LOCK_NAME, who, run_id))
    found += _journal_problems(run_dir / EVENTS, run_id, live)
    if not live:
        found += [
            Problem(ProblemKind.ORPHANED_TEMP, p, "left by a writer that died", run_id)
            for p in _temp_files(run_dir)
        ]
        found += [
            Problem(ProblemKind.STALE_LOCK, p, "lock-recovery marker of a dead process", run_id)
            for p in sorted(run_dir.glob(f"{LOCK_NAME}.break.*"))
        ]
    config = docs.get("config")
    if isinstance(config, dict):
        found += _checkpoint_problems(run_dir, run_id, config, shapes)
    return found


def _checkpoint_problems(run_dir: Path, run_id: str, config: dict, shapes: _Shapes) -> list:
    ckpts = candidates(run_dir / "checkpoints")
    if not ckpts:
        return []
    try:
        expected = shapes.of(config)
    except Exception as err:  # noqa: BLE001 - a config this code cannot build (other code)
        detail = f"cannot build the run's model to compare ({type(err).__name__}: {err})"
        return [Problem(ProblemKind.BAD_CHECKPOINT, run_dir / "checkpoints", detail, run_id)]
    out = []
    for path in ckpts:
        problem = checkpoint_problem(path, expected)
        if problem is not None:
            out.append(Problem(ProblemKind.BAD_CHECKPOINT, path, problem, run_id))
    return out


def _temp_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob(f".*{TMP_SUFFIX}")):
        if path.is_file():
            yield path


def check_store(store: RunStore) -> list[Problem]:
    """Every problem of the store at ``store.root`` (its quarantine is not looked at)."""
    root = store.root
    found: list[Problem] = []
    shapes = _Shapes()
    base = root / "runs"
    for run_dir in sorted(base.iterdir()) if base.is_dir() else []:
        if run_dir.is_dir():
            found += check_run(store, run_dir, shapes)
    found += _journal_problems(store.index_path, None, live=False)
    for plan in sorted((root / "experiments").glob("*.json")):
        try:
            read_document(plan, schema=lambda d: None if isinstance(d, dict) else "not an object")
        except DamagedDocument as err:
            found.append(_damage(err))
    now = time.time()
    for path in _temp_files(root):
        inside = path.relative_to(root).parts[0]
        if inside not in ("runs", QUARANTINE) and now - path.stat().st_mtime > ORPHAN_AGE_S:
            found.append(Problem(ProblemKind.ORPHANED_TEMP, path, "left by a writer that died"))
    return found


@dataclass(frozen=True)
class Repair:
    problem: Problem
    moved_to: Path | None  # None: not repaired (say why in ``note``)
    note: str = ""


def repair(store: RunStore, problems: list[Problem]) -> list[Repair]:
    """Set every problem aside in the quarantine; one :class:`Repair` per problem."""
    moved: dict[str, Path | None] = {}  # by run id (a run moved whole) or by file path
    return [_repair_one(store, problem, moved) for problem in problems]


def _repair_one(store: RunStore, problem: Problem, moved: dict[str, Path | None]) -> Repair:
    run_id, root = problem.run_id, store.root
    if problem.whole_run and run_id is not None:
        if run_id not in moved:
            moved[run_id] = quarantine_run(store, run_id, problem.line(root))
        dest = moved[run_id]
        return Repair(problem, dest, "" if dest else "a live process holds the run")
    if run_id is not None and run_id in moved:
        return Repair(problem, moved[run_id], "moved with its run")
    if problem.kind is ProblemKind.MISSING_RUN:
        return Repair(problem, None, "nothing to move: rerun the sweep or experiment")
    key = str(problem.path)
    if key in moved:  # a second damaged line of the same journal
        return Repair(problem, moved[key], "with the journal's other damage")
    base = store.run_dir(run_id) if run_id else root
    owner = run_id or "store"
    if not problem.path.exists():
        return Repair(problem, None, "gone already")
    if problem.path.name.endswith(".jsonl"):
        moved[key] = _rewrite_journal(store, problem, base, owner)
    else:
        moved[key] = set_aside(root, problem.path, base, owner, problem.line(root))
    return Repair(problem, moved[key])


def _rewrite_journal(store: RunStore, problem: Problem, base: Path, owner: str) -> Path:
    """Keep the journal's readable records; its damaged original goes to the quarantine."""
    path = problem.path
    records = read_journal(path).records
    moved = set_aside(store.root, path, base, owner, problem.line(store.root))
    for record in records:
        durable.append_record(path, record)
    return moved


__all__ = ["ORPHAN_AGE_S", "Problem", "ProblemKind", "Repair", "check_store", "repair"]
