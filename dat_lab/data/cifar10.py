"""``cifar10``: the binary version of CIFAR-10, read as plain bytes (no pickle).

The folder at ``DataConfig.path`` must hold ``data_batch_1.bin`` .. ``data_batch_5.bin``
(train) and ``test_batch.bin`` (val). Each record is 3,073 bytes: one label byte (0..9), then
1,024 red, 1,024 green and 1,024 blue bytes of a 32x32 image, row-major. The official files
hold 10,000 records each; any file that is not a whole, non-zero number of records is refused
(a smaller whole file is accepted so that tests and subsets can use small fixtures).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dat_lab.schema import ConfigError

TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
VAL_FILES = ("test_batch.bin",)
SIDE = 32
RECORD_BYTES = 1 + 3 * SIDE * SIDE
NUM_CLASSES = 10
CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


def check_cifar10_dir(path: Path, key: str = "data.path") -> None:
    """Raise ConfigError (naming ``key`` and the file) unless all six batches are usable."""
    if not path.is_dir():
        raise ConfigError(f"cifar10 folder {str(path)!r} does not exist", key)
    for name in TRAIN_FILES + VAL_FILES:
        file = path / name
        if not file.is_file():
            raise ConfigError(
                f"cifar10 file {str(file)!r} is missing; expected "
                f"{', '.join(TRAIN_FILES + VAL_FILES)} (the binary version)",
                key,
            )
        size = file.stat().st_size
        if size == 0 or size % RECORD_BYTES:
            raise ConfigError(
                f"cifar10 file {str(file)!r} has {size} bytes, not a whole number of "
                f"{RECORD_BYTES}-byte records (10,000 records = {10_000 * RECORD_BYTES} bytes)",
                key,
            )


def read_batch(file: Path, key: str = "data.path") -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 3, 32, 32) and int64 labels (N,) of one ``.bin`` file."""
    raw = np.fromfile(file, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise ConfigError(
            f"cifar10 file {str(file)!r} is not whole {RECORD_BYTES}-byte records", key
        )
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= NUM_CLASSES:
        bad = int(np.argmax(labels >= NUM_CLASSES))
        raise ConfigError(
            f"cifar10 file {str(file)!r}: record {bad} has label {labels[bad]}, allowed 0..9",
            key,
        )
    images = records[:, 1:].reshape(-1, 3, SIDE, SIDE)
    return images, labels


def load_cifar10_split(
    path: Path, split: str, key: str = "data.path"
) -> tuple[np.ndarray, np.ndarray]:
    """All records of ``split`` (train: the five data batches; val: the test batch)."""
    files = TRAIN_FILES if split == "train" else VAL_FILES
    parts = [read_batch(path / name, key) for name in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
