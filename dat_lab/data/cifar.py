"""``cifar10`` and ``cifar100``: the binary or the python version, as the official tarballs
extract.

``DataConfig.path`` is the extracted folder, or the folder that holds it:

- cifar10, binary: ``cifar-10-batches-bin/`` with ``data_batch_1.bin`` .. ``data_batch_5.bin``
  (train) and ``test_batch.bin`` (val);
- cifar10, python (torchvision's): ``cifar-10-batches-py/`` with ``data_batch_1`` ..
  ``data_batch_5`` and ``test_batch``;
- cifar100, binary: ``cifar-100-binary/`` with ``train.bin`` and ``test.bin``;
- cifar100, python: ``cifar-100-python/`` with ``train`` and ``test``.

Binary records are one label byte (CIFAR-100: a coarse then a fine label byte), then 1,024
red, 1,024 green and 1,024 blue bytes of a 32x32 image, row-major; read as plain bytes. A file
that is not a whole, non-zero number of records is refused (a smaller whole file is accepted
so that tests and subsets can use small fixtures). Python-version files are pickled dicts
(``data``: uint8 (N, 3072) in the same plane order; ``labels``, CIFAR-100: ``fine_labels``),
read with :mod:`dat_lab.data.safe_pickle`, which refuses any file whose pickle names a
function (torchvision's loader unpickles them unrestricted). CIFAR-100 labels
are its 100 fine classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dat_lab.data.safe_pickle import load_array_pickle
from dat_lab.schema import ConfigError

SIDE = 32
PIXELS = 3 * SIDE * SIDE
CIFAR10_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# CIFAR-100's fine label names in label order (alphabetical, as in its ``meta`` file).
CIFAR100_NAMES = tuple(
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
    "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house "
    "kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle "
    "mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree "
    "plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark "
    "shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table "
    "tank telephone television tiger tractor train trout tulip turtle wardrobe whale "
    "willow_tree wolf woman worm".split()
)


@dataclass(frozen=True)
class Version:
    """One version (binary or python) of one CIFAR data set: its folder and files."""

    folder: str  # the name the official tarball extracts to
    train: tuple[str, ...]
    val: tuple[str, ...]
    label_bytes: int = 0  # binary: label bytes before the pixels (the last one is the label)
    label_key: str = ""  # python: the dict key of the labels

    @property
    def files(self) -> tuple[str, ...]:
        return self.train + self.val


VERSIONS: dict[str, tuple[Version, Version]] = {
    "cifar10": (
        Version(
            "cifar-10-batches-bin",
            tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
            ("test_batch.bin",),
            label_bytes=1,
        ),
        Version(
            "cifar-10-batches-py",
            tuple(f"data_batch_{i}" for i in range(1, 6)),
            ("test_batch",),
            label_key="labels",
        ),
    ),
    "cifar100": (
        Version("cifar-100-binary", ("train.bin",), ("test.bin",), label_bytes=2),
        Version("cifar-100-python", ("train",), ("test",), label_key="fine_labels"),
    ),
}
CLASS_NAMES = {"cifar10": CIFAR10_NAMES, "cifar100": CIFAR100_NAMES}


def find_version(name: str, path: Path, key: str = "data.path") -> tuple[Path, Version]:
    """The folder holding a complete version of ``name`` (``path`` or the tarball's folder in
    it) and that version; ConfigError naming ``key`` and what was looked for otherwise."""
    if not path.is_dir():
        raise ConfigError(f"{name} folder {str(path)!r} does not exist", key)
    for version in VERSIONS[name]:
        for folder in (path, path / version.folder):
            present = [(folder / f).is_file() for f in version.files]
            if any(present) and not all(present):
                missing = folder / version.files[present.index(False)]
                raise ConfigError(
                    f"{name} file {str(missing)!r} is missing; {version.folder}/ holds "
                    f"{', '.join(version.files)}",
                    key,
                )
            if all(present):
                if version.label_bytes:
                    for f in version.files:
                        _check_record_size(folder / f, version, key)
                return folder, version
    wanted = "; or ".join(f"{v.folder}/ with {', '.join(v.files)}" for v in VERSIONS[name])
    raise ConfigError(f"no complete {name} in {str(path)!r}: expected {wanted}", key)


def _check_record_size(file: Path, version: Version, key: str) -> None:
    record = version.label_bytes + PIXELS
    size = file.stat().st_size
    if size == 0 or size % record:
        raise ConfigError(
            f"{str(file)!r} has {size} bytes, not a whole number of {record}-byte records",
            key,
        )


def _check_labels(labels: np.ndarray, file: Path, num_classes: int, key: str) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise ConfigError(
            f"{str(file)!r}: record {bad[0]} has label {labels[bad[0]]}, "
            f"allowed 0..{num_classes - 1}",
            key,
        )


def read_binary(file: Path, version: Version, key: str) -> tuple[np.ndarray, np.ndarray]:
    record = version.label_bytes + PIXELS
    raw = np.fromfile(file, dtype=np.uint8)
    if raw.size == 0 or raw.size % record:
        raise ConfigError(f"{str(file)!r} is not whole {record}-byte records", key)
    records = raw.reshape(-1, record)
    labels = records[:, version.label_bytes - 1].astype(np.int64)
    return records[:, version.label_bytes :].reshape(-1, 3, SIDE, SIDE), labels


def read_python(file: Path, version: Version, key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = load_array_pickle(file, key)
    data = batch.get("data") if isinstance(batch, dict) else None
    labels = batch.get(version.label_key) if isinstance(batch, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ConfigError(f"{str(file)!r}: 'data' is not a uint8 (N, {PIXELS}) array", key)
    if data.shape[1] != PIXELS or labels is None or len(labels) != len(data):
        raise ConfigError(
            f"{str(file)!r}: expected 'data' (N, {PIXELS}) and N {version.label_key!r}, got "
            f"{data.shape} and {None if labels is None else len(labels)}",
            key,
        )
    return data.reshape(-1, 3, SIDE, SIDE), np.asarray(labels, dtype=np.int64)


def load_split(
    name: str, folder: Path, version: Version, split: str, key: str = "data.path"
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 3, 32, 32) and int64 labels (N,) of ``split`` (train or val)."""
    read = read_binary if version.label_bytes else read_python
    parts = []
    for file in (folder / f for f in (version.train if split == "train" else version.val)):
        images, labels = read(file, version, key)
        _check_labels(labels, file, len(CLASS_NAMES[name]), key)
        parts.append((images, labels))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
