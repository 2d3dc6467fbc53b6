"""``digits``: scikit-learn's bundled handwritten digits (1,797 images, 8x8, 10 classes, BSD).

The images ship inside the scikit-learn wheel, so nothing is downloaded. Pixel values 0..16
are scaled to [0, 1], upsampled to ``img_size`` (bilinear, ``align_corners=False``) and
stored as uint8; one channel. The split is fixed for every ``DataConfig.seed``: a stratified
80/20 split drawn with :data:`SPLIT_SEED` (1,437 train, 360 val images).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SPLIT_SEED = 0
VAL_FRACTION = 0.2
NUM_CLASSES = 10


def _split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    train, val = train_test_split(
        np.arange(len(labels)), test_size=VAL_FRACTION, random_state=SPLIT_SEED, stratify=labels
    )
    return {"train": np.sort(train), "val": np.sort(val)}


def load_digits_split(split: str, img_size: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 1, img_size, img_size) and int64 labels of ``split`` (train or val)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    labels = bunch.target.astype(np.int64)
    index = _split_indices(labels)[split]
    small = torch.from_numpy(bunch.images[index] / 16.0).float()[:, None]
    big = F.interpolate(small, size=(img_size, img_size), mode="bilinear", align_corners=False)
    images = (big.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return images, labels[index]
