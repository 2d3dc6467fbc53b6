"""Real Lightning fits of a tiny classifier that records which samples it trained on.

The recorded identity of a sample is the hash of its pixels (see ``digit_forms``), so the
datasets' train transform is swapped for :func:`pixels` (timm's random crops would change
them); what is under test is the reader, its sharding over workers and ranks, and the epochs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from digit_forms import SIDE, fingerprint
from torch import nn

from dat_lab.data import DataConfig, build_datamodule


def pixels(image) -> torch.Tensor:
    """A PIL image as uint8 (H, W, 3): its pixels unchanged."""
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy())


def to_uint8_hwc(x: torch.Tensor, mean_std) -> np.ndarray:
    """A batch back to uint8 (B, H, W, 3): as is, or un-normalised (CIFAR's ArrayDataset)."""
    if x.dtype == torch.uint8:
        return x.numpy()
    mean = torch.tensor(mean_std[0]).view(1, -1, 1, 1)
    std = torch.tensor(mean_std[1]).view(1, -1, 1, 1)
    return ((x * std + mean) * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


class Recorder(pl.LightningModule):
    """A linear classifier on the pixels; writes (fingerprint, label) of every training
    sample to ``out/rank<R>-epoch<E>.json``."""

    def __init__(self, out: Path, mean_std, side: int = SIDE, num_classes: int = 10):
        super().__init__()
        self.out = Path(out)
        self.mean_std = mean_std
        self.linear = nn.Linear(3 * side * side, num_classes)
        self.seen: list[tuple[str, int]] = []
        self.losses: list[float] = []

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        images = torch.from_numpy(to_uint8_hwc(x, self.mean_std)).float() / 255
        return self.linear(images.flatten(1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        for image, label in zip(to_uint8_hwc(x, self.mean_std), y.tolist(), strict=True):
            self.seen.append((fingerprint(image), int(label)))
        loss = nn.functional.cross_entropy(self._logits(x), y)
        self.losses.append(float(loss.detach()))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self._logits(x), y)

    def on_train_epoch_end(self) -> None:
        name = f"rank{self.global_rank}-epoch{self.current_epoch}.json"
        (self.out / name).write_text(json.dumps({"seen": self.seen, "losses": self.losses}))
        self.seen, self.losses = [], []

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def pixel_datamodule(cfg: DataConfig):
    """The DataModule of ``cfg`` whose train set yields untouched pixels."""
    dm = build_datamodule(cfg)
    dm.setup("fit")
    if hasattr(dm.train_set, "augment"):  # CIFAR: no crop, no flip
        dm.train_set.augment = False
    else:
        dm.train_set.transform = pixels
        dm.val_set.transform = pixels
    return dm


def fit_and_record(cfg: DataConfig, out: Path, epochs: int = 2, devices: int = 1) -> list[dict]:
    """Fit ``epochs`` epochs on ``devices`` CPU processes (ddp_fork, gloo, when 2); return
    the records of each (rank, epoch), sorted by name."""
    out.mkdir(parents=True, exist_ok=True)
    dm = pixel_datamodule(cfg) if devices == 1 else _SpawnedPixels(cfg)
    side = cfg.img_size if cfg.name.startswith("cifar") else SIDE
    module = Recorder(out, dm.mean_std, side, dm.num_classes)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=devices,
        strategy="ddp_fork" if devices > 1 else "auto",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=dm)
    return [json.loads(p.read_text()) for p in sorted(out.glob("rank*-epoch*.json"))]


class _SpawnedPixels(pl.LightningDataModule):
    """The DataModule built again in each forked rank (iterable readers need the group)."""

    def __init__(self, cfg: DataConfig):
        super().__init__()
        self.cfg = cfg
        probe = build_datamodule(cfg)
        self.mean_std, self.num_classes = probe.mean_std, probe.num_classes
        self.inner = None

    def setup(self, stage=None):
        self.inner = build_datamodule(self.cfg)
        self.inner.trainer = self.trainer
        self.inner.setup(stage)
        self.inner.train_set.transform = pixels
        self.inner.val_set.transform = pixels

    def train_dataloader(self):
        return self.inner.train_dataloader()

    def val_dataloader(self):
        return self.inner.val_dataloader()
