"""Checkpoints written so that a failed write never replaces the last good one.

Lightning 2.6's ``TorchCheckpointIO`` saves through ``lightning_fabric``'s ``_atomic_save``:
``torch.save`` into memory, then an fsspec *transaction*. For a local path fsspec writes the
bytes to a temporary file from ``tempfile.mkstemp()`` (the system temp folder, usually another
filesystem) and on commit ``shutil.move``\\ s it over the target: across filesystems that is a
copy into the target opened for writing, so a disk that fills up during the copy leaves a cut
``last.ckpt`` where the good one was, and nothing is fsynced.

:class:`AtomicCheckpointIO` writes the temporary file beside the target (same filesystem),
fsyncs it, ``os.replace``\\ s it over the target and fsyncs the folder: the old checkpoint
stays whole until the new one is complete on disk. The temporary file's name is hidden and
ends in ``.tmp`` (like the run store's documents); a failed write removes it.
"""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

TMP_SUFFIX = ".tmp"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory
        pass
    finally:
        os.close(fd)


def write_atomically(path: Path, payload: bytes | memoryview) -> None:
    """Replace ``path`` with ``payload``: temp file beside it, fsync, rename, fsync folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]  # ENOSPC, EDQUOT, EIO raise OSError here
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with a same-folder temp file and rename (see above)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomically(target, buffer.getbuffer())  # a view: no second copy in memory


__all__ = ["AtomicCheckpointIO", "write_atomically"]
