"""A tiny DAT preset trained by the real DatLitModule/Trainer on the real shapes DataModule."""

from __future__ import annotations

import dataclasses
import math

import pytest
import pytorch_lightning as pl
import torch

from dat_lab.data import DataConfig, build_datamodule
from dat_lab.models import build_model, get_preset
from dat_lab.train.module import DatLitModule
from dat_lab.train.trainer import build_trainer, fit
from train_helpers import fast_config

PRESET = "dat_nano"  # 32 px, 4 stages of L/S and L/D blocks: the smallest real DAT


def _shapes(tmp_path) -> pl.LightningDataModule:
    cfg = DataConfig(
        name="shapes", img_size=32, batch_size=16, train_size=32, val_size=16,
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


class _Killed(Exception):
    pass


class _KillAtEpoch(pl.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise _Killed


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="dat_lab.data loaders shuffle with a private torch.Generator seeded once per "
    "train_dataloader() call; it is not in the checkpoint, so after a resume the batch order "
    "restarts from epoch 0's (verified: with a global-RNG loader this test passes). Fix on "
    "the data side: shuffle as a function of (seed, epoch), or from the global torch RNG.",
)
def test_tiny_dat_resume_on_shapes_equals_the_uninterrupted_run(tmp_path) -> None:
    data = _shapes(tmp_path)
    cfg = fast_config(epochs=2, lr=1e-3, mixup=0.8, cutmix=1.0)
    _, whole, whole_metrics = _train_dat(cfg, tmp_path / "whole", data)
    with pytest.raises(_Killed):
        _train_dat(cfg, tmp_path / "cut", _shapes(tmp_path), callbacks=(_KillAtEpoch(1),))
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    _, resumed, resumed_metrics = _train_dat(cfg, tmp_path / "cut", _shapes(tmp_path), last)
    assert resumed_metrics["train/loss"] == pytest.approx(whole_metrics["train/loss"], abs=1e-6)
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)
