"""Atomic file replacement: a temporary file beside the target, fsync, rename, fsync the folder.

The one home of the write primitive that both the run store's JSON documents
(``experiments/durable.py``) and the training checkpoints (``train/checkpoint_io.py``) use, so
it sits below both layers. A reader sees the old file or the new one, never half of either,
even if the writer is SIGKILLed, the machine loses power or the disk fills up mid-write.
Leftover temporary files of killed writers are hidden (``.NAME.HEX.tmp``) and harmless.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

TMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (a rename or a new file) to disk; a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems (and Windows) cannot fsync a directory
        pass
    finally:
        os.close(fd)


def write_temp(path: Path, payload: bytes | memoryview) -> Path:
    """Write ``payload`` to a new hidden temporary file beside ``path`` and fsync it."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]  # ENOSPC, EDQUOT, EIO raise OSError here
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def write_atomically(path: Path, payload: bytes | memoryview) -> None:
    """Replace ``path`` with ``payload``: temp file beside it, fsync, rename, fsync folder."""
    path = Path(path)
    tmp = write_temp(path, payload)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
