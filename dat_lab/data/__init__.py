"""Offline data sets and their Lightning DataModules.

``build_datamodule(DataConfig(...))`` gives a LightningDataModule whose ``num_classes``,
``in_chans`` and ``img_size`` are known before any data is read:

- ``shapes``: synthetic long-range tasks (Pathfinder, SVRT-1, an SVRT-style row/column
  relation), generated and cached;
- ``digits``: scikit-learn's bundled 8x8 digits, upsampled;
- ``cifar10``, ``cifar100``: CIFAR's binary or python-version batches at a user path (the
  pickles read by an unpickler that allows numpy arrays only);
- ``imagefolder``: an ImageNet-layout folder at a user path, with the paper's augmentation;
- ``timm``: the user's data through timm's readers: a folder, a tar, a local Hugging Face
  dataset (``hfds/``, ``hfids/``), webdataset shards (``wds/``), torchvision's files
  (``torch/...``), with the paper's augmentation (see docs/data.md).

``DataConfig.classes`` keeps a subset of the classes of the user's data (ImageNet-100).
"""

from dat_lab.data.config import AugmentConfig, DataConfig, ShapesConfig
from dat_lab.data.datamodule import DatLabDataModule, build_datamodule

__all__ = ["AugmentConfig", "DataConfig", "DatLabDataModule", "ShapesConfig", "build_datamodule"]
