"""Offline data sets and their Lightning DataModules.

``build_datamodule(DataConfig(...))`` gives a LightningDataModule whose ``num_classes``,
``in_chans`` and ``img_size`` are known before any data is read:

- ``shapes``: synthetic long-range tasks (Pathfinder, SVRT-1, an SVRT-style row/column
  relation), generated and cached;
- ``digits``: scikit-learn's bundled 8x8 digits, upsampled;
- ``cifar10``: the binary CIFAR-10 batches at a user path;
- ``imagefolder``: an ImageNet-layout folder at a user path, with the paper's augmentation.
"""

from dat_lab.data.config import AugmentConfig, DataConfig, ShapesConfig
from dat_lab.data.datamodule import DatLabDataModule, build_datamodule

__all__ = ["AugmentConfig", "DataConfig", "DatLabDataModule", "ShapesConfig", "build_datamodule"]
