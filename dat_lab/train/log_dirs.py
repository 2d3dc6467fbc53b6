"""The per-attempt log folders of a run: ``logs/version_K`` (K = 0, 1, ...).

Each attempt (first start, then each resume) logs into a new ``version_K`` because
Lightning's CSVLogger would overwrite an existing ``metrics.csv``. The trainer names the next
folder and the run store reads them back in order; both go through these functions.
"""

from __future__ import annotations

from pathlib import Path

PREFIX = "version_"


def attempt_index(folder: Path) -> int | None:
    """K of a ``version_K`` folder, or None for any other name."""
    tail = folder.name.removeprefix(PREFIX)
    return int(tail) if folder.name.startswith(PREFIX) and tail.isdigit() else None


def attempt_dirs(log_root: Path) -> list[Path]:
    """The ``version_K`` folders under ``log_root``, by K."""
    found = [(attempt_index(p), p) for p in Path(log_root).glob(f"{PREFIX}*")]
    return [p for k, p in sorted((k, p) for k, p in found if k is not None)]


def next_version(log_root: Path) -> str:
    """``version_K`` with K one past the highest existing (0 for a new run)."""
    dirs = attempt_dirs(log_root)
    last = attempt_index(dirs[-1]) if dirs else None
    return f"{PREFIX}{(last if last is not None else -1) + 1}"


__all__ = ["attempt_dirs", "attempt_index", "next_version"]
