"""digits: scikit-learn's bundled 8x8 digits, upsampled, with a split that never moves."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from dat_lab.data import DataConfig, build_datamodule
from dat_lab.data.digits import load_digits_split
from dat_lab.data.transforms import NORMALIZATION


def test_split_is_fixed_stratified_and_disjoint():
    train_images, train_labels = load_digits_split("train", 8)
    val_images, val_labels = load_digits_split("val", 8)
    assert len(train_labels) == 1437 and len(val_labels) == 360
    assert np.bincount(val_labels).min() >= 34  # stratified: ~36 of each digit
    train_rows = {row.tobytes() for row in train_images}
    assert sum(row.tobytes() in train_rows for row in val_images) < 10  # (a few duplicates exist)
    again, _ = load_digits_split("val", 8)
    assert np.array_equal(again, val_images)


def test_native_size_keeps_the_pixels():
    images, labels = load_digits_split("train", 8)
    bunch = load_digits()
    first = bunch.images[0] / 16.0 * 255
    index = np.flatnonzero((images[:, 0] == np.round(first)).all(axis=(1, 2)))
    assert len(index) >= 1 and labels[index[0]] == bunch.target[0]


def test_upsampled_images_have_img_size_and_one_channel():
    images, labels = load_digits_split("val", 40)
    assert images.shape == (360, 1, 40, 40) and images.dtype == np.uint8
    assert labels.min() == 0 and labels.max() == 9


def test_documented_normalisation_matches_the_data():
    bunch = load_digits()
    (mean,), (std,) = NORMALIZATION["digits"]
    assert abs(bunch.images.mean() / 16 - mean) < 1e-3
    assert abs(bunch.images.std() / 16 - std) < 1e-3


def test_seed_orders_batches_but_does_not_change_the_split():
    a = build_datamodule(DataConfig(name="digits", img_size=16, batch_size=32, seed=0))
    b = build_datamodule(DataConfig(name="digits", img_size=16, batch_size=32, seed=1))
    for dm in (a, b):
        dm.setup("fit")
    assert np.array_equal(a.val_set.labels.numpy(), b.val_set.labels.numpy())
    _, ya = next(iter(a.train_dataloader()))
    _, yb = next(iter(b.train_dataloader()))
    assert not np.array_equal(ya.numpy(), yb.numpy())
