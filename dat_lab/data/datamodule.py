"""Lightning DataModules of every data set, and :func:`build_datamodule`.

``num_classes``, ``in_chans`` and ``img_size`` are known as soon as a DataModule is built (the
model is built from them before any data is read), and files on disk are checked then too,
so a wrong path fails before training with a :class:`~dat_lab.schema.ConfigError` naming
``data.path``. ``prepare_data`` only writes caches (it holds no state: Lightning runs it on one
process); ``setup`` loads. The training loader shuffles as a function of
``(DataConfig.seed, epoch)`` and records its position in checkpoints
(:mod:`dat_lab.data.sampling`), so batch order is the same on every run and after a resume;
``test_dataloader`` is the validation loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from dat_lab.data import cifar10, digits, imagefolder, shapes
from dat_lab.data.arrays import ArrayDataset
from dat_lab.data.config import DataConfig
from dat_lab.data.sampling import ResumableDataLoader
from dat_lab.data.transforms import NORMALIZATION, MeanStd, imagenet_eval, imagenet_train
from dat_lab.schema import ConfigError


class DatLabDataModule(pl.LightningDataModule):
    """Shared loaders of every data set; subclasses set the sizes and build the data sets.

    Attributes:
        num_classes: classes of the labels (``0 .. num_classes - 1``).
        in_chans: image channels.
        img_size: image side in pixels (images are square).
        class_names: one name per label.
        mean_std: the per-channel normalisation applied to every image.
    """

    num_classes: int
    in_chans: int
    class_names: tuple[str, ...]

    def __init__(self, cfg: DataConfig):
        super().__init__()
        self.cfg = cfg
        self.img_size = cfg.img_size
        self.mean_std: MeanStd = NORMALIZATION[cfg.name]
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self._train_loader: ResumableDataLoader | None = None
        self._resume_position: dict[str, int] | None = None

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        """The (train, val) data sets; called once, by :meth:`setup`."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set, self.val_set = self.build_datasets()

    def train_dataloader(self) -> DataLoader:
        loader = ResumableDataLoader(
            self._require(self.train_set), self.cfg.seed, **self._loader_kwargs()
        )
        if self._resume_position is not None:
            loader.load_state_dict(self._resume_position)
            self._resume_position = None
        self._train_loader = loader
        return loader

    def state_dict(self) -> dict[str, int]:
        """The training loader's position (epoch, batches done), stored in checkpoints.

        The DataModule carries it, not only the loader (which Lightning also asks), because
        Lightning restores the DataModule before building the loader, while a loader built
        early (``estimated_stepping_batches`` in ``configure_optimizers`` builds it during
        setup) is never handed its saved state.
        """
        return {} if self._train_loader is None else self._train_loader.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Keep a checkpoint's loader position for the next :meth:`train_dataloader`."""
        self._resume_position = dict(state) if state else None

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._require(self.val_set), shuffle=False, **self._loader_kwargs())

    def test_dataloader(self) -> DataLoader:
        """The validation set: none of these data sets has a labelled test split of its own."""
        return self.val_dataloader()

    @staticmethod
    def _require(dataset: Dataset | None) -> Dataset:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a data loader")
        return dataset

    def _loader_kwargs(self) -> dict[str, Any]:
        # Workers are not persistent: each epoch starts them afresh with seeds derived from
        # (seed, epoch), so a resumed run's workers draw what the uninterrupted run's drew.
        return {
            "batch_size": self.cfg.batch_size,
            "num_workers": self.cfg.num_workers,
            "pin_memory": torch.cuda.is_available(),
        }


class ShapesDataModule(DatLabDataModule):
    """Synthetic Pathfinder / SVRT-1 / aligned (:mod:`dat_lab.data.shapes`): 1 channel,
    2 classes."""

    num_classes = 2
    in_chans = 1

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        self.cache_dir = cfg.cache_dir or shapes.default_cache_dir()
        task = cfg.shapes_task()
        self.class_names = shapes.CLASS_NAMES[task.task]
        try:
            shapes.check_drawable(task.task, task.params(), cfg.img_size)
        except shapes.LayoutError as err:
            raise ConfigError(f"{err} (img_size {cfg.img_size})", "data.shapes") from None

    def spec(self, split: str) -> shapes.ShapesSpec:
        task = self.cfg.shapes_task()
        train_size, val_size = self.cfg.sizes()
        return shapes.ShapesSpec(
            task=task.task,
            params=tuple(sorted(task.params().items())),
            img_size=self.cfg.img_size,
            split=split,
            size=train_size if split == "train" else val_size,
            seed=self.cfg.seed,
        )

    def prepare_data(self) -> None:
        for split in shapes.SPLITS:
            shapes.load_or_generate(self.spec(split), self.cache_dir)

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        sets = [
            ArrayDataset(
                *shapes.load_or_generate(self.spec(split), self.cache_dir),
                self.mean_std,
                self.img_size,
            )
            for split in shapes.SPLITS
        ]
        return sets[0], sets[1]


class DigitsDataModule(DatLabDataModule):
    """scikit-learn's digits upsampled to ``img_size`` (:mod:`dat_lab.data.digits`)."""

    num_classes = digits.NUM_CLASSES
    in_chans = 1
    class_names = tuple(str(d) for d in range(10))

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        sets = [
            ArrayDataset(
                *digits.load_digits_split(split, self.img_size), self.mean_std, self.img_size
            )
            for split in ("train", "val")
        ]
        return sets[0], sets[1]


class Cifar10DataModule(DatLabDataModule):
    """CIFAR-10 binary batches (:mod:`dat_lab.data.cifar10`); train crops and flips."""

    num_classes = cifar10.NUM_CLASSES
    in_chans = 3
    class_names = cifar10.CLASS_NAMES

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        assert cfg.path is not None  # DataConfig requires it
        self.path = Path(cfg.path).expanduser()
        cifar10.check_cifar10_dir(self.path)

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        train = ArrayDataset(
            *cifar10.load_cifar10_split(self.path, "train"),
            self.mean_std,
            self.img_size,
            augment=True,
        )
        val = ArrayDataset(
            *cifar10.load_cifar10_split(self.path, "val"), self.mean_std, self.img_size
        )
        return train, val


class ImageFolderDataModule(DatLabDataModule):
    """ImageNet layout at ``path`` (:mod:`dat_lab.data.imagefolder`), the paper's transforms."""

    in_chans = 3

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        assert cfg.path is not None  # DataConfig requires it
        self.path = Path(cfg.path).expanduser()
        self.class_names = tuple(imagefolder.check_imagefolder(self.path))
        self.num_classes = len(self.class_names)

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        aug = self.cfg.augmentation()
        train = imagefolder.FixedClassImageFolder(
            self.path / "train", self.class_names, imagenet_train(self.img_size, aug)
        )
        val = imagefolder.FixedClassImageFolder(
            self.path / "val", self.class_names, imagenet_eval(self.img_size, aug)
        )
        return train, val


_MODULES: dict[str, type[DatLabDataModule]] = {
    "shapes": ShapesDataModule,
    "digits": DigitsDataModule,
    "cifar10": Cifar10DataModule,
    "imagefolder": ImageFolderDataModule,
}


def build_datamodule(cfg: DataConfig) -> DatLabDataModule:
    """The DataModule of ``cfg.name``; checks files on disk now (ConfigError on ``data.*``)."""
    return _MODULES[cfg.name](cfg)
