"""Gradient accumulation: 4 batches of 16 make the optimizer step of one batch of 64.

Real Lightning training of dat_nano on the shapes data (no Mixup, no drop-path: nothing random
per sample), in-process, one thread, deterministic.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from tiny_runs import CPU_TRAIN

from dat_lab.data.config import DataConfig
from dat_lab.data.datamodule import build_datamodule
from dat_lab.models import build_model
from dat_lab.models.presets import get_preset
from dat_lab.schema import from_mapping
from dat_lab.train.config import TrainConfig
from dat_lab.train.module import DatLitModule
from dat_lab.train.trainer import build_trainer, fit

STEPS = 3


class Recorder(pl.Callback):
    """The summed gradient and the learning rate at each optimizer step, and the loss of
    each batch."""

    def __init__(self) -> None:
        self.grads: list[torch.Tensor] = []
        self.lrs: list[float] = []
        self.losses: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        params = [p for p in pl_module.parameters() if p.grad is not None]
        self.grads.append(torch.cat([p.grad.flatten() for p in params]).clone())
        self.lrs.append(optimizer.param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(trainer.callback_metrics["train/loss"]))


def _train(tmp_path, batch_size: int, accumulate: int) -> Recorder:
    data = from_mapping(
        DataConfig,
        {
            "name": "shapes",
            "img_size": 32,
            "batch_size": batch_size,
            "train_size": 64 * STEPS,
            "val_size": 16,
        },  # fmt: skip
    )
    train = TrainConfig.from_mapping(
        {
            **CPU_TRAIN,
            "epochs": 1,
            "lr": 1e-3,
            "lr_scale_batch": 32,
            "min_lr": 0.0,
            "warmup_lr": 0.0,
            "limit_val_batches": 0,
            "accumulate_grad_batches": accumulate,
        }  # fmt: skip
    )
    recorder = Recorder()
    datamodule = build_datamodule(data)
    trainer = build_trainer(train, tmp_path / f"b{batch_size}", extra_callbacks=[recorder])
    trainer.progress_bar_callback.disable()
    model = build_model(get_preset("dat_nano").replace(in_chans=datamodule.in_chans))
    fit(
        DatLitModule(model, train, datamodule.num_classes, batch_size=batch_size),
        datamodule,
        trainer,
    )
    return recorder


@pytest.mark.slow
@pytest.mark.usefixtures("cache", "torch_threads")
def test_four_batches_of_16_accumulated_step_like_one_batch_of_64(tmp_path):
    whole = _train(tmp_path, batch_size=64, accumulate=1)
    parts = _train(tmp_path, batch_size=16, accumulate=4)

    assert len(whole.grads) == len(parts.grads) == STEPS
    # lr scaled by the effective batch: 64 / 32 in both
    assert parts.lrs == pytest.approx(whole.lrs) and whole.lrs[0] == pytest.approx(2e-3)
    for step, (g64, g16) in enumerate(zip(whole.grads, parts.grads, strict=True)):
        torch.testing.assert_close(g16, g64, rtol=1e-4, atol=1e-6, msg=f"gradient of step {step}")
    # The loss of each batch of 64 is the mean of its four quarters' losses.
    quarters = torch.tensor(parts.losses).view(STEPS, 4).mean(dim=1)
    torch.testing.assert_close(quarters, torch.tensor(whole.losses), rtol=1e-5, atol=1e-6)
    assert len(set(whole.losses)) == STEPS  # the weights moved between steps
