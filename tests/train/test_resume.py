"""Kill and resume: an end-of-epoch resume equals the uninterrupted run, RNG included."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from train_helpers import fast_config, run_training

from dat_lab.schema import to_mapping
from dat_lab.train.callbacks import RngStateCheckpoint
from dat_lab.train.config import TrainConfig

# Dropout and Mixup/CutMix (numpy RNG) and shuffling (torch RNG) all draw random numbers.
CFG = fast_config(epochs=3, mixup=0.8, cutmix=1.0)


class Killed(Exception):
    """Stands in for a crash or a kill of the training process."""


class KillAt(pl.Callback):
    def __init__(self, epoch: int | None = None, step: int | None = None) -> None:
        self.epoch, self.step = epoch, step

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise Killed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise Killed


class RecordBestAtStart(pl.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.best = float(pl_module.val_acc1_best.max_value)


def _weights(run) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in run.module.model.parameters()])


def _drop_rng_callback(trainer: pl.Trainer) -> None:
    trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, RngStateCheckpoint)]


def _kill_then_resume(
    run_dir, cfg=CFG, kill=None, edit_trainer=None, ckpt="checkpoints/last.ckpt"
):
    with pytest.raises(Killed):
        run_training(cfg, run_dir, callbacks=(kill or KillAt(epoch=2),), edit_trainer=edit_trainer)
    record = RecordBestAtStart()
    ckpt_path = ckpt if ckpt == "last" else run_dir / ckpt
    resumed = run_training(
        cfg, run_dir, ckpt_path=ckpt_path, callbacks=(record,), edit_trainer=edit_trainer
    )
    return resumed, record


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return run_training(CFG, tmp_path_factory.mktemp("whole"))


def test_resume_at_an_epoch_end_equals_the_uninterrupted_run(tmp_path, uninterrupted) -> None:
    resumed, record = _kill_then_resume(tmp_path)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["global_step"] == 24  # overwritten by the resumed run
    assert resumed.trainer.global_step == uninterrupted.trainer.global_step == 24
    for key in ("train/loss", "train/loss_epoch", "val/loss", "val/acc1", "val/acc1_best"):
        assert resumed.metrics[key] == pytest.approx(uninterrupted.metrics[key], abs=1e-6), key
    assert torch.allclose(_weights(resumed), _weights(uninterrupted), atol=1e-6, rtol=0)
    assert record.best > 0  # the best-so-far came back from the checkpoint, not -inf
    assert (tmp_path / "logs" / "version_1" / "metrics.csv").is_file()  # one folder per attempt


def test_without_the_rng_states_the_resume_diverges(tmp_path, uninterrupted) -> None:
    resumed, _ = _kill_then_resume(tmp_path, edit_trainer=_drop_rng_callback)
    assert abs(resumed.metrics["train/loss"] - uninterrupted.metrics["train/loss"]) > 1e-4


def test_checkpoint_is_plain_data_with_configs_and_rng(tmp_path) -> None:
    run_training(fast_config(epochs=1), tmp_path)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    hparams = ckpt["hyper_parameters"]
    assert TrainConfig.from_mapping(hparams["train_cfg"]) == fast_config(epochs=1)
    assert hparams["train_cfg"] == to_mapping(fast_config(epochs=1))
    assert (hparams["num_classes"], hparams["batch_size"]) == (4, 8)
    assert {"python", "numpy", "torch"} <= ckpt["rng_states"].keys()
    assert "val_acc1_best.max_value" in ckpt["state_dict"]
    assert any(k.startswith("model.") for k in ckpt["state_dict"])


def test_mid_epoch_checkpoint_resumes_to_the_end(tmp_path) -> None:
    cfg = fast_config(epochs=3, ckpt_every_n_steps=4)
    with pytest.warns(UserWarning, match="dataloader is not resumable"):
        resumed, _ = _kill_then_resume(tmp_path, cfg, kill=KillAt(step=14), ckpt="last")
    assert resumed.trainer.global_step == 24
    assert resumed.trainer.current_epoch == 3
