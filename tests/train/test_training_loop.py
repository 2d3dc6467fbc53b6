"""The LightningModule and Trainer on real (tiny) components: learning, determinism, failures."""

from __future__ import annotations

import csv
import warnings

import pytest
import torch
from train_helpers import RandomImages, TinyClassifier, fast_config, run_training

from dat_lab.train.callbacks import LineProgressBar, NonFiniteLossError
from dat_lab.train.config import TrainConfig
from dat_lab.train.module import DatLitModule
from dat_lab.train.trainer import build_trainer


def _final_weights(run) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in run.module.model.parameters()])


def test_a_few_steps_lower_the_validation_loss(tmp_path) -> None:
    cfg = fast_config(epochs=2, warmup_epochs=0)
    data = RandomImages()
    trainer = build_trainer(cfg, tmp_path)
    module = DatLitModule(TinyClassifier(4), cfg, num_classes=4)
    before = trainer.validate(module, datamodule=data, verbose=False)[0]["val/loss"]
    trainer.fit(module, datamodule=data)
    after = float(trainer.callback_metrics["val/loss"])
    assert after < 0.8 * before
    assert float(trainer.callback_metrics["val/acc1"]) > 0.5  # 4 classes: chance is 0.25


def test_same_seed_gives_identical_metrics_and_weights(tmp_path) -> None:
    cfg = fast_config(epochs=2, mixup=0.8, cutmix=1.0)  # dropout + mixing: RNG-heavy
    first = run_training(cfg, tmp_path / "a")
    second = run_training(cfg, tmp_path / "b")
    assert first.metrics == second.metrics
    assert torch.equal(_final_weights(first), _final_weights(second))
    third = run_training(fast_config(epochs=2, mixup=0.8, cutmix=1.0, seed=1), tmp_path / "c")
    assert third.metrics["train/loss"] != first.metrics["train/loss"]


def test_non_finite_loss_stops_the_run_with_its_step(tmp_path) -> None:
    data = RandomImages(shuffle=False, nan_batch=2)
    with pytest.raises(NonFiniteLossError, match=r"^non-finite loss at step 2$"):
        run_training(fast_config(), tmp_path, data=data)


def test_metrics_checkpoints_and_logs_land_in_the_run_dir(tmp_path) -> None:
    run = run_training(fast_config(epochs=2, mixup=0.8, cutmix=1.0), tmp_path)
    assert {"train/loss", "val/loss", "val/acc1", "val/acc1_best"} <= run.metrics.keys()
    assert "val/acc5" not in run.metrics  # 4 classes: top-5 would always be 1
    assert "train/acc1" not in run.metrics  # mixed targets: no training accuracy
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(n.startswith("best-epoch") for n in ckpts)
    with open(tmp_path / "logs" / "version_0" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    steps = [r for r in rows if r["train/loss"]]
    assert len(steps) == 16  # log_every_n_steps=1, 2 epochs x 8 batches
    assert {"lr-AdamW/decay", "val/acc1_best"} <= rows[0].keys()


def test_top5_and_training_accuracy_when_they_mean_something(tmp_path) -> None:
    run = run_training(
        fast_config(epochs=1), tmp_path, data=RandomImages(num_classes=10), num_classes=10
    )
    assert {"val/acc1", "val/acc5", "train/acc1"} <= run.metrics.keys()
    assert run.metrics["val/acc5"] >= run.metrics["val/acc1"]


def test_validation_best_is_the_running_max(tmp_path) -> None:
    run = run_training(fast_config(epochs=3), tmp_path)
    with open(tmp_path / "logs" / "version_0" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["val/acc1"]]
    accs = [float(r["val/acc1"]) for r in rows]
    bests = [float(r["val/acc1_best"]) for r in rows]
    assert len(rows) == 3  # the sanity check's batches are not counted
    assert bests == [max(accs[: i + 1]) for i in range(3)]
    assert run.metrics["val/acc1_best"] == max(accs)


def test_odd_batches_are_mixed_except_the_last_sample() -> None:
    module = DatLitModule(TinyClassifier(4), fast_config(mixup=0.8, cutmix=0.0), num_classes=4)
    images, labels = torch.randn(5, 3, 8, 8), torch.tensor([0, 1, 2, 3, 1])
    last = images[-1].clone()
    mixed, targets = module._mix(images, labels)
    assert targets.shape == (5, 4)
    assert torch.allclose(targets.sum(1), torch.ones(5))
    assert torch.equal(mixed[-1], last)
    smooth = 0.1
    off = smooth / 4
    assert torch.allclose(targets[-1], torch.tensor([off, 1 - smooth + off, off, off]))


def test_plain_progress_lines_when_output_is_not_a_terminal(tmp_path, capsys) -> None:
    run = run_training(fast_config(epochs=1, log_every_n_steps=4), tmp_path)
    assert any(isinstance(c, LineProgressBar) for c in run.trainer.callbacks)  # pytest: no TTY
    out = capsys.readouterr().out
    assert "epoch 1/1 batch 4/8 step 4 | train/loss=" in out
    assert "epoch 1/1 validation | " in out and "val/acc1=" in out


def test_bf16_autocast_trains_on_cpu(tmp_path) -> None:
    cfg = fast_config(epochs=1, precision="bf16-mixed", deterministic=False)
    run = run_training(cfg, tmp_path)
    assert run.trainer.precision == "bf16-mixed"
    assert torch.isfinite(torch.tensor(run.metrics["val/loss"]))


def test_gradient_clipping_is_handed_to_the_trainer(tmp_path) -> None:
    assert build_trainer(fast_config(grad_clip=1.0), tmp_path).gradient_clip_val == 1.0
    assert build_trainer(fast_config(grad_clip=0.0), tmp_path / "b").gradient_clip_val is None
    paper = build_trainer(TrainConfig(accelerator="cpu"), tmp_path / "c")
    assert (paper.gradient_clip_val, paper.gradient_clip_algorithm) == (5.0, "norm")


def test_standalone_validate_and_test_log_but_set_no_best(tmp_path) -> None:
    cfg = fast_config(epochs=1)
    trainer = build_trainer(cfg, tmp_path)
    module = DatLitModule(TinyClassifier(4), cfg, num_classes=4)
    data = RandomImages()
    validated = trainer.validate(module, datamodule=data, verbose=False)[0]
    assert "val/acc1" in validated and "val/acc1_best" not in validated
    tested = trainer.test(module, datamodule=data, verbose=False)[0]
    assert {"test/loss", "test/acc1"} <= tested.keys()
    trainer.fit(module, datamodule=data)  # metric states from validate/test do not break fit
    metrics = trainer.callback_metrics
    assert float(metrics["val/acc1_best"]) == float(metrics["val/acc1"])


def test_module_rebuilds_from_its_checkpoint(tmp_path) -> None:
    run = run_training(fast_config(epochs=1), tmp_path)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    loaded = DatLitModule.from_checkpoint(ckpt, TinyClassifier(4))
    assert loaded.train_cfg == fast_config(epochs=1) and loaded.num_classes == 4
    images = torch.randn(2, 3, 8, 8)
    run.module.eval(), loaded.eval()
    assert torch.equal(run.module(images), loaded(images))


def test_a_head_of_the_wrong_width_is_named(tmp_path) -> None:
    module = DatLitModule(TinyClassifier(2), fast_config(), num_classes=4)
    with pytest.raises(ValueError, match="gives 2 logits, the data has 4 classes"):
        module(torch.randn(2, 3, 8, 8))


def test_last_checkpoint_is_rewritten_every_epoch_even_without_a_new_best(tmp_path) -> None:
    # Epochs 0 and 2 have no validation: no new best there, yet last.ckpt must follow.
    run = run_training(fast_config(epochs=3, val_every_n_epochs=2), tmp_path)
    ckpts = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best-epoch001.ckpt", "last.ckpt"]
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["epoch"] == 2
    assert run.trainer.checkpoint_callback.monitor == "val/acc1"  # what ckpt_path="best" uses


@pytest.mark.parametrize("changes", [{"strategy": "ddp"}, {"devices": 2}])
def test_ddp_is_lightnings_strategy_chosen_by_config(tmp_path, changes) -> None:
    from pytorch_lightning.strategies import DDPStrategy, SingleDeviceStrategy

    single = build_trainer(fast_config(), tmp_path / "one")
    assert isinstance(single.strategy, SingleDeviceStrategy)
    trainer = build_trainer(fast_config(**changes), tmp_path / "ddp")  # built, not launched
    assert isinstance(trainer.strategy, DDPStrategy)
    assert trainer.num_devices == changes.get("devices", 1)


@pytest.mark.parametrize(
    "changes, best_saved",
    [
        ({"epochs": 4, "val_every_n_epochs": 2}, True),
        ({"epochs": 2, "limit_val_batches": 0}, False),
    ],
)
def test_epochs_without_validation_give_no_monitored_key_warning(
    tmp_path, changes, best_saved
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_training(fast_config(warmup_epochs=0, **changes), tmp_path)
    texts = [str(w.message) for w in caught]
    assert not [t for t in texts if "could not find the monitored key" in t], texts
    names = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert "last.ckpt" in names
    # Validated epochs 1 and 3 (0-based) are where a best checkpoint can come from.
    best = {n for n in names if n.startswith("best-epoch")}
    assert bool(best) is best_saved
    assert best <= {"best-epoch001.ckpt", "best-epoch003.ckpt"}
