"""The data schema: :class:`DataConfig` with its :class:`ShapesConfig` and :class:`AugmentConfig`.

One frozen dataclass chooses a data set and everything about how it is fed. Knobs that belong
to one data set (or one shapes task) are refused with a :class:`~dat_lab.schema.ConfigError`
when another is chosen, so nothing is accepted and ignored. A ``None`` knob takes the
documented default of the chosen data set (see :meth:`DataConfig.sizes`,
:meth:`ShapesConfig.params`, :meth:`DataConfig.augmentation`).

Files on disk (``path``) are checked by :func:`dat_lab.data.build_datamodule`, not here, so a
config can be written and validated on a machine that does not hold the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dat_lab.data.classes import check_class_list, read_class_file
from dat_lab.schema import ConfigError, added_field, check

DatasetName = Literal["shapes", "digits", "imagefolder", "cifar10", "cifar100", "timm"]
ShapesTask = Literal["pathfinder", "svrt", "aligned"]
Interpolation = Literal["bicubic", "bilinear", "nearest"]

ON_DISK = ("imagefolder", "cifar10", "cifar100", "timm")  # the user's files: path required
# timm dataset strings dat-lab reads offline: "" (a folder or a tar), then these prefixes.
TIMM_PREFIXES = ("hfds", "hfids", "wds", "torch")
TIMM_SPLITS = ("train", "validation")  # default train_split, val_split (timm's, HF's names)

# Knobs of each shapes task and their defaults (a knob name shared by two tasks means the same
# thing in both). Calibration, 1 CPU thread, 8 epochs of 4000 images at 32 px (~1 minute): a
# small CNN learns the default pathfinder (path_length 5) above chance in 3 epochs
# (tests/data); the tiny DAT (dat_nano) reaches only ~0.6 on pathfinder path_length 3 and stays
# at chance on SVRT-1, but learns the default aligned to 0.98-1.0 (near chance for the first
# 2-4 epochs, then a jump); with exact rows and no distractors it is 1.0 within 2 epochs.
SHAPES_DEFAULTS: dict[str, dict[str, int | float]] = {
    "pathfinder": {"path_length": 5, "distractors": 0},
    "svrt": {"vertices": 6, "min_distance": 0.5},
    "aligned": {"vertices": 6, "min_distance": 0.3, "misalign": 0.28, "distractors": 4},
}
SHAPES_SIZES = (2000, 1000)  # default train_size, val_size
SHAPES_IMG_SIZE = (16, 256)  # drawn at this size; strokes have a fixed width in pixels
MAX_DISTRACTORS = 32
# A 2-dash snake's two ends lie too close for two markers and the gap between snakes: no
# layout exists at any img_size (the generator would try MAX_TRIES times and give up).
MIN_PATH_LENGTH = 3
MAX_PATH_LENGTH = 64


@dataclass(frozen=True)
class ShapesConfig:
    """The synthetic long-range task of the ``shapes`` data set.

    Args:
        task: ``pathfinder`` (are the two markers on one path?), ``svrt`` (SVRT problem 1:
            are the two far-apart shapes the same?) or ``aligned`` (an SVRT-style spatial
            relation: are the two filled shapes in one row or in one column?).
        path_length: pathfinder: dashes per snake (Linsley et al. use 6, 9, 14), 3..64;
            ``None`` = 5. A dash plus its gap is 4 px.
        distractors: pathfinder: unmarked snakes beside the two main ones; aligned: outlined
            shapes beside the two filled ones; 0..32; ``None`` = 0 (pathfinder), 4 (aligned).
        vertices: svrt, aligned: corners of each random polygon, 3..16; ``None`` = 6.
        min_distance: svrt: least distance between the two shape centres; aligned: least
            distance along their shared row or column; as a fraction of the image side, in
            (0, 0.6]; ``None`` = 0.5 (svrt), 0.3 (aligned).
        misalign: aligned: largest offset between the two shapes across their row (column),
            as a fraction of the image side, in [0, min_distance) so that a row pair is always
            more horizontal than vertical; ``None`` = 0.28.
    """

    task: ShapesTask = "pathfinder"
    path_length: int | None = None
    distractors: int | None = None
    vertices: int | None = None
    min_distance: float | None = None
    misalign: float | None = None

    def __post_init__(self) -> None:
        own = SHAPES_DEFAULTS[self.task]
        for task, knobs in SHAPES_DEFAULTS.items():
            for knob in knobs:
                if knob not in own and getattr(self, knob) is not None:
                    raise ConfigError(
                        f"is a {task} knob but task is {self.task!r}; "
                        f"{self.task} knobs: {', '.join(own)}",
                        knob,
                    )
        if self.path_length is not None:
            check(
                MIN_PATH_LENGTH <= self.path_length <= MAX_PATH_LENGTH,
                "path_length",
                f"must be in {MIN_PATH_LENGTH}..{MAX_PATH_LENGTH} dashes, got {self.path_length}",
            )
        if self.distractors is not None:
            check(
                0 <= self.distractors <= MAX_DISTRACTORS,
                "distractors",
                f"must be in 0..{MAX_DISTRACTORS}, got {self.distractors}",
            )
        if self.vertices is not None:
            check(3 <= self.vertices <= 16, "vertices", f"must be in 3..16, got {self.vertices}")
        if self.min_distance is not None:
            check(
                0 < self.min_distance <= 0.6 and math.isfinite(self.min_distance),
                "min_distance",
                f"must be in (0, 0.6] (fraction of the image side), got {self.min_distance}",
            )
        if self.task == "aligned":
            self._check_misalign()

    def _check_misalign(self) -> None:
        """A row pair must stay more horizontal than vertical: misalign < min_distance, checked
        on the resolved values (a default can clash with the other knob set by hand)."""
        params = self.params()
        misalign, apart = params["misalign"], params["min_distance"]
        check(
            0 <= misalign < apart and math.isfinite(misalign),
            "misalign" if self.misalign is not None else "min_distance",
            f"misalign must be in [0, min_distance) (fractions of the image side, so a row "
            f"pair stays more horizontal than vertical), got misalign {misalign}, "
            f"min_distance {apart}",
        )

    def params(self) -> dict[str, int | float]:
        """The knobs of :attr:`task` with defaults filled in."""
        return {
            knob: default if getattr(self, knob) is None else getattr(self, knob)
            for knob, default in SHAPES_DEFAULTS[self.task].items()
        }


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation of ``imagefolder`` (the paper's recipe by default, via timm).

    Args:
        auto_augment: timm auto-augment policy string (``rand-m9-mstd0.5-inc1`` =
            RandAugment, magnitude 9, std 0.5, increasing), or ``None`` for none.
        reprob: random-erasing probability (per-pixel noise, as the official DAT config).
        interpolation: resize interpolation, train and eval.
        crop_pct: eval centre-crop fraction: resize to ``img_size / crop_pct``, then crop
            ``img_size`` (0.875 = 224 of 256).
    """

    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    reprob: float = 0.25
    interpolation: Interpolation = "bicubic"
    crop_pct: float = 0.875

    def __post_init__(self) -> None:
        check(0.0 <= self.reprob <= 1.0, "reprob", f"must be in [0, 1], got {self.reprob}")
        check(0.0 < self.crop_pct <= 1.0, "crop_pct", f"must be in (0, 1], got {self.crop_pct}")
        if self.auto_augment is not None:
            _check_auto_augment(self.auto_augment)


def _check_auto_augment(policy: str) -> None:
    """Parse the policy with timm, so a typo fails here and not in a data-loader worker."""
    from timm.data.auto_augment import (
        augment_and_mix_transform,
        auto_augment_transform,
        rand_augment_transform,
    )

    hparams = {"translate_const": 100, "img_mean": (124, 116, 104)}
    try:
        if policy.startswith("rand"):
            rand_augment_transform(policy, hparams)
        elif policy.startswith("augmix"):
            augment_and_mix_transform(policy, hparams)
        else:
            auto_augment_transform(policy, hparams)
    except (AssertionError, ValueError, KeyError, IndexError) as err:
        raise ConfigError(
            f"timm cannot parse policy {policy!r} ({err or type(err).__name__}); "
            "e.g. 'rand-m9-mstd0.5-inc1', 'augmix-m5-w3', 'original', 'v0', or null",
            "auto_augment",
        ) from None


@dataclass(frozen=True)
class DataConfig:
    """Which data set, at what size, in what batches.

    Args:
        name: ``shapes`` (synthetic Pathfinder/SVRT, 1 channel, 2 classes), ``digits``
            (scikit-learn's handwritten digits, 1 channel, 10 classes), ``cifar10`` /
            ``cifar100`` (binary or python-version batches at ``path``, 3 channels, 10 / 100
            classes), ``imagefolder`` (ImageNet layout at ``path``, 3 channels) or ``timm``
            (any of timm's dataset readers at ``path``: see ``dataset``).
        img_size: side of the square images fed to the model.
        batch_size: images per batch (train and eval).
        path: folder of the data (cifar10, cifar100, imagefolder, timm only; timm: a folder,
            a folder of ``<split>.tar`` files, a local HF dataset folder, or a folder of
            webdataset shards with ``_info.json``).
        num_workers: data-loader worker processes (0 = load in the main process).
        seed: data seed: draws the shapes images, and orders the batches of every data set.
        train_size: shapes only: training images; ``None`` = 2000.
        val_size: shapes only: validation images; ``None`` = 1000.
        cache_dir: shapes only: where generated sets are cached; ``None`` =
            ``$XDG_CACHE_HOME/dat_lab/shapes`` or ``~/.cache/dat_lab/shapes``.
        shapes: shapes only: task and difficulty; ``None`` = ``ShapesConfig()``.
        augment: imagefolder, timm only: training augmentation; ``None`` =
            ``AugmentConfig()``.
        dataset: timm only: timm's dataset string: ``""`` (``None``) for a folder or tar,
            ``hfds/`` / ``hfids/`` for a local Hugging Face dataset (``hfds/NAME`` reads
            ``path/NAME``), ``wds/`` for webdataset shards, ``torch/cifar10`` and the like.
        train_split, val_split: timm only: the splits; ``None`` = ``train``, ``validation``
            (for a folder or tar: a sub-folder or ``<split>.tar``; ``val`` also answers to
            ``validation``, as in timm).
        classes: a class list file (one name per line) or a list of names: train and
            validate on these classes only, labelled ``0..N-1`` in this order (not shapes,
            digits). A file is read now, and the run id covers its names, not its path.
    """

    name: DatasetName
    img_size: int
    batch_size: int
    path: Path | None = None
    num_workers: int = 0
    seed: int = 0
    train_size: int | None = None
    val_size: int | None = None
    cache_dir: Path | None = None
    shapes: ShapesConfig | None = None
    augment: AugmentConfig | None = None
    dataset: str | None = added_field(None)
    train_split: str | None = added_field(None)
    val_split: str | None = added_field(None)
    classes: Path | tuple[str, ...] | None = added_field(None)

    def __post_init__(self) -> None:
        self._check_owners()
        self._resolve_classes()
        if self.name == "timm":
            self._check_timm()
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.num_workers >= 0, "num_workers", f"must be >= 0, got {self.num_workers}")
        check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        check(8 <= self.img_size <= 1024, "img_size", f"must be in 8..1024, got {self.img_size}")
        if self.name == "shapes":
            low, high = SHAPES_IMG_SIZE
            check(
                low <= self.img_size <= high,
                "img_size",
                f"shapes are drawn at {low}..{high} px, got {self.img_size}",
            )
        for key in ("train_size", "val_size"):
            value = getattr(self, key)
            if value is not None:
                check(value >= 2, key, f"must be >= 2 (one image of each label), got {value}")

    def _check_owners(self) -> None:
        """Refuse knobs the chosen data set does not use, and a path where none is wanted."""
        if self.name in ON_DISK:
            check(
                self.path is not None,
                "path",
                f"is required for {self.name!r} (the folder that holds the data)",
            )
        else:
            check(
                self.path is None,
                "path",
                f"{self.name!r} is bundled and takes no path; path is for {' and '.join(ON_DISK)}",
            )
        for key in ("train_size", "val_size", "cache_dir", "shapes"):
            check(
                getattr(self, key) is None or self.name == "shapes",
                key,
                f"is a shapes knob but name is {self.name!r} (its split is fixed)",
            )
        check(
            self.augment is None or self.name in ("imagefolder", "timm"),
            "augment",
            f"is an imagefolder knob (and a timm knob) but name is {self.name!r}",
        )
        for key in ("dataset", "train_split", "val_split"):
            check(
                getattr(self, key) is None or self.name == "timm",
                key,
                f"is a timm knob but name is {self.name!r}",
            )
        check(
            self.classes is None or self.name in ON_DISK,
            "classes",
            f"picks classes of the user's data ({', '.join(ON_DISK)}); {self.name!r} has "
            "its own fixed classes",
        )

    def _resolve_classes(self) -> None:
        """A class list file becomes its names (so the run id covers them, not the path)."""
        if isinstance(self.classes, Path):
            names = read_class_file(self.classes)
        elif self.classes is not None:
            names = check_class_list(self.classes)
        else:
            return
        object.__setattr__(self, "classes", names)

    def _check_timm(self) -> None:
        # A knob written at its default is stored as left out: one config, one run id.
        defaults = {"dataset": "", "train_split": TIMM_SPLITS[0], "val_split": TIMM_SPLITS[1]}
        for key, default in defaults.items():
            if getattr(self, key) == default:
                object.__setattr__(self, key, None)
        prefix, sep, _ = (self.dataset or "").partition("/")
        check(
            not sep or prefix.lower() in TIMM_PREFIXES,
            "dataset",
            f"reader {prefix!r} is not one dat-lab reads offline; use '' (a folder or tar) or "
            f"{', '.join(p + '/...' for p in TIMM_PREFIXES)}",
        )
        for key in ("train_split", "val_split"):
            value = getattr(self, key)
            check(value is None or bool(value.strip()), key, "must not be empty")

    def sizes(self) -> tuple[int, int]:
        """shapes: (train_size, val_size) with defaults filled in."""
        train, val = SHAPES_SIZES
        return (
            train if self.train_size is None else self.train_size,
            val if self.val_size is None else self.val_size,
        )

    def shapes_task(self) -> ShapesConfig:
        """shapes: the task config, ``ShapesConfig()`` when not given."""
        return self.shapes or ShapesConfig()

    def augmentation(self) -> AugmentConfig:
        """imagefolder, timm: the augmentation config, ``AugmentConfig()`` when not given."""
        return self.augment or AugmentConfig()

    def class_list(self) -> tuple[str, ...] | None:
        """The chosen classes (``data.classes``, read), or ``None`` for all of them."""
        assert not isinstance(self.classes, Path)  # __post_init__ reads a file
        return self.classes

    def splits(self) -> tuple[str, str]:
        """timm: (train_split, val_split) with defaults filled in."""
        train, val = TIMM_SPLITS
        return self.train_split or train, self.val_split or val
