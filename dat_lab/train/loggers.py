"""The loggers of a run: Lightning's, chosen by name in ``train.loggers``, all offline by default.

``csv`` is always on (the store's curves and the reports read ``logs/version_K/metrics.csv``);
the others are optional extras (``pip install 'dat-lab[mlflow]'`` and so on):

- ``tensorboard``: ``logs/tensorboard/version_K/`` (``tensorboard --logdir runs``);
- ``mlflow``: the tracking server or database named by ``MLFLOW_TRACKING_URI`` when it is set,
  else MLflow's local file store ``logs/mlruns`` inside the run directory (a file store of its
  own per run, so parallel workers never write one file; MLflow 3 keeps that backend in
  maintenance mode and wants ``MLFLOW_ALLOW_FILE_STORE=true``, which is set for it). The
  MLflow experiment is the dat-lab experiment;
- ``wandb``: the mode in ``WANDB_MODE`` when it is set, else online only when the user is
  logged in (``WANDB_API_KEY`` or a ``wandb login`` entry in the netrc file) and offline
  otherwise, writing under ``logs/wandb/`` (``wandb sync`` uploads it later). The project is
  ``WANDB_PROJECT`` or ``dat-lab``; runs are grouped by experiment.

Every tracker run is tagged with the dat-lab run id, experiment, variant, seed, attempt and
run directory (:class:`RunTags`), so a user can go from a tracker's run to the store's and
back. Each attempt (first start, each resume) is one tracker run, like the CSV logs'
``version_K``. Which loggers are on never changes the run id (``train.loggers`` is left out
of the config hash).
"""

from __future__ import annotations

import importlib.util
import netrc
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from pytorch_lightning.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger

from dat_lab.train.log_dirs import PREFIX, next_version

if TYPE_CHECKING:  # Lightning is imported when loggers are built, not by TrainConfig's checks
    from pytorch_lightning.loggers import Logger

LOG_DIR = "logs"
DEFAULT_WANDB_HOST = "https://api.wandb.ai"
# Logger name -> the module it needs (None: part of Lightning) and the extra that installs it.
MODULES = {"csv": None, "tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


@dataclass(frozen=True)
class RunTags:
    """What names a run in a tracker: the store's run id and who asked for the run."""

    run_id: str
    experiment: str = ""
    variant: str = ""
    seed: int | None = None

    def as_dict(self, attempt: str, run_dir: Path) -> dict[str, str]:
        """``dat_lab.*`` tags as strings (MLflow tags, W&B config)."""
        tags = {"run_id": self.run_id, "experiment": self.experiment, "variant": self.variant,
                "seed": "" if self.seed is None else str(self.seed), "attempt": attempt,
                "run_dir": str(run_dir)}  # fmt: skip
        return {f"dat_lab.{k}": v for k, v in tags.items() if v}

    @property
    def title(self) -> str:
        """A tracker run's display name: ``variant seed N (run id)``, or the run id."""
        if not self.variant:
            return self.run_id
        return f"{self.variant} seed {self.seed} ({self.run_id})"


def missing_module(name: str) -> str | None:
    """The module logger ``name`` needs when it is not installed, else None."""
    module = MODULES[name]
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    return module


def build_loggers(
    names: Sequence[str], run_dir: Path, tags: RunTags | None = None
) -> list[Logger]:
    """CSV logs and the named trackers, all for one new attempt (``version_K``).

    ``tags`` default to the run directory's name as the run id (a store's run directory is
    named by it)."""
    run_dir = Path(run_dir)
    version = next_version(run_dir / LOG_DIR)
    tags = tags or RunTags(run_id=run_dir.name)
    loggers: list[Logger] = [CSVLogger(save_dir=run_dir, name=LOG_DIR, version=version)]
    for name in dict.fromkeys(names):
        if name != "csv":
            loggers.append(_BUILDERS[name](run_dir, version, tags))
    return loggers


def _tensorboard(run_dir: Path, version: str, tags: RunTags) -> Logger:
    logger = TensorBoardLogger(save_dir=run_dir / LOG_DIR, name="tensorboard", version=version)
    logger.log_hyperparams(tags.as_dict(version, run_dir))
    return logger


def mlflow_tracking_uri(run_dir: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the run's own file store ``logs/mlruns``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or (run_dir / LOG_DIR / "mlruns").as_uri()


def _mlflow(run_dir: Path, version: str, tags: RunTags) -> Logger:
    uri = mlflow_tracking_uri(run_dir.resolve())
    if uri.startswith("file:"):
        # MLflow 3 refuses its file store unless this is set; it is the local, offline store.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(
        experiment_name=tags.experiment or "dat-lab",
        run_name=tags.title,
        tracking_uri=uri,
        tags=tags.as_dict(version, run_dir),
    )


def wandb_logged_in() -> bool:
    """Whether W&B has credentials here: ``WANDB_API_KEY``, or a netrc entry for its host
    (what ``wandb login`` writes). Read locally; nothing is contacted, nothing printed."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or DEFAULT_WANDB_HOST).hostname or ""
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False  # no netrc file (the usual case), or one that cannot be read


def wandb_mode() -> str:
    """``WANDB_MODE`` when set, else ``online`` when logged in, else ``offline``."""
    return os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")


def _wandb(run_dir: Path, version: str, tags: RunTags) -> Logger:
    class FinishingWandbLogger(WandbLogger):
        """Ends its W&B run when the fit ends: the next run of this process (an experiment
        trains many) must start a run of its own, not log into this one."""

        def finalize(self, status: str) -> None:
            super().finalize(status)
            if self._experiment is not None:
                self._experiment.finish(exit_code=0 if status in ("success", "finished") else 1)

    save_dir = run_dir / LOG_DIR
    save_dir.mkdir(parents=True, exist_ok=True)
    attempt = version.removeprefix(PREFIX)
    return FinishingWandbLogger(
        name=tags.title,
        id=f"{tags.run_id}-{attempt}",  # one W&B run per attempt, like version_K
        project=os.environ.get("WANDB_PROJECT") or "dat-lab",
        group=tags.experiment or None,
        tags=[
            f"{k.removeprefix('dat_lab.')}:{v}"[:64]
            for k, v in tags.as_dict(version, run_dir).items()
            if k != "dat_lab.run_dir"
        ],  # fmt: skip
        config=tags.as_dict(version, run_dir),
        save_dir=str(save_dir),
        mode=wandb_mode(),
    )


_BUILDERS: dict[str, Callable[[Path, str, RunTags], Any]] = {
    "tensorboard": _tensorboard,
    "mlflow": _mlflow,
    "wandb": _wandb,
}

__all__ = ["MODULES", "RunTags", "build_loggers", "missing_module"]
