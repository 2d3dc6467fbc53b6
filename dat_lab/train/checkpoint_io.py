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
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from dat_lab.atomic_files import write_atomically


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
