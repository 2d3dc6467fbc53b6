"""Small real components for the training tests: a tiny classifier, a random-tensor DataModule.

Imported by the tests as ``train_helpers`` (pytest puts this folder on sys.path).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dat_lab.train.config import TrainConfig
from dat_lab.train.loggers import RunTags
from dat_lab.train.module import DatLitModule
from dat_lab.train.trainer import build_trainer, fit

IMG = 8
CHANNELS = 3


class TinyClassifier(nn.Module):
    """conv -> LayerNorm -> dropout -> linear, plus a learned 2-D "position table" on the input.

    Dropout makes the RNG matter (resume/determinism tests); ``pos`` stands in for DAT's
    relative-position tables (2-D, must not be decayed, listed by ``no_weight_decay``).
    """

    def __init__(self, num_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(IMG, IMG))
        self.conv = nn.Conv2d(CHANNELS, 8, 3, padding=1)
        self.norm = nn.LayerNorm(8 * IMG * IMG)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(8 * IMG * IMG, num_classes)

    def no_weight_decay(self) -> set[str]:
        return {"pos"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x + self.pos)  # (B, 8, H, W)
        return self.head(self.drop(torch.relu(self.norm(x.flatten(1)))))


class RandomImages(pl.LightningDataModule):
    """Learnable random data: each class adds its own fixed pattern to Gaussian noise.

    The tensors come from a private generator, so the data never depends on the global RNG;
    the training loader shuffles with the global RNG (what a real loader does). ``nan_batch``
    fills one training batch (index in the unshuffled order) with NaN.
    """

    def __init__(
        self,
        num_classes: int = 4,
        n_train: int = 64,
        n_val: int = 32,
        batch_size: int = 8,
        shuffle: bool = True,
        nan_batch: int | None = None,
    ) -> None:
        super().__init__()
        self.num_classes, self.batch_size, self.shuffle = num_classes, batch_size, shuffle
        gen = torch.Generator().manual_seed(1234)
        patterns = torch.randn(num_classes, CHANNELS, IMG, IMG, generator=gen)

        def make(n: int) -> TensorDataset:
            labels = torch.randint(0, num_classes, (n,), generator=gen)
            images = patterns[labels] + 1.5 * torch.randn(n, CHANNELS, IMG, IMG, generator=gen)
            return TensorDataset(images, labels)

        self.train_set, self.val_set = make(n_train), make(n_val)
        if nan_batch is not None:
            start = nan_batch * batch_size
            self.train_set.tensors[0][start : start + batch_size] = float("nan")

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=self.shuffle)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)

    test_dataloader = val_dataloader


# A quick CPU recipe: no lr scaling, short warm-up, deterministic, no clutter.
FAST = TrainConfig(
    epochs=3,
    warmup_epochs=1,
    lr=3e-3,
    lr_scale_batch=None,
    warmup_lr=1e-4,
    min_lr=1e-5,
    mixup=0.0,
    cutmix=0.0,
    accelerator="cpu",
    deterministic=True,
    log_every_n_steps=1,
)


def fast_config(**changes: Any) -> TrainConfig:
    return dataclasses.replace(FAST, **changes)


@dataclasses.dataclass
class Run:
    trainer: pl.Trainer
    module: DatLitModule
    metrics: dict[str, float]


def run_training(
    cfg: TrainConfig,
    run_dir: Path,
    data: pl.LightningDataModule | None = None,
    num_classes: int = 4,
    dropout: float = 0.2,
    ckpt_path: str | Path | None = None,
    callbacks: tuple = (),
    edit_trainer: Callable[[pl.Trainer], None] | None = None,
    tags: RunTags | None = None,
) -> Run:
    """The engine's order: trainer (seeds), then model, then module, then fit."""
    data = data or RandomImages(num_classes=num_classes)
    trainer = build_trainer(cfg, run_dir, extra_callbacks=callbacks, tags=tags)
    if edit_trainer is not None:
        edit_trainer(trainer)
    module = DatLitModule(TinyClassifier(num_classes, dropout), cfg, num_classes, batch_size=8)
    metrics = fit(module, data, trainer, ckpt_path=ckpt_path)
    return Run(trainer, module, metrics)
