"""``imagefolder``: images in the ImageNet layout at a user path.

``path/train/<class>/*.JPEG`` and ``path/val/<class>/*``. The classes are the sub-folders of
``train`` in sorted order; ``val`` may hold those classes or a subset of them, and is indexed
by the train classes (torchvision's ImageFolder would renumber a val folder that lacks a
class, silently shifting every label after it). Every class folder must hold at least one
image file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from dat_lab.schema import ConfigError

SPLITS = ("train", "val")


def _class_dirs(root: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def _has_image(folder: Path) -> bool:
    """Whether ``folder`` (or a sub-folder, as ImageFolder searches) holds an image file.

    Stops at the first one, so a class folder of thousands of files costs one directory read.
    """
    subfolders = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file() and entry.name.lower().endswith(IMG_EXTENSIONS):
                return True
            if entry.is_dir():
                subfolders.append(Path(entry.path))
    return any(_has_image(sub) for sub in subfolders)


def check_imagefolder(path: Path, key: str = "data.path") -> list[str]:
    """The class names, or ConfigError naming ``key`` and the offending folder."""
    if not path.is_dir():
        raise ConfigError(f"imagefolder root {str(path)!r} does not exist", key)
    classes: dict[str, list[str]] = {}
    for split in SPLITS:
        folder = path / split
        if not folder.is_dir():
            raise ConfigError(
                f"imagefolder needs {str(folder)!r} (layout: {split}/<class>/<image>)", key
            )
        classes[split] = _class_dirs(folder)
        if not classes[split]:
            raise ConfigError(f"no class folders in {str(folder)!r}", key)
    unknown = sorted(set(classes["val"]) - set(classes["train"]))
    if unknown:
        raise ConfigError(
            f"val class {unknown[0]!r} ({str(path / 'val' / unknown[0])!r}) has no train folder",
            key,
        )
    for split in SPLITS:
        for name in classes[split]:
            if not _has_image(path / split / name):
                raise ConfigError(
                    f"class folder {str(path / split / name)!r} holds no image "
                    f"({', '.join(IMG_EXTENSIONS)})",
                    key,
                )
    return classes["train"]


class FixedClassImageFolder(ImageFolder):
    """torchvision's ImageFolder indexed by a given class list (not the folder's own)."""

    def __init__(self, root: Path, classes: Sequence[str], transform: Callable | None = None):
        self._given_classes = list(classes)
        super().__init__(str(root), transform=transform, allow_empty=True)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        return self._given_classes, {c: i for i, c in enumerate(self._given_classes)}
