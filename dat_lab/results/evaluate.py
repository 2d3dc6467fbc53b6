"""Top-1, top-5 and loss of a checkpoint (a file or a stored run) on a data set's val split.

The data is the run's own (for a run or a checkpoint inside one) or named on the command
line (``data.name=imagefolder data.path=...``); ``imagefolder`` val uses the paper's
evaluation transform (resize by ``crop_pct`` 0.875, bicubic, centre crop). Official
checkpoints name their architecture by their shapes; a plain state dict needs
``model=PRESET``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from dat_lab.data.config import DataConfig
from dat_lab.data.datamodule import build_datamodule
from dat_lab.experiments.weights import model_for, read_weights, resolve_source
from dat_lab.models import build_model
from dat_lab.models.checkpoints import fit_weights
from dat_lab.schema import ConfigError, apply_overrides, from_mapping, to_mapping

DEFAULT_BATCH = 32


@dataclass(frozen=True)
class EvalResult:
    """One evaluation: what was evaluated, on what, and the metrics (fractions, mean loss)."""

    source: str
    checkpoint: str
    kind: str
    model: str
    dataset: str
    images: int
    top1: float
    top5: float
    loss: float
    seconds: float
    images_per_s: float
    device: str

    def row(self) -> str:
        return (
            f"{self.source}  {self.dataset}  images {self.images}  top-1 {100 * self.top1:.2f}  "
            f"top-5 {100 * self.top5:.2f}  loss {self.loss:.4f}  "
            f"{self.images_per_s:.1f} images/s on {self.device}"
        )


def split_overrides(overrides: dict[str, Any]) -> tuple[str | None, dict, dict]:
    """``model=PRESET``, ``model.*`` and ``data.*`` overrides; anything else is refused."""
    preset, model, data = None, {}, {}
    for key, value in overrides.items():
        if key == "model":
            preset = str(value)
        elif key.startswith("model."):
            model[key[len("model.") :]] = value
        elif key.startswith("data."):
            data[key[len("data.") :]] = value
        else:
            raise ConfigError("unknown key; allowed: model=PRESET, model.<key>, data.<key>", key)
    return preset, model, data


def data_config(base: DataConfig | None, overrides: dict[str, Any], img_size: int) -> DataConfig:
    """The run's data config with overrides, or one built from the overrides alone."""
    if base is None and "name" not in overrides:
        raise ConfigError(
            "this checkpoint does not say what data it saw; add data.name=imagefolder "
            "data.path=DIR (or a bundled data set: shapes, digits)",
            "data.name",
        )
    data = to_mapping(base) if base is not None else {}
    if base is None:
        data.update(img_size=img_size, batch_size=DEFAULT_BATCH)
    return from_mapping(DataConfig, apply_overrides(data, overrides), prefix="data")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("no CUDA device is available", "--device")
    return torch.device(name)


@torch.no_grad()
def measure(model: torch.nn.Module, loader, device: torch.device, progress: bool = True) -> dict:
    """Top-1, top-5 (k capped at the classes), mean cross-entropy and throughput."""
    model.eval().to(device)
    correct1 = correct5 = 0
    loss_sum, count = 0.0, 0
    start = time.perf_counter()
    bar = tqdm(loader, desc="evaluate", unit="batch", disable=not progress, leave=False)
    for images, labels in bar:
        images, labels = images.to(device), labels.to(device)
        logits = model(images).float()
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
        hits = top == labels[:, None]
        correct1 += int(hits[:, 0].sum())
        correct5 += int(hits.any(dim=-1).sum())
        count += len(labels)
        rate = count / max(time.perf_counter() - start, 1e-9)
        bar.set_postfix(top1=f"{100 * correct1 / count:.2f}", images_s=f"{rate:.1f}")
    seconds = time.perf_counter() - start
    if count == 0:
        raise ConfigError("the validation split holds no images", "data")
    return dict(
        images=count,
        top1=correct1 / count,
        top5=correct5 / count,
        loss=loss_sum / count,
        seconds=seconds,
        images_per_s=count / max(seconds, 1e-9),
    )


def evaluate(
    source: str,
    overrides: dict[str, Any],
    store_root: str | Path,
    which: str = "last",
    device: str = "auto",
    progress: bool = True,
) -> EvalResult:
    """Evaluate ``source`` (checkpoint file or run id); every input is checked before compute."""
    preset, model_overrides, data_overrides = split_overrides(overrides)
    path = resolve_source(source, store_root, which, key="CHECKPOINT_OR_RUN_ID")
    weights = read_weights(path, key="CHECKPOINT_OR_RUN_ID")
    cfg = model_for(weights, preset, model_overrides)
    data = data_config(weights.data, data_overrides, (cfg.img_size or (224, 224))[0])
    dev = pick_device(device)
    model = build_model(cfg)
    fit_weights(model, weights.state, source=str(path), key="CHECKPOINT_OR_RUN_ID")
    datamodule = build_datamodule(data)
    if datamodule.num_classes != cfg.num_classes or datamodule.in_chans != cfg.in_chans:
        raise ConfigError(
            f"the model has {cfg.num_classes} classes and {cfg.in_chans} input channels, "
            f"{data.name} has {datamodule.num_classes} and {datamodule.in_chans}",
            "data",
        )
    datamodule.prepare_data()
    datamodule.setup("validate")
    metrics = measure(model, datamodule.val_dataloader(), dev, progress)
    return EvalResult(
        source=source,
        checkpoint=str(path),
        kind=weights.kind,
        model=f"{preset or 'checkpoint'} ({cfg.hash}, sampling {cfg.sampling.value})",
        dataset=data.name,
        device=str(dev),
        **metrics,
    )


def write_json(result: EvalResult, out: str | Path) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return path
