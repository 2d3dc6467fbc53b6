"""CIFAR-10/100 python version: pickled batches read by an unpickler that runs nothing."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from digit_forms import TRAIN, VAL, digits, write_cifar_python

from dat_lab.data import build_datamodule, cifar
from dat_lab.data.config import DataConfig
from dat_lab.data.safe_pickle import load_array_pickle
from dat_lab.schema import ConfigError


def cfg(name, path, **extra):
    return DataConfig(name=name, img_size=32, batch_size=8, path=path, **extra)


@pytest.mark.parametrize("at", ["parent", "folder"])
def test_the_python_version_reads_the_pickled_planes_and_labels(tmp_path, at):
    write_cifar_python(tmp_path)
    path = tmp_path if at == "parent" else tmp_path / "cifar-10-batches-py"
    folder, version = cifar.find_version("cifar10", path)
    images, labels = cifar.load_split("cifar10", folder, version, "train")
    want_images, want_labels = digits(32)["train"]
    assert images.shape == (TRAIN, 3, 32, 32)
    assert np.array_equal(images.transpose(0, 2, 3, 1), want_images)
    assert np.array_equal(labels, want_labels)
    dm = build_datamodule(cfg("cifar10", path))
    dm.setup("fit")
    assert len(dm.train_set) == TRAIN and len(dm.val_set) == VAL


def _cifar100(root):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", 30), ("test", 10)):
        fine = rng.integers(0, 100, n)
        fine[:3] = [3, 97, 3]  # bear, wolf, bear
        batch = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "fine_labels": fine.tolist(),
            "coarse_labels": (fine // 5).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=3))
    return fine


def test_cifar100_keeps_listed_classes_relabelled_in_list_order(tmp_path):
    _cifar100(tmp_path)
    dm = build_datamodule(cfg("cifar100", tmp_path, classes=("wolf", "bear")))
    assert dm.num_classes == 2 and dm.class_names == ("wolf", "bear")
    dm.setup("fit")
    labels = dm.val_set.labels.tolist()
    assert labels[:3] == [1, 0, 1] and set(labels) <= {0, 1}
    full = build_datamodule(cfg("cifar100", tmp_path))
    assert full.num_classes == 100 and full.class_names[3] == "bear"


def test_a_class_the_data_set_lacks_is_named(tmp_path):
    _cifar100(tmp_path)
    with pytest.raises(ConfigError, match="'unicorn'") as info:
        build_datamodule(cfg("cifar100", tmp_path, classes=("bear", "unicorn")))
    assert info.value.key == "data.classes"


class _Payload:
    """Pickles as a call of os.system that would write a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"echo ran > {self.marker}",)


class _EvalPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w').write('ran')",)


@pytest.mark.parametrize("payload", [_Payload, _EvalPayload])
def test_a_pickle_that_calls_a_function_is_refused_and_never_runs(tmp_path, payload):
    write_cifar_python(tmp_path)
    marker = tmp_path / "marker"
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1], "x": payload(marker)}
    bad.write_bytes(pickle.dumps(batch, protocol=3))
    dm = build_datamodule(cfg("cifar10", tmp_path))
    with pytest.raises(ConfigError, match="refused") as info:
        dm.setup("fit")
    assert str(bad) in info.value.message
    assert ("posix.system" if payload is _Payload else "builtins.eval") in info.value.message
    assert info.value.key == "data.path"
    assert not marker.exists()


def test_numpy_arrays_of_either_numpy_name_load(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    file = tmp_path / "batch"
    text = pickle.dumps({"data": array}, protocol=3)
    assert b"numpy._core.multiarray" in text or b"numpy.core.multiarray" in text
    for name in (b"numpy._core.multiarray", b"numpy.core.multiarray"):
        other = b"numpy.core.multiarray" if name == b"numpy._core.multiarray" else name
        file.write_bytes(text.replace(b"numpy._core.multiarray", other))
        assert np.array_equal(load_array_pickle(file)["data"], array)


def test_a_damaged_pickle_is_one_error_naming_the_file(tmp_path):
    write_cifar_python(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(bad.read_bytes()[:100])
    dm = build_datamodule(cfg("cifar10", tmp_path))
    with pytest.raises(ConfigError, match="not a readable pickle") as info:
        dm.setup("fit")
    assert str(bad) in info.value.message
