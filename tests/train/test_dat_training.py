"""A tiny DAT preset trained by the real DatLitModule/Trainer on the real shapes DataModule."""

from __future__ import annotations

import dataclasses
import math

import pytest
import pytorch_lightning as pl
import torch
from train_helpers import fast_config

from dat_lab.data import DataConfig, build_datamodule
from dat_lab.models import build_model, get_preset
from dat_lab.train.module import DatLitModule
from dat_lab.train.trainer import build_trainer, fit

PRESET = "dat_nano"  # 32 px, 4 stages of L/S and L/D blocks: the smallest real DAT


def _shapes(tmp_path, train_size: int = 32) -> pl.LightningDataModule:
    cfg = DataConfig(
        name="shapes",
        img_size=32,
        batch_size=16,
        train_size=train_size,
        val_size=16,
        cache_dir=tmp_path / "cache",
    )
    return build_datamodule(cfg)


def _train_dat(cfg, run_dir, data, ckpt_path=None, callbacks=()):
    trainer = build_trainer(cfg, run_dir, extra_callbacks=callbacks)
    model_cfg = dataclasses.replace(
        get_preset(PRESET), in_chans=data.in_chans, num_classes=data.num_classes
    )
    module = DatLitModule(build_model(model_cfg), cfg, data.num_classes, batch_size=16)
    return trainer, module, fit(module, data, trainer, ckpt_path=ckpt_path)


def test_tiny_dat_trains_on_shapes_with_the_paper_recipe(tmp_path) -> None:
    data = _shapes(tmp_path)
    cfg = fast_config(epochs=2, lr=1e-3, mixup=0.8, cutmix=1.0)  # mixing, smoothing, clipping on
    trainer, module, metrics = _train_dat(cfg, tmp_path / "run", data)
    assert trainer.global_step == 4  # 2 epochs x 32 / 16
    assert all(math.isfinite(v) for v in metrics.values())
    assert {"val/acc1", "val/acc1_best", "val/loss"} <= metrics.keys()
    no_decay = next(g for g in trainer.optimizers[0].param_groups if g["name"] == "no_decay")
    tables = [p for n, p in module.model.named_parameters() if n in module.model.no_weight_decay()]
    assert tables and {id(p) for p in tables} <= {id(p) for p in no_decay["params"]}
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def _loss_on(module: DatLitModule, images: torch.Tensor, labels: torch.Tensor) -> float:
    module.eval()
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(module(images), labels))


@pytest.mark.parametrize(
    "data_cfg",
    [
        dict(name="shapes", train_size=64, val_size=16),
        dict(name="digits"),
    ],
    ids=["shapes", "digits"],
)
def test_a_few_steps_lower_the_loss_on_each_bundled_dataset(tmp_path, data_cfg) -> None:
    cache = {"cache_dir": tmp_path / "cache"} if data_cfg["name"] == "shapes" else {}
    data = build_datamodule(DataConfig(img_size=32, batch_size=16, **data_cfg, **cache))
    data.setup("fit")
    images, labels = next(iter(data.train_dataloader()))  # one fixed training batch
    cfg = fast_config(
        epochs=1, warmup_epochs=0, lr=2e-3, limit_train_batches=8, limit_val_batches=1
    )
    trainer = build_trainer(cfg, tmp_path / "run")
    model_cfg = dataclasses.replace(
        get_preset(PRESET), in_chans=data.in_chans, num_classes=data.num_classes
    )
    module = DatLitModule(build_model(model_cfg), cfg, data.num_classes, batch_size=16)
    before = _loss_on(module, images, labels)
    fit(module, data, trainer)
    assert trainer.global_step == min(8, len(data.train_dataloader()))
    # Deterministic CPU run: shapes 0.72 -> 0.69, digits 2.24 -> 2.05 when written.
    assert _loss_on(module, images, labels) < before - 0.02


class _Killed(Exception):
    pass


class _KillAt(pl.Callback):
    """Raise at the start of an epoch or before an optimizer step: a crash of the run."""

    def __init__(self, epoch: int | None = None, step: int | None = None) -> None:
        self.epoch, self.step = epoch, step

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise _Killed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise _Killed


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill",
    [_KillAt(epoch=1), _KillAt(step=4)],  # after epoch 0's checkpoint; mid-epoch 1 (step ckpt)
    ids=["epoch_end", "mid_epoch"],
)
def test_tiny_dat_resume_on_shapes_equals_the_uninterrupted_run(tmp_path, kill) -> None:
    # 48 images / 16 = 3 batches an epoch; last.ckpt every 2 steps and every epoch end.
    cfg = fast_config(epochs=2, lr=1e-3, mixup=0.8, cutmix=1.0, ckpt_every_n_steps=2)
    data = dict(train_size=48)
    _, whole, whole_metrics = _train_dat(cfg, tmp_path / "whole", _shapes(tmp_path, **data))
    with pytest.raises(_Killed):
        _train_dat(cfg, tmp_path / "cut", _shapes(tmp_path, **data), callbacks=(kill,))
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    stopped_at = torch.load(last, weights_only=True)["global_step"]
    assert stopped_at == (3 if kill.epoch else 4)
    trainer, resumed, resumed_metrics = _train_dat(
        cfg, tmp_path / "cut", _shapes(tmp_path, **data), last
    )
    assert trainer.global_step == 6
    for key in ("train/loss", "train/loss_epoch", "val/loss", "val/acc1"):
        assert resumed_metrics[key] == pytest.approx(whole_metrics[key], abs=1e-6), key
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)
