"""The Lightning callbacks a run of the store trains with, beside the trainer's own.

- :class:`MetricsSnapshot`: a checkpoint carries the metrics computed so far;
- :class:`LeaseCheck`: training stops when the run's lease was lost to another host;
- :class:`SaveOnSignal`: a SLURM job told to stop writes its checkpoint first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from dat_lab.experiments.locking import LeaseKeeper
from dat_lab.train.trainer import CHECKPOINT_DIR


class MetricsSnapshot(pl.Callback):
    """Store the metrics in each checkpoint, and keep those of the checkpoint resumed from.

    A worker killed after its last epoch's checkpoint but before the store marked the run
    finished leaves nothing to train: the resumed ``fit`` returns at once with no metrics.
    The snapshot gives that run the final metrics the killed worker had computed. Lightning
    saves ``last.ckpt`` in ModelCheckpoint's ``on_train_epoch_end``, which runs after the
    module's own (a monitoring callback), so the snapshot holds that epoch's metrics.
    """

    KEY = "dat_lab_metrics"

    def __init__(self) -> None:
        self.restored: dict[str, float] = {}

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        checkpoint[self.KEY] = {k: float(v) for k, v in trainer.callback_metrics.items()}

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        self.restored = dict(checkpoint.get(self.KEY, {}))


class LeaseCheck(pl.Callback):
    """Stop training when the run's lease was lost (this process stalled past it and another
    host took the run over): two hosts must never go on training one run."""

    def __init__(self, lease: LeaseKeeper) -> None:
        self.lease = lease

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.lease.lost is not None:
            raise self.lease.lost


class SaveOnSignal(pl.Callback):
    """Keeps the running trainer, so that a SLURM job told to stop (time limit, preemption)
    can write ``last.ckpt`` before it is requeued (``launchers.slurm.RunTask.checkpoint``)."""

    def __init__(self) -> None:
        self.trainer: pl.Trainer | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.trainer = trainer

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.trainer = None

    def save(self) -> Path | None:
        """Write the trainer's state to ``checkpoints/last.ckpt``; None when there is nothing
        to save or the run is a DDP group (saving is collective: the ranks' own regular
        checkpoints are what a requeued group resumes from)."""
        trainer = self.trainer
        if trainer is None or trainer.world_size > 1:
            return None
        path = Path(trainer.default_root_dir) / CHECKPOINT_DIR / "last.ckpt"
        trainer.save_checkpoint(path)
        return path


__all__ = ["LeaseCheck", "MetricsSnapshot", "SaveOnSignal"]
