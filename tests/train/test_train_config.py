"""TrainConfig: paper defaults, strict validation, lr scaling."""

from __future__ import annotations

import pytest
import torch
from train_helpers import TinyClassifier, fast_config

from dat_lab.schema import ConfigError, from_mapping, to_mapping
from dat_lab.train.config import TrainConfig
from dat_lab.train.module import DatLitModule
from dat_lab.train.trainer import build_trainer


def test_defaults_are_the_papers_recipe() -> None:
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.warmup_epochs, cfg.lr, cfg.lr_scale_batch) == (300, 20, 5e-4, 512)
    assert (cfg.weight_decay, cfg.grad_clip, cfg.label_smoothing) == (0.05, 5.0, 0.1)
    assert (cfg.mixup, cfg.cutmix) == (0.8, 1.0)


def test_round_trips_through_plain_data() -> None:
    cfg = fast_config(betas=(0.8, 0.99), limit_train_batches=0.5)
    assert TrainConfig.from_mapping(to_mapping(cfg)) == cfg


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        ({"epochs": 10, "warmup_epochs": 11}, "warmup_epochs", "between 0 and epochs (10)"),
        ({"lr": 0}, "lr", "must be > 0"),
        ({"lr": -1e-3}, "lr", "must be > 0"),
        ({"min_lr": 1.0}, "min_lr", "[0, lr]"),
        ({"warmup_lr": 1.0}, "warmup_lr", "[0, lr]"),
        ({"lr_scale_batch": 0}, "lr_scale_batch", ">= 1"),
        ({"betas": [0.9, 1.0]}, "betas.1", "[0, 1)"),
        ({"eps": 0}, "eps", "> 0"),
        ({"grad_clip": -1}, "grad_clip", ">= 0"),
        ({"label_smoothing": 1.0}, "label_smoothing", "[0, 1)"),
        ({"mixup": -0.1}, "mixup", ">= 0"),
        ({"mixup_prob": 1.5}, "mixup_prob", "[0, 1]"),
        ({"mixup_mode": "pixel"}, "mixup_mode", "'batch'"),
        ({"precision": "fp16"}, "precision", "'bf16-mixed'"),
        ({"precision": "16-mixed", "accelerator": "cpu"}, "precision", "needs a GPU"),
        ({"devices": 0}, "devices", ">= 1"),
        ({"seed": -1}, "seed", "[0, 2**32)"),
        ({"limit_train_batches": 0}, "limit_train_batches", ">= 1"),
        ({"limit_val_batches": 1.5}, "limit_val_batches", "(0, 1]"),
        ({"ckpt_every_n_steps": 0}, "ckpt_every_n_steps", ">= 1"),
        ({"threads": 0}, "threads", ">= 1"),
        ({"lr_schedule": "cosine"}, "lr_schedule", "unknown key"),
        ({"epochs": "ten"}, "epochs", "expected an integer"),
    ],
)
def test_bad_values_raise_config_error_naming_file_and_key(changes, key, words) -> None:
    with pytest.raises(ConfigError) as info:
        from_mapping(TrainConfig, changes, prefix="train", file="exp.yaml")
    err = info.value
    assert (err.file, err.key) == ("exp.yaml", f"train.{key}")
    assert words in err.message


def test_limits_accept_counts_and_fractions() -> None:
    cfg = from_mapping(TrainConfig, {"limit_train_batches": 3, "limit_val_batches": 0.25})
    assert (cfg.limit_train_batches, cfg.limit_val_batches) == (3, 0.25)
    assert isinstance(cfg.limit_train_batches, int)


def test_one_class_cannot_be_mixed_or_trained() -> None:
    with pytest.raises(ConfigError, match="at least 2 classes") as info:
        DatLitModule(TinyClassifier(1), fast_config(mixup=0.8), num_classes=1, batch_size=8)
    assert info.value.key == "mixup"


def test_lr_is_scaled_by_global_batch_over_reference() -> None:
    cfg = TrainConfig(lr=5e-4, warmup_lr=5e-7, min_lr=5e-6, lr_scale_batch=512)
    assert cfg.scaled_lrs(128) == pytest.approx((1.25e-4, 1.25e-7, 1.25e-6))
    assert fast_config().scaled_lrs(None) == (3e-3, 1e-4, 1e-5)  # lr_scale_batch null: as written


def test_scaling_without_a_batch_size_fails_at_construction() -> None:
    with pytest.raises(ConfigError, match="needs the batch size") as info:
        DatLitModule(TinyClassifier(4), fast_config(lr_scale_batch=512), num_classes=4)
    assert info.value.key == "lr_scale_batch"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
def test_fp16_amp_without_a_gpu_is_refused_not_silently_bf16(tmp_path) -> None:
    with pytest.raises(ConfigError, match="needs one; use 'bf16-mixed'") as info:
        build_trainer(fast_config(accelerator="auto", precision="16-mixed"), tmp_path)
    assert info.value.key == "precision"


def test_threads_setting_reaches_torch(tmp_path) -> None:
    before = torch.get_num_threads()
    try:
        build_trainer(fast_config(threads=1), tmp_path)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
