"""Weight-decay groups and the warm-up + cosine schedule, checked on a real Trainer."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from train_helpers import TinyClassifier, fast_config, run_training

from dat_lab.train.optim import param_groups, warmup_cosine_lr


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def test_optimizer_decays_only_weight_matrices(tmp_path) -> None:
    run = run_training(fast_config(epochs=1, warmup_epochs=0, limit_train_batches=1), tmp_path)
    model = run.module.model
    groups = {g["name"]: g for g in run.trainer.optimizers[0].param_groups}
    assert _ids(groups["decay"]["params"]) == _ids([model.conv.weight, model.head.weight])
    assert groups["decay"]["weight_decay"] == 0.05
    expected_no_decay = [
        model.pos,
        model.conv.bias,
        model.norm.weight,
        model.norm.bias,
        model.head.bias,
    ]
    assert _ids(groups["no_decay"]["params"]) == _ids(expected_no_decay)
    assert groups["no_decay"]["weight_decay"] == 0.0


def test_norm_layers_are_excluded_whatever_their_parameter_shape() -> None:
    class MatrixNorm(nn.LayerNorm):  # a norm with a 2-D scale still counts as a norm
        pass

    model = nn.Sequential(nn.Linear(4, 6), MatrixNorm((2, 3)))
    groups = {g["name"]: g for g in param_groups(model, 0.1)}
    assert _ids(groups["decay"]["params"]) == _ids([model[0].weight])
    assert model[1].weight.ndim == 2 and id(model[1].weight) in _ids(groups["no_decay"]["params"])


def test_frozen_parameters_are_left_out() -> None:
    model = TinyClassifier(4)
    model.head.weight.requires_grad_(False)
    all_ids = set().union(*(_ids(g["params"]) for g in param_groups(model, 0.05)))
    assert id(model.head.weight) not in all_ids and id(model.conv.weight) in all_ids


def test_no_weight_decay_naming_a_missing_parameter_raises() -> None:
    model = TinyClassifier(4)
    model.no_weight_decay = lambda: {"pos", "rpb_table"}  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="rpb_table"):
        param_groups(model, 0.05)


def test_schedule_formula_at_chosen_steps() -> None:
    kw = dict(total_steps=100, warmup_steps=10, lr=1.0, warmup_lr=0.1, min_lr=0.01)
    assert warmup_cosine_lr(0, **kw) == pytest.approx(0.1)
    assert warmup_cosine_lr(5, **kw) == pytest.approx(0.55)  # half-way up
    assert warmup_cosine_lr(10, **kw) == pytest.approx(1.0)  # peak
    assert warmup_cosine_lr(55, **kw) == pytest.approx(0.505)  # cosine mid-point: (1 + .01) / 2
    assert warmup_cosine_lr(100, **kw) == pytest.approx(0.01)
    assert warmup_cosine_lr(120, **kw) == pytest.approx(0.01)  # held after the end


class _RecordLr(pl.Callback):
    """The lr each optimizer step runs with."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_trainer_steps_the_schedule_per_optimizer_step(tmp_path) -> None:
    # 4 epochs x 4 batches = 16 steps, 1 warm-up epoch = 4 steps; peak 2e-3 = 0.128 x 8 / 512.
    cfg = fast_config(
        epochs=4,
        warmup_epochs=1,
        lr=0.128,
        lr_scale_batch=512,
        warmup_lr=0.0,
        min_lr=0.0,
        limit_train_batches=4,
    )
    record = _RecordLr()
    run_training(cfg, tmp_path, callbacks=(record,))
    peak = 2e-3
    assert len(record.lrs) == 16
    assert record.lrs[0] == pytest.approx(0.0)
    assert record.lrs[2] == pytest.approx(peak / 2)
    assert record.lrs[4] == pytest.approx(peak)
    assert record.lrs[7] == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * 3 / 12)))
    assert record.lrs[10] == pytest.approx(peak / 2)
    assert record.lrs[15] == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * 11 / 12)))


def test_all_groups_follow_one_schedule(tmp_path) -> None:
    run = run_training(fast_config(epochs=1, warmup_epochs=0, limit_train_batches=2), tmp_path)
    lrs = {g["lr"] for g in run.trainer.optimizers[0].param_groups}
    assert len(lrs) == 1
    assert torch.optim.AdamW is type(run.trainer.optimizers[0])
