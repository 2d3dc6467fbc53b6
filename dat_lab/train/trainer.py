"""Build the ``pl.Trainer`` of a run from its TrainConfig, and fit/resume.

A run directory gets::

    run_dir/checkpoints/last.ckpt          every epoch end (and every ckpt_every_n_steps)
    run_dir/checkpoints/best-epochNNN.ckpt  the best val/acc1 so far
    run_dir/logs/version_K/metrics.csv     one CSVLogger folder per attempt (K = 0, 1, ...)
    run_dir/logs/tensorboard/version_K/    with ``train.loggers: [tensorboard]``
    run_dir/logs/mlruns/, logs/wandb/      with ``mlflow`` / ``wandb`` (see loggers.py)

Each attempt (first start, then each resume) logs into a new ``version_K`` because
Lightning's CSVLogger deletes an existing metrics.csv; rows of an earlier attempt past the
checkpoint it was resumed from are superseded by the later attempt's rows of the same step.

Exact resume: from an end-of-epoch or a mid-epoch ``last.ckpt`` a resumed run equals the
uninterrupted one (weights, optimizer, scheduler, loops, AMP scaler by Lightning; global RNGs by
:class:`RngStateCheckpoint`; the training epoch's running loss by the module), provided the
training loader's order is restorable. dat-lab's DataModules make it so
(:mod:`dat_lab.data.sampling`): the order is a function of (seed, epoch) and the position within
the epoch is checkpointed. Any other loader must either shuffle from the global torch RNG or
via a sampler's ``set_epoch`` (exact at epoch ends); from a mid-epoch checkpoint Lightning then
restarts a plain loader at the start of the epoch and ends the epoch after the remaining
number of batches, so the batches seen in that epoch differ (Lightning warns).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.callbacks import (
    Callback,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)

from dat_lab.schema import ConfigError
from dat_lab.train.callbacks import LineProgressBar, NonFiniteLossStop, RngStateCheckpoint
from dat_lab.train.checkpoint_io import AtomicCheckpointIO
from dat_lab.train.config import TrainConfig
from dat_lab.train.loggers import RunTags, build_loggers

CHECKPOINT_DIR = "checkpoints"
VAL_TOP1 = "val/acc1"  # what DatLitModule logs, checkpoints monitor and reports read
VAL_TOP1_BEST = "val/acc1_best"
SRUN_UNUSED = r"The `srun` command is available"  # Lightning, wherever SLURM is installed


def seed_run(train_cfg: TrainConfig) -> None:
    """Seed python/numpy/torch (and dataloader workers) and set the CPU thread count."""
    pl.seed_everything(train_cfg.seed, workers=True, verbose=False)
    if train_cfg.threads is not None:
        torch.set_num_threads(train_cfg.threads)


def _check_precision(train_cfg: TrainConfig) -> None:
    """Refuse fp16 AMP without a GPU: Lightning would silently switch it to bf16."""
    gpu = train_cfg.accelerator == "gpu" or (
        train_cfg.accelerator == "auto" and torch.cuda.is_available()
    )
    if train_cfg.precision == "16-mixed" and not gpu:
        raise ConfigError(
            "got '16-mixed' but no GPU will be used: fp16 AMP needs one; use 'bf16-mixed'",
            "precision",
        )


def _latest_checkpoint(
    ckpt_dir: Path,
    every_n_epochs: int | None = None,
    every_n_train_steps: int | None = None,
    save_on_train_epoch_end: bool | None = None,
) -> ModelCheckpoint:
    """A rolling ``last.ckpt``, rewritten at every trigger (``every_n_epochs``/``_train_steps``).

    Not ``save_last=True``: since Lightning 2.6 that writes last.ckpt only when a top-k
    checkpoint is written too, so with a monitored metric an epoch that does not improve it
    would leave last.ckpt stale.
    """
    return ModelCheckpoint(
        dirpath=ckpt_dir,
        filename=ModelCheckpoint.CHECKPOINT_NAME_LAST,
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,  # overwrite, never last-v1.ckpt
        every_n_epochs=every_n_epochs,
        every_n_train_steps=every_n_train_steps,
        save_on_train_epoch_end=save_on_train_epoch_end,
    )


def validates(train_cfg: TrainConfig) -> bool:
    """Whether the run validates at all (``limit_val_batches: 0`` turns validation off)."""
    return train_cfg.limit_val_batches != 0


def _best_checkpoint(ckpt_dir: Path, val_every_n_epochs: int) -> ModelCheckpoint:
    """The best ``val/acc1`` so far, looked at only at the ends of epochs that validate.

    Lightning validates at the end of epoch e (0-based) when ``(e + 1) % val_every_n_epochs
    == 0``, and a ModelCheckpoint with ``every_n_epochs`` looks at the same epochs; looking
    at the others would find no ``val/acc1`` and warn (``could not find the monitored key``)
    on every one of them.
    """
    return ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best-epoch{epoch:03d}",
        auto_insert_metric_name=False,  # the metric name holds a "/"
        monitor=VAL_TOP1,
        mode="max",
        save_top_k=1,
        every_n_epochs=val_every_n_epochs,
        save_on_train_epoch_end=True,
    )


def build_callbacks(train_cfg: TrainConfig, run_dir: Path) -> list[Callback]:
    """Checkpoints, lr monitor, progress, non-finite stop and RNG checkpointing."""
    ckpt_dir = run_dir / CHECKPOINT_DIR
    callbacks: list[Callback] = [
        # Saved at each train-epoch end, after that epoch's validation (if any) has run, so
        # last.ckpt is written every epoch even when val_every_n_epochs > 1.
        _latest_checkpoint(ckpt_dir, every_n_epochs=1, save_on_train_epoch_end=True),
        LearningRateMonitor(logging_interval="step"),
        NonFiniteLossStop(),
        RngStateCheckpoint(),
        TQDMProgressBar() if sys.stderr.isatty() else LineProgressBar(train_cfg.log_every_n_steps),
    ]
    if validates(train_cfg):
        callbacks.insert(0, _best_checkpoint(ckpt_dir, train_cfg.val_every_n_epochs))
    if train_cfg.ckpt_every_n_steps is not None:
        callbacks.append(
            _latest_checkpoint(ckpt_dir, every_n_train_steps=train_cfg.ckpt_every_n_steps)
        )
    return callbacks


def build_trainer(
    train_cfg: TrainConfig,
    run_dir: Path,
    extra_callbacks: Iterable[Callback] = (),
    tags: RunTags | None = None,
) -> pl.Trainer:
    """The Trainer of one run; seeds the run first (build the model after this call).

    ``tags`` name the run in the trackers of ``train.loggers`` (default: the run directory's
    name as its run id)."""
    _check_precision(train_cfg)
    seed_run(train_cfg)
    run_dir = Path(run_dir)
    clip = train_cfg.grad_clip or None  # 0 and None both mean "off"
    under_slurm = _under_slurm()
    with warnings.catch_warnings():
        # A local run on a machine with SLURM installed: Lightning would warn on every run
        # that srun "is available but not used"; here that is deliberate.
        warnings.filterwarnings("ignore", message=SRUN_UNUSED)
        return _trainer(train_cfg, run_dir, clip, under_slurm, extra_callbacks, tags)


def _trainer(
    train_cfg: TrainConfig,
    run_dir: Path,
    clip: float | None,
    under_slurm: bool,
    extra_callbacks: Iterable[Callback],
    tags: RunTags | None,
) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=run_dir,
        max_epochs=train_cfg.epochs,
        accelerator=train_cfg.accelerator,
        devices=train_cfg.devices,
        num_nodes=train_cfg.num_nodes,
        strategy="ddp" if train_cfg.distributed else "auto",
        accumulate_grad_batches=train_cfg.accumulate_grad_batches,
        precision=train_cfg.precision,
        deterministic=train_cfg.deterministic,
        gradient_clip_val=clip,
        gradient_clip_algorithm="norm",
        log_every_n_steps=train_cfg.log_every_n_steps,
        limit_train_batches=train_cfg.limit_train_batches,
        limit_val_batches=train_cfg.limit_val_batches,
        check_val_every_n_epoch=train_cfg.val_every_n_epochs,
        # no_grad, not inference_mode, for validate/test: metric states reset under
        # inference_mode become inference tensors that a later fit cannot update in place.
        inference_mode=False,
        logger=build_loggers(train_cfg.loggers, run_dir, tags),
        plugins=[AtomicCheckpointIO(), *_cluster_plugins(under_slurm)],  # see checkpoint_io.py
        callbacks=[*build_callbacks(train_cfg, run_dir), *extra_callbacks],
    )


def _under_slurm() -> bool:
    """Whether this process is a task that SLURM started with srun (Lightning's test)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=SRUN_UNUSED)
        return SLURMEnvironment.detect()


def _cluster_plugins(under_slurm: bool) -> list[Any]:
    """Under SLURM: Lightning's SLURM environment (ranks, nodes, master address from SLURM)
    without its auto-requeue; dat-lab's SLURM jobs requeue through submitit
    (``dat_lab.launchers.slurm``), and two handlers of one signal would fight."""
    return [SLURMEnvironment(auto_requeue=False)] if under_slurm else []


def fit(
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    trainer: pl.Trainer,
    ckpt_path: str | Path | None = None,
) -> dict[str, float]:
    """Fit (or resume from ``ckpt_path``, which may also be ``"last"``); return the final metrics.

    The checkpoint is read with ``weights_only=True``. Resuming restores weights, optimizer,
    scheduler, loop counters, the AMP scaler and (through RngStateCheckpoint) the global RNGs.
    """
    path: Any = str(ckpt_path) if isinstance(ckpt_path, Path) else ckpt_path
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=SRUN_UNUSED)  # fit asks SLURM again
        trainer.fit(module, datamodule=datamodule, ckpt_path=path, weights_only=True)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}
