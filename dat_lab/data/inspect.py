"""What a data config reads, without training: classes, samples per split, image sizes seen
on a sample of images, and the train and eval transforms (``dat-lab data inspect``)."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from dat_lab.data.config import DataConfig
from dat_lab.data.datamodule import DatLabDataModule, build_datamodule


@dataclass(frozen=True)
class DataReport:
    """The findings of :func:`inspect_data`."""

    name: str
    classes: tuple[str, ...]
    samples: dict[str, int]  # split -> samples per epoch
    sizes: dict[str, Counter[tuple[int, int]]]  # split -> (width, height) -> images seen
    transforms: dict[str, str]  # split -> repr of the transform

    def render(self) -> str:
        shown = ", ".join(self.classes[:10]) + (", ..." if len(self.classes) > 10 else "")
        lines = [f"data: {self.name}", f"classes: {len(self.classes)} ({shown})"]
        lines += [f"samples {split}: {n}" for split, n in self.samples.items()]
        for split, sizes in self.sizes.items():
            seen = sum(sizes.values())
            common = ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(5))
            lines.append(f"image sizes {split} (first {seen}, WxH): {common}")
        for split, text in self.transforms.items():
            lines += [f"transform {split}:", *("  " + line for line in text.splitlines())]
        return "\n".join(lines)


def _size(image: Any) -> tuple[int, int]:
    if isinstance(image, Image.Image):
        return image.size
    array = np.asarray(image)
    return int(array.shape[-1]), int(array.shape[-2])  # (C, H, W) arrays and tensors


def _raw_sizes(dataset: Any, count: int) -> Counter[tuple[int, int]]:
    """Sizes of the first ``count`` images as stored (before any transform)."""
    if hasattr(dataset, "images"):  # ArrayDataset: one array of equal images
        return Counter({_size(dataset.images[0]): min(count, len(dataset))})
    transform, dataset.transform = dataset.transform, None
    try:
        return Counter(_size(image) for image, _ in itertools.islice(iter(dataset), count))
    finally:
        dataset.transform = transform


def _transform(dm: DatLabDataModule, dataset: Any) -> str:
    transform = getattr(dataset, "transform", None)
    if transform is not None:
        return repr(transform)
    augment = getattr(dataset, "augment", False)
    crop = "random crop (4 px padding) and flip, then " if augment else ""
    return f"{crop}scale to [0, 1], resize to {dm.img_size}, normalise {dm.mean_std}"


def inspect_data(cfg: DataConfig, sample: int = 64) -> DataReport:
    """Build ``cfg``'s data sets (as a run would, on one process) and describe them."""
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    sets = {"train": dm.train_set, "val": dm.val_set}
    return DataReport(
        name=cfg.name if cfg.name != "timm" else f"timm {cfg.dataset or '(folder or tar)'}",
        classes=tuple(dm.class_names),
        samples={split: len(ds) for split, ds in sets.items()},  # type: ignore[arg-type]
        sizes={split: _raw_sizes(ds, sample) for split, ds in sets.items()},
        transforms={split: _transform(dm, ds) for split, ds in sets.items()},
    )
