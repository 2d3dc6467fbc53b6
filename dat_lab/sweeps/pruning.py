"""A Lightning callback that reports a metric to an Optuna trial each epoch and prunes.

optuna-integration's ``PyTorchLightningPruningCallback`` imports ``lightning``, not
``pytorch_lightning``, and fails with the latter (docs/design.md §6); this one is small and ours.

Pruning must not lose work or fake a result: when the pruner says stop, the callback lets the
epoch end (so ``last.ckpt`` of that epoch is written; Lightning runs ModelCheckpoint after
other callbacks), stops the loop, and raises :class:`~dat_lab.experiments.runner.RunStopped`
at the end of training. The runner then leaves the run unfinished and resumable instead of
marking a truncated run finished, and the worker tells Optuna the trial was pruned.
"""

from __future__ import annotations

import optuna
import pytorch_lightning as pl

from dat_lab.experiments.runner import RunStopped


class OptunaPruning(pl.Callback):
    """Report ``monitor`` after every validation inside fit; stop when the trial is pruned."""

    def __init__(self, trial: optuna.Trial, monitor: str):
        self.trial = trial
        self.monitor = monitor
        self.pruned_after_epoch: int | None = None
        self._validated = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._validated:  # no validation this epoch (val_every_n_epochs > 1)
            return
        self._validated = False
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        last_epoch = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        if not last_epoch and self.trial.should_prune():  # a run that is done is not pruned
            self.pruned_after_epoch = epoch
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.pruned_after_epoch is not None:
            raise RunStopped(
                f"pruned after epoch {self.pruned_after_epoch + 1} "
                f"({self.monitor} reported to trial {self.trial.number})"
            )


__all__ = ["OptunaPruning"]
