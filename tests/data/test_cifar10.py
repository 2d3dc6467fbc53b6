"""cifar10: real binary records written to tmp_path, read back byte for byte; strict files."""

from __future__ import annotations

import numpy as np
import pytest

from dat_lab.data import build_datamodule, cifar
from dat_lab.data.config import DataConfig
from dat_lab.schema import ConfigError

BINARY = cifar.VERSIONS["cifar10"][0]
TRAIN_FILES, VAL_FILES = BINARY.train, BINARY.val
RECORD_BYTES = 1 + cifar.PIXELS


def load_cifar10_split(path, split):
    return cifar.load_split("cifar10", path, BINARY, split)


def write_batch(file, images: np.ndarray, labels: np.ndarray) -> None:
    """CIFAR-10 binary layout: label byte, then R, G, B planes of 32x32, row-major."""
    records = np.concatenate(
        [labels.astype(np.uint8)[:, None], images.reshape(len(images), -1)], 1
    )
    file.write_bytes(records.astype(np.uint8).tobytes())


def make_cifar_dir(root, per_file: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    written = {}
    for name in TRAIN_FILES + VAL_FILES:
        images = rng.integers(0, 256, (per_file, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, per_file)
        write_batch(root / name, images, labels)
        written[name] = (images, labels)
    return written


def test_records_are_read_as_label_then_rgb_planes(tmp_path):
    written = make_cifar_dir(tmp_path)
    images, labels = load_cifar10_split(tmp_path, "train")
    assert images.shape == (20, 3, 32, 32) and images.dtype == np.uint8
    assert np.array_equal(images[:4], written["data_batch_1.bin"][0])
    assert np.array_equal(images[16:], written["data_batch_5.bin"][0])
    assert np.array_equal(labels[:4], written["data_batch_1.bin"][1])
    val_images, val_labels = load_cifar10_split(tmp_path, "val")
    assert np.array_equal(val_images, written["test_batch.bin"][0])
    assert np.array_equal(val_labels, written["test_batch.bin"][1])


def test_a_red_pixel_stays_red(tmp_path):
    make_cifar_dir(tmp_path)
    image = np.zeros((1, 3, 32, 32), np.uint8)
    image[0, 0, 2, 5] = 255  # red plane, row 2, column 5
    write_batch(tmp_path / "test_batch.bin", image, np.array([3]))
    images, labels = load_cifar10_split(tmp_path, "val")
    assert images[0, 0, 2, 5] == 255 and images[0, 1:].max() == 0 and labels[0] == 3


def cfg(path, **extra):
    return DataConfig(name="cifar10", img_size=32, batch_size=8, path=path, **extra)


def test_datamodule_batches_are_normalised_cifar_images(tmp_path):
    make_cifar_dir(tmp_path)
    dm = build_datamodule(cfg(tmp_path))
    assert (dm.num_classes, dm.in_chans, dm.img_size) == (10, 3, 32)
    dm.setup("fit")
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.dtype.is_floating_point
    assert y.dtype.is_signed and 0 <= int(y.min()) and int(y.max()) <= 9
    x, _ = next(iter(dm.train_dataloader()))  # cropped and flipped, same shape
    assert x.shape == (8, 3, 32, 32)


def test_images_are_resized_to_img_size(tmp_path):
    make_cifar_dir(tmp_path)
    dm = build_datamodule(DataConfig(name="cifar10", img_size=64, batch_size=2, path=tmp_path))
    dm.setup("fit")
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 3, 64, 64)


@pytest.mark.parametrize("missing", ["data_batch_3.bin", "test_batch.bin"])
def test_missing_batch_file_is_a_config_error_naming_it(tmp_path, missing):
    make_cifar_dir(tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(ConfigError) as info:
        build_datamodule(cfg(tmp_path))
    assert info.value.key == "data.path"
    assert str(tmp_path / missing) in info.value.message


def test_file_that_is_not_whole_records_is_a_config_error(tmp_path):
    make_cifar_dir(tmp_path)
    bad = tmp_path / "data_batch_2.bin"
    bad.write_bytes(bad.read_bytes()[:-1])
    with pytest.raises(ConfigError, match=f"{RECORD_BYTES}-byte records") as info:
        build_datamodule(cfg(tmp_path))
    assert info.value.key == "data.path" and str(bad) in info.value.message


def test_empty_file_is_a_config_error(tmp_path):
    make_cifar_dir(tmp_path)
    (tmp_path / "data_batch_4.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match="data_batch_4.bin"):
        build_datamodule(cfg(tmp_path))


def test_missing_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as info:
        build_datamodule(cfg(tmp_path / "nowhere"))
    assert info.value.key == "data.path"


def test_label_out_of_range_is_a_config_error_at_setup(tmp_path):
    make_cifar_dir(tmp_path)
    write_batch(tmp_path / "test_batch.bin", np.zeros((2, 3, 32, 32), np.uint8), np.array([1, 12]))
    dm = build_datamodule(cfg(tmp_path))
    with pytest.raises(ConfigError, match="record 1 has label 12"):
        dm.setup("fit")
