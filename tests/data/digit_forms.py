"""scikit-learn's bundled digits written in every form users keep ImageNet in.

The same images (8x8 digits scaled to 16x16 RGB, PNG: lossless, so a sample is recognised by
its pixels after any reader) go into a class folder, a tar, four webdataset shards, a
parquet Hugging Face dataset and CIFAR python-version batch files. ``TRAIN``/``VAL`` samples
per split; class names ``d0``..``d9``.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

TRAIN, VAL = 240, 40  # webdataset: 4 shards of 60 and 4 of 10; 10 classes
NAMES = tuple(f"d{i}" for i in range(10))
SIDE = 16
WDS_SHARDS = {"train": 4, "validation": 4}
HF_SHARDS = 4


def digits(side: int = SIDE) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """uint8 RGB (N, side, side, 3) images and labels of each split (first TRAIN + VAL)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = (bunch.images[: TRAIN + VAL] * (255 / 16)).round().astype(np.uint8)
    big = np.stack([np.asarray(Image.fromarray(im).resize((side, side))) for im in small])
    rgb = np.repeat(big[..., None], 3, axis=-1)
    labels = bunch.target[: TRAIN + VAL].astype(np.int64)
    return {"train": (rgb[:TRAIN], labels[:TRAIN]), "validation": (rgb[TRAIN:], labels[TRAIN:])}


def png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, "PNG")
    return out.getvalue()


def fingerprint(image: np.ndarray) -> str:
    """A sample's identity: the hash of its uint8 RGB pixels."""
    return hashlib.sha1(np.ascontiguousarray(image, dtype=np.uint8).tobytes()).hexdigest()[:12]


def expected(split: str = "train", side: int = SIDE) -> list[tuple[str, int]]:
    """The sorted multiset of (pixels, label) of a split."""
    images, labels = digits(side)[split]
    return sorted((fingerprint(im), int(y)) for im, y in zip(images, labels, strict=True))


def write_folder(root: Path, val_name: str = "val") -> Path:
    for split, (images, labels) in digits().items():
        folder = root / ("train" if split == "train" else val_name)
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            file = folder / NAMES[label] / f"{i:05d}.png"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(png(image))
    return root


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_tar(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in digits().items():
        with tarfile.open(root / f"{split}.tar", "w") as tar:
            for i, (image, label) in enumerate(zip(images, labels, strict=True)):
                _add(tar, f"{NAMES[label]}/{i:05d}.png", png(image))
    return root


def write_wds(root: Path) -> Path:
    """webdataset shards (``key.png`` + ``key.cls``) and timm's ``_info.json``."""
    import webdataset as wds

    root.mkdir(parents=True, exist_ok=True)
    info: dict = {"num_classes": len(NAMES), "class_names": list(NAMES), "splits": {}}
    for split, (images, labels) in digits().items():
        shards = WDS_SHARDS[split]
        per = len(images) // shards
        names = [f"{split}-{s:04d}.tar" for s in range(shards)]
        for s, name in enumerate(names):
            with wds.TarWriter(str(root / name)) as sink:
                for i in range(s * per, (s + 1) * per):
                    sink.write(
                        {"__key__": f"{i:05d}", "png": png(images[i]), "cls": int(labels[i])}
                    )
        info["splits"][split] = {
            "name": split,
            "num_samples": len(images),
            "filenames": names,
            "shard_lengths": [per] * shards,
        }
    (root / "_info.json").write_text(json.dumps(info))
    return root


def write_parquet(root: Path) -> Path:
    """A hub-style HF dataset: ``data/<split>-0000K-of-00004.parquet`` (ClassLabel names in
    the schema) and the README.md card that declares features and split sizes."""
    import datasets

    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(NAMES))}
    )
    splits = []
    for split, (images, labels) in digits().items():
        table = {
            "image": [{"bytes": png(im), "path": None} for im in images],
            "label": [int(y) for y in labels],
        }
        ds = datasets.Dataset.from_dict(table, features=features)
        for s in range(HF_SHARDS):  # hfids: one shard a reader
            part = ds.shard(HF_SHARDS, s, contiguous=True)
            part.to_parquet(str(root / "data" / f"{split}-{s:05d}-of-{HF_SHARDS:05d}.parquet"))
        splits.append({"name": split, "num_bytes": ds.data.nbytes, "num_examples": len(ds)})
    _write_card(root, splits)
    return root


def _write_card(root: Path, splits: list[dict]) -> None:
    """The README.md dataset card the hub's datasets carry: features, splits, data files."""
    import yaml

    names = {str(i): name for i, name in enumerate(NAMES)}
    card = {
        "dataset_info": {
            "features": [
                {"name": "image", "dtype": "image"},
                {"name": "label", "dtype": {"class_label": {"names": names}}},
            ],
            "splits": splits,
        },
        "configs": [
            {
                "config_name": "default",
                "data_files": [
                    {"split": s["name"], "path": f"data/{s['name']}-*"} for s in splits
                ],
            }
        ],
    }
    (root / "README.md").write_text(f"---\n{yaml.safe_dump(card, sort_keys=False)}---\n")
    return root


def write_cifar_python(root: Path, side: int = 32) -> Path:
    """CIFAR-10 python-version batches: pickled dicts, naming only numpy globals as the official
    (Python 2, protocol 2) files do; Python 3 writes protocol 2 bytes through _codecs.encode."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    split = digits(side)
    train_images, train_labels = split["train"]
    files = {
        f"data_batch_{i + 1}": part for i, part in enumerate(np.array_split(np.arange(TRAIN), 5))
    }
    for name, index in files.items():
        _pickle_batch(folder / name, train_images[index], train_labels[index])
    _pickle_batch(folder / "test_batch", *split["validation"])
    return root


def _pickle_batch(file: Path, images: np.ndarray, labels: np.ndarray) -> None:
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # R, G, B planes
    batch = {"batch_label": "digits", "labels": [int(y) for y in labels], "data": data}
    file.write_bytes(pickle.dumps(batch, protocol=3))  # no _codecs global, as py2 files
