"""Lightning callbacks of the training loop: non-finite loss stop, RNG checkpointing, progress."""

from __future__ import annotations

import random
import sys
from typing import Any, cast

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ProgressBar


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run cannot go on."""


class NonFiniteLossStop(Callback):
    """Stop the run with :class:`NonFiniteLossError` as soon as the training loss is not finite.

    The check runs before ``backward``, so the weights of the failing step are never updated
    with NaN gradients. ``N`` in the message is ``trainer.global_step`` at that moment: the
    number of optimizer steps already taken, i.e. the 0-based index of the failing step.
    Lightning re-raises exceptions from callbacks after calling ``on_exception`` hooks, so the
    error reaches the caller of ``trainer.fit``.
    """

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        finite = bool(torch.isfinite(loss.detach()).all())
        # Under DDP every rank must stop together: a rank that raised alone would leave the
        # others waiting in backward's all-reduce. One tiny all-reduce per step.
        if not trainer.strategy.reduce_boolean_decision(finite, all=True):
            raise NonFiniteLossError(f"non-finite loss at step {trainer.global_step}")


def collect_rng_states() -> dict[str, Any]:
    """The global RNG states of python, numpy, torch (and CUDA when in use), as plain data.

    Only tensors, numbers and tuples, so a checkpoint holding it loads with
    ``torch.load(weights_only=True)`` (numpy's state array is stored as a tensor).
    """
    # legacy=True (the default) gives the tuple form.
    state = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    kind, keys, pos, has_gauss, cached = state
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Set the global RNGs from :func:`collect_rng_states`'s output."""
    random.setstate(_as_python_state(states["python"]))
    np_state = states["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _as_python_state(state: Any) -> tuple:
    """``random.setstate`` needs tuples; a checkpoint round trip may hand back lists."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


class RngStateCheckpoint(Callback):
    """Store the global RNG states in each checkpoint and restore them on resume.

    Lightning checkpoints model, optimizer, scheduler and loop state but not the global
    python/numpy/torch RNGs, which drive shuffling (the DataLoader draws its seed from torch's
    RNG), dropout, drop-path and timm's Mixup (numpy). Restoring them makes a resume from an
    end-of-epoch checkpoint continue exactly like the uninterrupted run.

    Why restoring at load time is right: Lightning loads callback state before the sanity
    check (which runs under ``isolate_rng``) and before the first ``iter(train_dataloader)``;
    in the uninterrupted run nothing draws random numbers between the epoch-end save and that
    same ``iter``. In DDP, rank 0's states are saved and every rank gets them back; the ranks
    hold equal states anyway after ``seed_everything`` with one seed.
    """

    KEY = "rng_states"

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[self.KEY] = collect_rng_states()

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.KEY in checkpoint:
            restore_rng_states(checkpoint[self.KEY])


class LineProgressBar(ProgressBar):
    """Progress as plain lines, for logs that are not a terminal (tqdm's ``\\r`` bars are not).

    Prints one line every ``every_n_steps`` training batches and one after each validation:
    ``epoch 3/300 batch 50/1251 step 2552 | train/loss=2.31 ...``.
    """

    def __init__(self, every_n_steps: int = 50, stream: Any = None) -> None:
        super().__init__()
        self.every_n_steps = every_n_steps
        self.stream = stream
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _print(self, text: str) -> None:
        if self._enabled:
            print(text, file=self.stream or sys.stdout, flush=True)

    def _metrics_text(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
        items = self.get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items.items()
        )

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        done = batch_idx + 1
        if done % self.every_n_steps == 0 or done == self.total_train_batches:
            self._print(
                f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
                f" batch {done}/{self.total_train_batches} step {trainer.global_step}"
                f" | {self._metrics_text(trainer, pl_module)}"
            )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._print(
                f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} validation"
                f" | {self._metrics_text(trainer, pl_module)}"
            )
