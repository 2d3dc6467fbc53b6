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

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from dat_lab.data import cifar, digits, imagefolder, iterable, readers, shapes
from dat_lab.data.arrays import ArrayDataset
from dat_lab.data.classes import subset_indices
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
        self._train_loader: ResumableDataLoader | iterable.EpochLoader | None = None
        self._resume_position: dict[str, int] | None = None

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        """The (train, val) data sets; called once, by :meth:`setup`."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set, self.val_set = self.build_datasets()

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer  # None outside a Trainer: one process
        world, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        train_set = self._require(self.train_set)
        loader: ResumableDataLoader | iterable.EpochLoader
        if isinstance(train_set, IterableDataset):  # shards itself by rank and worker
            loader = iterable.EpochLoader(
                train_set, self.cfg.seed, self._current_epoch, **self._loader_kwargs()
            )
        else:
            loader = ResumableDataLoader(
                train_set, self.cfg.seed, world, rank, **self._loader_kwargs()
            )
        if self._resume_position is not None:
            loader.load_state_dict(self._resume_position)
            self._resume_position = None
        self._train_loader = loader
        return loader

    def _current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

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
        val_set = self._require(self.val_set)
        if isinstance(val_set, IterableDataset):
            return iterable.EpochLoader(
                val_set, self.cfg.seed, self._current_epoch, **self._loader_kwargs()
            )
        return DataLoader(val_set, shuffle=False, **self._loader_kwargs())

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


class CifarDataModule(DatLabDataModule):
    """CIFAR-10 / CIFAR-100, binary or python version (:mod:`dat_lab.data.cifar`); train
    crops and flips; ``data.classes`` keeps the listed classes."""

    in_chans = 3

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        assert cfg.path is not None  # DataConfig requires it
        self.folder, self.version = cifar.find_version(cfg.name, Path(cfg.path).expanduser())
        names = cifar.CLASS_NAMES[cfg.name]
        wanted = cfg.class_list()
        self.keep = None if wanted is None else subset_indices(names, wanted, cfg.name)
        self.class_names = tuple(wanted or names)
        self.num_classes = len(self.class_names)

    def _split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        images, labels = cifar.load_split(self.cfg.name, self.folder, self.version, split)
        if self.keep is None:
            return images, labels
        relabel = np.full(len(cifar.CLASS_NAMES[self.cfg.name]), -1, np.int64)
        relabel[self.keep] = np.arange(len(self.keep))
        mask = relabel[labels] >= 0
        return images[mask], relabel[labels[mask]]

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        train = ArrayDataset(*self._split("train"), self.mean_std, self.img_size, augment=True)
        val = ArrayDataset(*self._split("val"), self.mean_std, self.img_size)
        return train, val


class ImageFolderDataModule(DatLabDataModule):
    """ImageNet layout at ``path`` (:mod:`dat_lab.data.imagefolder`), the paper's transforms."""

    in_chans = 3

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        assert cfg.path is not None  # DataConfig requires it
        self.path = Path(cfg.path).expanduser()
        found = imagefolder.check_imagefolder(self.path)
        wanted = cfg.class_list()
        if wanted is not None:
            subset_indices(found, wanted, repr(str(self.path / "train")))
        self.class_names = tuple(wanted or found)
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


class TimmDataModule(DatLabDataModule):
    """The user's data through timm's readers (:mod:`dat_lab.data.readers`), with the
    paper's transforms. A map-style train set is read when the module is built (its classes
    size the model); iterable ones (wds/, hfids/) in :meth:`setup`, once the DDP group exists.
    """

    in_chans = 3

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        assert cfg.path is not None  # DataConfig requires it
        self.path = Path(cfg.path).expanduser()
        if not self.path.exists():
            raise ConfigError(f"{str(self.path)!r} does not exist", "data.path")
        self.dataset = cfg.dataset or ""
        self.prefix = readers.prefix_of(self.dataset)
        readers.require_extra(self.prefix)
        self.splits = dict(zip(("train", "val"), cfg.splits(), strict=True))
        wanted = cfg.class_list()
        if wanted is not None and self.prefix in (*readers.ITERABLE, "torch"):
            why = (
                "torchvision's data sets have their own fixed classes; use name: cifar10 or "
                "cifar100"
                if self.prefix == "torch"
                else "an iterable reader must know its samples per epoch before reading; use "
                "a folder, tar or hfds/ form, or shards written from the subset"
            )
            raise ConfigError(
                f"cannot pick classes of a {self.prefix}/ reader ({why})", "data.classes"
            )
        self._train: Any = None
        if self.prefix in readers.ITERABLE:
            self.class_names = self._iterable_classes()
        else:
            class_map = None if wanted is None else {n: i for i, n in enumerate(wanted)}
            self._train = self._map_style("train", class_map, wanted)
            found = readers.class_to_idx(self._train)
            self.class_names = tuple(wanted or sorted(found, key=found.__getitem__))
        self.num_classes = len(self.class_names)

    def _key(self, split: str) -> str:
        return f"data.{split}_split"

    def _map_style(
        self, split: str, class_map: dict[str, int] | None, wanted: tuple[str, ...] | None
    ) -> Any:
        name, key = self.splits[split], self._key(split)
        if self.prefix == "hfds" and class_map is not None:
            ds = readers.create(self.dataset, self.path, name, key, class_map=class_map)
            readers.keep_hf_classes(ds, list(class_map), f"{self.dataset} split {name!r}")
            return ds
        ds = readers.create(self.dataset, self.path, name, key, class_map=class_map)
        if wanted is not None:  # timm drops the other classes; a listed one must have images
            counts = np.bincount(readers.targets(ds), minlength=len(wanted))
            if (counts == 0).any():
                missing = wanted[int(np.argmax(counts == 0))]
                raise ConfigError(
                    f"class {missing!r} has no images in split {name!r} of {str(self.path)!r}",
                    "data.classes",
                )
        return ds

    def _iterable_classes(self) -> tuple[str, ...]:
        if self.prefix == "wds":
            info = readers.wds_info(self.path)
            for split in self.splits:
                readers.check_wds_split(info, self.path, self.splits[split], self._key(split))
            return readers.wds_class_names(info, self.path)
        return readers.hf_class_names(readers.hf_folder(self.path, self.dataset))

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.prefix in readers.ITERABLE:
            world = self.trainer.world_size if self.trainer is not None else 1
            for split, ds in (("train", self.train_set), ("val", self.val_set)):
                iterable.configure(ds, self.cfg.num_workers)
                where = f"{self.dataset} split {self.splits[split]!r} at {str(self.path)!r}"
                iterable.check_shards(ds, world, self.cfg.num_workers, where)

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        aug = self.cfg.augmentation()
        if self.prefix in readers.ITERABLE:
            train = readers.create(
                self.dataset, self.path, self.splits["train"], self._key("train"),
                is_training=True, seed=self.cfg.seed,
            )  # fmt: skip
            val = readers.create(self.dataset, self.path, self.splits["val"], self._key("val"))
        else:
            train, self._train = self._train, None
            class_map = {n: i for i, n in enumerate(self.class_names)}
            val = self._map_style("val", class_map, None)
        train.transform = imagenet_train(self.img_size, aug)
        val.transform = imagenet_eval(self.img_size, aug)
        return train, val


_MODULES: dict[str, type[DatLabDataModule]] = {
    "shapes": ShapesDataModule,
    "digits": DigitsDataModule,
    "cifar10": CifarDataModule,
    "cifar100": CifarDataModule,
    "imagefolder": ImageFolderDataModule,
    "timm": TimmDataModule,
}


def build_datamodule(cfg: DataConfig) -> DatLabDataModule:
    """The DataModule of ``cfg.name``; checks files on disk now (ConfigError on ``data.*``)."""
    return _MODULES[cfg.name](cfg)
