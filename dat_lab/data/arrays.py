"""An in-memory image data set: uint8 arrays in, normalised float tensors out."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from dat_lab.data.transforms import MeanStd, random_crop_flip, resize


class ArrayDataset(Dataset):
    """Images held as one uint8 array (N, C, H, W) with int64 labels (N,).

    Items are ``(float32 (C, img_size, img_size), int label)``: optionally cropped and flipped
    (``augment``), scaled to [0, 1], resized to ``img_size`` if the array is another size,
    then normalised with ``mean_std``. Keeping uint8 keeps CIFAR-10 at 150 MB, not 600.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        mean_std: MeanStd,
        img_size: int,
        augment: bool = False,
    ):
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(
                f"expected uint8 (N, C, H, W) images, got {images.dtype} {images.shape}"
            )
        if labels.shape != (len(images),):
            raise ValueError(f"expected {len(images)} labels, got shape {labels.shape}")
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.mean_std = mean_std
        self._mean = torch.tensor(mean_std[0], dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.tensor(mean_std[1], dtype=torch.float32).view(-1, 1, 1)
        self.img_size = img_size
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.augment:
            image = random_crop_flip(image)
        x = (image.float() / 255.0 - self._mean) / self._std
        x = resize(x, self.img_size)
        return x, int(self.labels[index])
