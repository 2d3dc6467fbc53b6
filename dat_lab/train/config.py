"""TrainConfig: the optimisation recipe and the Trainer's settings, as one frozen dataclass.

Defaults follow the DAT/Swin ImageNet recipe (docs/design.md §4): AdamW, lr 5e-4 scaled by
``global_batch / 512``, weight decay 0.05, 20 warm-up epochs then a per-step cosine, 300
epochs, grad clip 5, label smoothing 0.1, Mixup 0.8 / CutMix 1.0. Only ``precision`` differs
(``"32-true"``, so a CPU run needs no flag); the paper trained with AMP.

Learning-rate scaling: with ``lr_scale_batch = N`` the learning rates actually used are
``lr``, ``warmup_lr`` and ``min_lr`` times ``global_batch / N`` (global batch = per-device batch
x devices), as the official code does for all three; with ``lr_scale_batch: null`` they are
used as written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from dat_lab.schema import NOT_IDENTITY, ConfigError, check, from_mapping, load_yaml
from dat_lab.train.loggers import missing_module

Precision = Literal["32-true", "bf16-mixed", "16-mixed"]
Accelerator = Literal["auto", "cpu", "gpu"]
Strategy = Literal["auto", "ddp"]
MixupMode = Literal["batch", "pair", "elem"]
LoggerName = Literal["csv", "tensorboard", "mlflow", "wandb"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a model is trained: optimiser, schedule, regularisation and Trainer settings.

    Attributes:
        epochs: training epochs (the cosine ends at the last step of the last epoch).
        warmup_epochs: linear warm-up length in epochs (fractions allowed), ``<= epochs``.
        lr: peak learning rate for a batch of ``lr_scale_batch`` (or absolute when that is null).
        lr_scale_batch: reference batch for linear lr scaling; null = no scaling.
        min_lr: the learning rate the cosine ends at (scaled like ``lr``).
        warmup_lr: the learning rate of the first warm-up step (scaled like ``lr``).
        weight_decay: AdamW decoupled weight decay (not applied to norms, biases, position tables).
        betas, eps: AdamW's.
        grad_clip: max gradient L2 norm; 0 or null turns clipping off.
        label_smoothing: smoothing of the training targets (mixed or not); validation uses none.
        mixup, cutmix: Beta(alpha, alpha) parameters of timm's Mixup; both 0 = no mixing.
        mixup_prob: probability that a batch is mixed at all.
        mixup_switch_prob: probability of CutMix instead of Mixup when both are on.
        mixup_mode: timm's ``mode``: one lambda per batch, per pair or per element.
        precision: Lightning precision; ``"16-mixed"`` needs a GPU (Lightning would silently
            run bf16 on a CPU instead, so it is refused there).
        accelerator, devices, strategy: Lightning's; ``devices > 1`` always runs DDP.
        deterministic: ``torch.use_deterministic_algorithms``; exact repeats on a CPU. On a GPU
            some kernels (e.g. ``grid_sample`` backward, used by deformable attention) have no
            deterministic version and raise.
        seed: ``pl.seed_everything(seed, workers=True)``.
        log_every_n_steps: how often step metrics are logged (and the plain progress printed).
        limit_train_batches, limit_val_batches: Lightning's limits: an int is a batch count,
            a float in (0, 1] a fraction; null = all.
        val_every_n_epochs: validate every this many epochs.
        ckpt_every_n_steps: also write ``last.ckpt`` every this many optimizer steps (null = at
            epoch ends only). Resuming from one is exact with dat-lab's DataModules (see
            trainer.py).
        threads: CPU intra-op threads (``torch.set_num_threads``); null = leave torch's choice.
        loggers: where metrics go besides ``csv`` (always on): ``tensorboard``, ``mlflow``,
            ``wandb``, each offline by default (see :mod:`dat_lab.train.loggers`). Not part of
            the run id: the same run logged elsewhere is the same run.
        init_from: fine-tune: start from the weights of a checkpoint file (official DAT,
            a dat-lab Lightning checkpoint, a state dict) or of a run id's last checkpoint
            (looked up in the experiment's store); relative-position tables of another size
            are resized. null = random initialisation.
        init_exclude: module prefixes not taken from ``init_from`` (``[head]``: a new head).
        init_sha256: SHA-256 of the ``init_from`` file, written in when the experiment is
            loaded (so the run id covers the source weights); leave it out.
    """

    epochs: int = 300
    warmup_epochs: float = 20.0
    lr: float = 5e-4
    lr_scale_batch: int | None = 512
    min_lr: float = 5e-6
    warmup_lr: float = 5e-7
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float | None = 5.0
    label_smoothing: float = 0.1
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    mixup_mode: MixupMode = "batch"
    precision: Precision = "32-true"
    accelerator: Accelerator = "auto"
    devices: int = 1
    strategy: Strategy = "auto"
    deterministic: bool = False
    seed: int = 0
    log_every_n_steps: int = 50
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    val_every_n_epochs: int = 1
    ckpt_every_n_steps: int | None = None
    threads: int | None = None
    loggers: tuple[LoggerName, ...] = dataclasses.field(
        default=("csv",), metadata={NOT_IDENTITY: True}
    )
    init_from: str | None = None
    init_exclude: tuple[str, ...] = ()
    init_sha256: str | None = None

    def __post_init__(self) -> None:
        check(self.epochs >= 1, "epochs", f"got {self.epochs}, must be >= 1")
        check(
            0 <= self.warmup_epochs <= self.epochs,
            "warmup_epochs",
            f"got {self.warmup_epochs}, must be between 0 and epochs ({self.epochs})",
        )
        self._check_learning_rates()
        check(self.weight_decay >= 0, "weight_decay", f"got {self.weight_decay}, must be >= 0")
        for i, beta in enumerate(self.betas):
            check(0 <= beta < 1, f"betas.{i}", f"got {beta}, must be in [0, 1)")
        check(self.eps > 0, "eps", f"got {self.eps}, must be > 0")
        check(
            self.grad_clip is None or self.grad_clip >= 0,
            "grad_clip",
            f"got {self.grad_clip}, must be >= 0 (0 or null = no clipping)",
        )
        self._check_mixing()
        self._check_hardware()
        self._check_loop()
        self._check_loggers()
        self._check_init()

    def _check_init(self) -> None:
        for key in ("init_exclude", "init_sha256"):
            check(
                self.init_from is not None or not getattr(self, key),
                key,
                "is set but init_from is not (nothing to fine-tune from)",
            )
        check(
            self.init_from is None or bool(str(self.init_from).strip()),
            "init_from",
            "must be a checkpoint path or a run id, or null",
        )

    def _check_learning_rates(self) -> None:
        check(self.lr > 0, "lr", f"got {self.lr}, must be > 0")
        check(0 <= self.min_lr <= self.lr, "min_lr", f"got {self.min_lr}, must be in [0, lr]")
        check(
            0 <= self.warmup_lr <= self.lr,
            "warmup_lr",
            f"got {self.warmup_lr}, must be in [0, lr]",
        )
        check(
            self.lr_scale_batch is None or self.lr_scale_batch >= 1,
            "lr_scale_batch",
            f"got {self.lr_scale_batch}, must be >= 1 or null (no scaling)",
        )

    def _check_mixing(self) -> None:
        check(
            0 <= self.label_smoothing < 1,
            "label_smoothing",
            f"got {self.label_smoothing}, must be in [0, 1)",
        )
        check(self.mixup >= 0, "mixup", f"got {self.mixup}, must be >= 0 (0 = off)")
        check(self.cutmix >= 0, "cutmix", f"got {self.cutmix}, must be >= 0 (0 = off)")
        for key in ("mixup_prob", "mixup_switch_prob"):
            value = getattr(self, key)
            check(0 <= value <= 1, key, f"got {value}, must be in [0, 1]")

    def _check_hardware(self) -> None:
        check(self.devices >= 1, "devices", f"got {self.devices}, must be >= 1")
        check(
            not (self.precision == "16-mixed" and self.accelerator == "cpu"),
            "precision",
            "got '16-mixed' with accelerator 'cpu': fp16 AMP needs a GPU; use 'bf16-mixed'",
        )
        check(0 <= self.seed < 2**32, "seed", f"got {self.seed}, must be in [0, 2**32)")
        check(
            self.threads is None or self.threads >= 1,
            "threads",
            f"got {self.threads}, must be >= 1 or null",
        )

    def _check_loop(self) -> None:
        for key in ("log_every_n_steps", "val_every_n_epochs"):
            value = getattr(self, key)
            check(value >= 1, key, f"got {value}, must be >= 1")
        check(
            self.ckpt_every_n_steps is None or self.ckpt_every_n_steps >= 1,
            "ckpt_every_n_steps",
            f"got {self.ckpt_every_n_steps}, must be >= 1 or null",
        )
        for key in ("limit_train_batches", "limit_val_batches"):
            value = getattr(self, key)
            if isinstance(value, float):
                check(0 < value <= 1, key, f"got {value}, a fraction must be in (0, 1]")
            elif isinstance(value, int):
                least = 1 if key == "limit_train_batches" else 0  # 0 val batches = no validation
                check(value >= least, key, f"got {value}, a batch count must be >= {least}")

    def _check_loggers(self) -> None:
        check(
            len(set(self.loggers)) == len(self.loggers),
            "loggers",
            f"repeats a logger: {list(self.loggers)}",
        )
        for i, name in enumerate(self.loggers):
            module = missing_module(name)
            check(
                module is None,
                f"loggers.{i}",
                f"{name!r} needs the {module} package: pip install 'dat-lab[{name}]'",
            )

    @property
    def mixing(self) -> bool:
        """Whether Mixup/CutMix is applied to training batches."""
        return (self.mixup > 0 or self.cutmix > 0) and self.mixup_prob > 0

    def check_num_classes(self, num_classes: int) -> None:
        """Raise ConfigError when this recipe cannot train a ``num_classes``-way classifier."""
        if num_classes < 2:
            key = "mixup" if self.mixing else "num_classes"
            raise ConfigError(
                f"a classifier needs at least 2 classes, the data has {num_classes}", key
            )

    def scaled_lrs(self, global_batch: int | None) -> tuple[float, float, float]:
        """``(lr, warmup_lr, min_lr)`` after linear batch scaling (see the module docstring)."""
        if self.lr_scale_batch is None:
            return self.lr, self.warmup_lr, self.min_lr
        if global_batch is None:
            raise ConfigError(
                "scaling the lr by batch / lr_scale_batch needs the batch size"
                " (pass batch_size to DatLitModule, or set lr_scale_batch: null)",
                "lr_scale_batch",
            )
        factor = global_batch / self.lr_scale_batch
        return self.lr * factor, self.warmup_lr * factor, self.min_lr * factor

    @classmethod
    def from_mapping(
        cls, data: Any, prefix: str = "", file: str | Path | None = None
    ) -> TrainConfig:
        """Build from a plain mapping (strict: see :func:`dat_lab.schema.from_mapping`)."""
        return from_mapping(cls, data, prefix=prefix, file=file)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Load from a YAML file holding a TrainConfig mapping."""
        return from_mapping(cls, load_yaml(path), file=path)
