"""DatLitModule: the LightningModule that trains any image classifier with the DAT recipe.

The network is a plain ``nn.Module`` built outside (``dat_lab.models.build_model``); this
module owns the loss, Mixup/CutMix, metrics and the optimiser. One :meth:`model_step` serves
every split.

Logged keys (``split`` in train/val/test):
- ``train/loss`` every logged step, ``train/loss_epoch`` the epoch mean;
  ``train/acc1`` only when Mixup/CutMix is off (with mixed targets it means nothing);
- ``val/loss`` (plain cross-entropy, no smoothing), ``val/acc1``, ``val/acc1_best`` (max so
  far, restored on resume), and ``val/acc5`` only when ``num_classes > 5``: with 5 classes or
  fewer top-5 accuracy is always 1 and would only clutter tables. Same for ``test/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.types import OptimizerLRSchedulerConfig
from timm.data import Mixup
from timm.data.mixup import mixup_target
from timm.loss import SoftTargetCrossEntropy
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from dat_lab.schema import to_mapping
from dat_lab.train.config import TrainConfig
from dat_lab.train.optim import param_groups, warmup_cosine_scheduler

SPLITS = ("train", "val", "test")


def logged_top_k(num_classes: int) -> tuple[int, ...]:
    """The top-k accuracies logged for a ``num_classes``-way task: (1, 5) or (1,)."""
    return (1, 5) if num_classes > 5 else (1,)


def _accuracies(num_classes: int) -> MetricCollection:
    # average="micro": the usual "fraction of samples right" (torchmetrics' default is macro).
    return MetricCollection(
        {
            f"acc{k}": MulticlassAccuracy(num_classes=num_classes, top_k=k, average="micro")
            for k in logged_top_k(num_classes)
        }
    )


class DatLitModule(pl.LightningModule):
    """Train/validate/test an image classifier ``(B, C, H, W) -> (B, num_classes)``.

    Args:
        model: the network (kept as ``self.model``; its state_dict keys get ``model.``).
        train_cfg: the recipe; stored in the checkpoint's hyper-parameters as plain data.
        num_classes: number of classes of the data (>= 2).
        batch_size: per-device training batch size; needed when ``train_cfg.lr_scale_batch``
            is set (lr x batch x world_size / lr_scale_batch).
    """

    def __init__(
        self,
        model: nn.Module,
        train_cfg: TrainConfig,
        num_classes: int,
        batch_size: int | None = None,
    ) -> None:
        super().__init__()
        train_cfg.check_num_classes(num_classes)
        if train_cfg.lr_scale_batch is not None:
            train_cfg.scaled_lrs(batch_size)  # raises now, not at fit time, when it is missing
        # Keys named after the arguments, as plain data: the checkpoint loads with
        # weights_only=True, and from_checkpoint() rebuilds the module from them.
        self.save_hyperparameters(
            {
                "train_cfg": to_mapping(train_cfg),
                "num_classes": num_classes,
                "batch_size": batch_size,
            }
        )
        self.model = model
        self.train_cfg = train_cfg
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.mixup = self._build_mixup() if train_cfg.mixing else None
        self.train_criterion: nn.Module = (
            SoftTargetCrossEntropy()
            if self.mixup is not None
            else nn.CrossEntropyLoss(label_smoothing=train_cfg.label_smoothing)
        )
        self.eval_criterion = nn.CrossEntropyLoss()
        # ModuleDict keys cannot be "train" (nn.Module.train exists): "<split>_split".
        self.losses = nn.ModuleDict({f"{s}_split": MeanMetric() for s in SPLITS})
        self.accuracies = nn.ModuleDict({f"{s}_split": _accuracies(num_classes) for s in SPLITS})
        # The training epoch's running sums go into checkpoints, so an epoch resumed from a
        # mid-epoch checkpoint reports the same epoch mean as the uninterrupted run.
        self._loss("train").persistent(True)
        self._accuracy("train").persistent(True)
        self.val_acc1_best = MaxMetric()
        self.val_acc1_best.persistent(True)  # in state_dict, so a resume keeps the best so far

    @classmethod
    def from_checkpoint(cls, path: str | Path, model: nn.Module) -> DatLitModule:
        """Rebuild a module from a checkpoint of this class, weights included.

        ``model`` is a freshly built network of the checkpoint's architecture (the module does
        not know how to build it); its weights are replaced by the checkpoint's, strictly.
        """
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        hparams = ckpt["hyper_parameters"]
        module = cls(
            model,
            TrainConfig.from_mapping(hparams["train_cfg"], prefix="train_cfg", file=path),
            num_classes=hparams["num_classes"],
            batch_size=hparams["batch_size"],
        )
        module.load_state_dict(ckpt["state_dict"], strict=True)
        return module

    def _build_mixup(self) -> Mixup:
        cfg = self.train_cfg
        return Mixup(
            mixup_alpha=cfg.mixup,
            cutmix_alpha=cfg.cutmix,
            prob=cfg.mixup_prob,
            switch_prob=cfg.mixup_switch_prob,
            mode=cfg.mixup_mode,
            label_smoothing=cfg.label_smoothing,
            num_classes=self.num_classes,
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.model(images)
        if logits.shape[-1] != self.num_classes:  # e.g. a preset's head left at its default
            raise ValueError(
                f"the model gives {logits.shape[-1]} logits, the data has {self.num_classes} "
                "classes: build the model with num_classes from the data"
            )
        return logits

    def _mix(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixup/CutMix a batch; soft targets ``(B, num_classes)``.

        timm mixes sample i with sample B-1-i and needs an even batch; with an odd batch the
        last sample stays unmixed (label-smoothed one-hot) rather than failing the run.
        """
        assert self.mixup is not None
        even = images.shape[0] - images.shape[0] % 2
        smooth = self.train_cfg.label_smoothing
        if even == images.shape[0]:
            return self.mixup(images, labels)
        targets = mixup_target(labels, self.num_classes, 1.0, smooth)
        if even:
            mixed, mixed_targets = self.mixup(images[:even], labels[:even])
            images = torch.cat([mixed, images[even:]])
            targets = torch.cat([mixed_targets, targets[even:]])
        return images, targets

    def model_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], split: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss, logits and (hard) labels of one batch; training batches are mixed/smoothed."""
        images, labels = batch
        if split == "train" and self.mixup is not None:
            images, targets = self._mix(images, labels)
            logits = self(images)
            loss = self.train_criterion(logits, targets)
        else:
            logits = self(images)
            criterion = self.train_criterion if split == "train" else self.eval_criterion
            loss = criterion(logits, labels)
        return loss, logits, labels

    def _update_and_log(
        self, split: str, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor
    ) -> None:
        batch = labels.shape[0]
        self._loss(split).update(loss.detach(), weight=batch)
        if split == "train":
            self.log("train/loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
            if self.mixup is not None:
                return
        self._accuracy(split).update(logits.detach(), labels)

    def _loss(self, split: str) -> MeanMetric:
        return cast(MeanMetric, self.losses[f"{split}_split"])

    def _accuracy(self, split: str) -> MetricCollection:
        return cast(MetricCollection, self.accuracies[f"{split}_split"])

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, logits, labels = self.model_step(batch, "train")
        self._update_and_log("train", loss, logits, labels)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._update_and_log("val", *self.model_step(batch, "val"))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._update_and_log("test", *self.model_step(batch, "test"))

    def _log_epoch(self, split: str) -> dict[str, torch.Tensor]:
        """Compute, log and reset a split's epoch metrics."""
        loss_name = "loss_epoch" if split == "train" else "loss"
        values = {loss_name: self._loss(split).compute()}
        if split != "train" or self.mixup is None:
            values.update(self._accuracy(split).compute())
        self._loss(split).reset()
        self._accuracy(split).reset()
        for name, value in values.items():
            self.log(f"{split}/{name}", value, prog_bar=name == "acc1", sync_dist=True)
        return values

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        values = self._log_epoch("val")
        # Only validation inside fit counts: not the sanity check, not a standalone validate().
        if self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking:
            self.val_acc1_best.update(values["acc1"])
        if self.val_acc1_best.update_count:
            self.log("val/acc1_best", self.val_acc1_best.compute(), sync_dist=True)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """AdamW on decay/no-decay groups; warm-up + cosine stepped every optimizer step."""
        cfg = self.train_cfg
        world = self.trainer.world_size
        global_batch = None if self.batch_size is None else self.batch_size * world
        lr, warmup_lr, min_lr = cfg.scaled_lrs(global_batch)
        optimizer = torch.optim.AdamW(
            param_groups(self.model, cfg.weight_decay), lr=lr, betas=cfg.betas, eps=cfg.eps
        )
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = warmup_cosine_scheduler(
            optimizer,
            total_steps=total_steps,
            warmup_steps=round(cfg.warmup_epochs * total_steps / cfg.epochs),
            warmup_lr=warmup_lr,
            min_lr=min_lr,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }
