"""Crash-safe files: atomic JSON documents and append-only JSON-lines journals.

Two write primitives, modelled on Optuna's journal file storage (``storages/journal/_file.py``):

- a JSON *document* is replaced atomically: write a temporary file in the same directory,
  ``fsync`` it, ``os.replace`` it over the target, ``fsync`` the directory. A reader sees the
  old document or the new one, never half of either, even if the writer is SIGKILLed or the
  machine loses power. :func:`publish_json` is the write-once variant: the first writer wins.
- a *journal* is a file of one JSON object per line. Each record is appended with one
  ``os.write`` on an ``O_APPEND`` descriptor, then ``fsync``. On local POSIX filesystems a single
  ``O_APPEND`` write is placed at the end as a whole, so concurrent writers do not interleave
  (NFS gives no such promise across clients; that is why nothing in dat-lab treats a journal
  it did not lock as the only copy of a fact). Replay (``documents.read_journal``) ignores a
  torn last line (a write cut short by power loss, or one still being written while we read)
  and skips, and names, any other line that does not parse.

Everything is read back through ``documents.py``, the one reader of store files.

The atomic replacement itself lives in ``dat_lab/atomic_files.py`` (checkpoints use it too).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dat_lab.atomic_files import fsync_dir, write_atomically, write_temp

# The errors of a write that the store's files cannot survive: a full disk or quota, a failed
# device, a filesystem that became read-only. Not a bug and not the run's fault.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})


def write_errno(err: BaseException) -> OSError | None:
    """The OSError of WRITE_ERRNOS in ``err``'s chain, or None."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in WRITE_ERRNOS:
            return err
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return None


def is_write_failure(err: BaseException) -> bool:
    return write_errno(err) is not None


STORE_WRITE_EXIT = 3  # the exit code of a command stopped by a failed store write


class StoreWriteError(Exception):
    """A write to the run store failed (full disk, quota, I/O error, read-only filesystem).

    The message is one line naming the store, the errno and what was left: the run stays
    interrupted (resumable from its last good checkpoint) once space is freed.
    """

    def __init__(self, root: Path | str, err: OSError, run_id: str | None = None):
        self.root, self.errno, self.run_id = Path(root), err.errno, run_id
        name = errno.errorcode.get(err.errno or 0, str(err.errno))
        where = f" ({err.filename})" if err.filename else ""
        run = f"; run {run_id} is left interrupted" if run_id else ""
        super().__init__(
            f"cannot write to the run store {self.root}: {err.strerror or err} [{name}]{where}"
            f"{run}; free space (or make it writable) and rerun the same command to resume"
        )


@contextmanager
def store_writes(root: Path, run_id: str | None = None) -> Iterator[None]:
    """Turn a failed write (WRITE_ERRNOS) anywhere in the block into :class:`StoreWriteError`
    naming the store at ``root`` and the run; other errors pass unchanged."""
    try:
        yield
    except StoreWriteError:
        raise
    except Exception as err:
        failed = write_errno(err)
        if failed is None:
            raise
        raise StoreWriteError(root, failed, run_id) from err


def _dumps(data: Any, allow_nan: bool) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True, allow_nan=allow_nan) + "\n").encode()


def write_json(path: Path, data: Any, allow_nan: bool = True) -> None:
    """Atomically replace ``path`` with ``data`` as JSON (sorted keys, one-space indent).

    ``allow_nan`` keeps Python's ``NaN``/``Infinity`` extension (a diverged loss is a result);
    pass ``False`` for documents that must be strict JSON.
    """
    write_atomically(path, _dumps(data, allow_nan))


def publish_json(path: Path, data: Any, allow_nan: bool = True) -> bool:
    """Write ``data`` to ``path`` only if ``path`` does not exist yet; True if this call wrote it.

    The document appears complete or not at all: it is written to a temporary file and then
    hard-linked into place, and ``link`` fails if the name is taken, so of two racing writers
    exactly one wins. Where hard links are unsupported it falls back to check-then-replace.
    """
    tmp = write_temp(path, _dumps(data, allow_nan))
    try:
        os.link(tmp, path)
        won = True
    except FileExistsError:
        won = False
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        won = not path.exists()  # no hard links here: a small race is left, documented above
        if won:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if won:
        fsync_dir(path.parent)
    return won


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON object as one line of the journal at ``path`` (created if missing).

    The line goes out in a single ``os.write`` on an ``O_APPEND`` descriptor, then ``fsync``.
    If the file does not end with a newline (a torn line left by a crash), a newline is
    written first so that the torn fragment cannot swallow this record.
    """
    line = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and _last_byte(path, size) != b"\n":
            line = b"\n" + line
        written = os.write(fd, line)
        if written != len(line):  # only on a full disk; never retry (it would tear the line)
            raise OSError(errno.ENOSPC, f"short write to journal {path}: {written}/{len(line)}")
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_byte(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:  # an O_APPEND descriptor is write-only: read through another
        f.seek(size - 1)
        return f.read(1)
