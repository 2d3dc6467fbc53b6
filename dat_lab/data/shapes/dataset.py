"""Shapes data sets: the spec that names a split, drawing it, and the on-disk cache."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dat_lab.data.shapes.pathfinder import pathfinder_image
from dat_lab.data.shapes.polygons import aligned_image, svrt_image

log = logging.getLogger(__name__)

# Bump when the drawing code changes what a given seed produces: old cache files then stop
# matching instead of silently serving images the current code would not make.
GENERATOR_VERSION = 1
# The cache key also covers the text of every module of this package (the generators, their
# geometry and this file), so that an edit which forgets the bump (or a work-in-progress
# generator) cannot be served stale images: any edit regenerates the set.
_SOURCE_HASH = hashlib.sha256(
    b"".join(
        p.name.encode() + b"\0" + p.read_bytes()
        for p in sorted(Path(__file__).parent.glob("*.py"))
    )
).hexdigest()[:16]
SPLITS = ("train", "val")
CLASS_NAMES = {
    "pathfinder": ("apart", "connected"),
    "svrt": ("different", "same"),
    "aligned": ("column", "row"),
}


@dataclass(frozen=True)
class ShapesSpec:
    """Everything that determines one generated split (the cache key)."""

    task: str
    params: tuple[tuple[str, float], ...]  # resolved task knobs, sorted by name
    img_size: int
    split: str
    size: int
    seed: int

    def key(self) -> str:
        """A short hash of the spec and the generator version."""
        text = json.dumps(
            {
                "version": GENERATOR_VERSION,
                "source": _SOURCE_HASH,
                **self.__dict__,
                "params": dict(self.params),
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def file_name(self) -> str:
        size = f"{self.img_size}px-{self.split}-{self.size}"
        return f"{self.task}-{size}-seed{self.seed}-{self.key()}.npz"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dat_lab/shapes``, or ``~/.cache/dat_lab/shapes``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dat_lab" / "shapes"


_TASKS: dict[str, Callable[..., np.ndarray]] = {
    "pathfinder": pathfinder_image,
    "svrt": svrt_image,
    "aligned": aligned_image,
}


def generate(spec: ShapesSpec) -> tuple[np.ndarray, np.ndarray]:
    """Draw one split: uint8 images (N, 1, S, S) and int64 labels (N,), ``label[i] = i % 2``."""
    draw = _TASKS[spec.task]
    params = dict(spec.params)
    split_code = SPLITS.index(spec.split)
    images = np.empty((spec.size, 1, spec.img_size, spec.img_size), dtype=np.uint8)
    labels = np.arange(spec.size, dtype=np.int64) % 2
    for i in range(spec.size):
        rng = np.random.default_rng([spec.seed, split_code, i])
        canvas = draw(rng, int(labels[i]), spec.img_size, **params)
        images[i, 0] = np.round(canvas * 255).astype(np.uint8)
    return images, labels


def check_drawable(task: str, params: dict[str, int | float], img_size: int) -> None:
    """Draw one image of each label, raising LayoutError if the settings cannot be drawn."""
    rng = np.random.default_rng(0)
    for label in (0, 1):
        _TASKS[task](rng, label, img_size, **params)


def _read_cache(file: Path, spec: ShapesSpec) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached arrays, or ``None`` if the file is missing, unreadable or of the wrong shape."""
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as data:
            images, labels = data["images"], data["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        log.warning("ignoring unreadable shapes cache %s (%s)", file, err)
        return None
    shape = (spec.size, 1, spec.img_size, spec.img_size)
    if images.shape != shape or images.dtype != np.uint8 or labels.shape != (spec.size,):
        log.warning("ignoring shapes cache %s: wrong shape or dtype", file)
        return None
    return images, labels.astype(np.int64)


def _write_atomic(file: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write the .npz beside its final name, then rename (atomic on one file system)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=file.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, images=images, labels=labels)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_or_generate(spec: ShapesSpec, cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The split from ``cache_dir`` if cached there, else generated and cached."""
    file = cache_dir / spec.file_name()
    cached = _read_cache(file, spec)
    if cached is not None:
        return cached
    log.info("generating %s (%d images) into %s", spec.task, spec.size, file)
    images, labels = generate(spec)
    _write_atomic(file, images, labels)
    return images, labels
