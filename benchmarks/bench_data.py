"""Decode + transform throughput of timm's readers: the same JPEGs as a class folder, a tar,
a parquet Hugging Face dataset and webdataset shards.

Usage::

    python benchmarks/bench_data.py                      # 2,000 JPEGs, 2 workers, 224 px
    python benchmarks/bench_data.py --images 500 --repeats 1 --workers 0

Each form is read through ``DataConfig(name="timm", ...)`` and its training loader exactly as
a run reads it: timm's reader, decode, the paper's train transform (random-resized crop to
``--size``, flip, RandAugment, random erasing), batches of 64 collated in ``--workers``
worker processes. One pass is one epoch over all images; images/s counts from the moment
the loader is asked for its first batch (worker start-up included, as every epoch pays it).
Forms are measured in turn within each repeat, so a change in the machine's load falls on
all of them alike; the table gives the median of the repeats and each form's ratio to the
folder. The images are synthetic (smooth random colour fields, 500x375 like an average
ImageNet photo, JPEG quality 90), written to ``--dir`` (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = 10
SHARDS = 4
BATCH = 64
FORMS = ("folder", "tar", "parquet", "wds")
DATASET = {"folder": "", "tar": "", "parquet": "hfds/", "wds": "wds/"}


def jpegs(count: int, seed: int = 0) -> list[bytes]:
    """``count`` JPEGs of smooth random colour fields, 500x375."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_forms(root: Path, images: list[bytes]) -> dict[str, Path]:
    """The same images, labelled ``i % CLASSES``, in every form; the root of each."""
    import datasets
    import webdataset as wds

    labels = [i % CLASSES for i in range(len(images))]
    names = [f"c{k}" for k in range(CLASSES)]
    roots = {form: root / form for form in FORMS}
    for i, (data, label) in enumerate(zip(images, labels, strict=True)):
        file = roots["folder"] / "train" / names[label] / f"{i:05d}.jpg"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
    roots["tar"].mkdir(parents=True)
    with tarfile.open(roots["tar"] / "train.tar", "w") as tar:
        for i, (data, label) in enumerate(zip(images, labels, strict=True)):
            _add(tar, f"{names[label]}/{i:05d}.jpg", data)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=names)}
    )
    table = {"image": [{"bytes": b, "path": None} for b in images], "label": labels}
    ds = datasets.Dataset.from_dict(table, features=features)
    for s in range(SHARDS):
        file = roots["parquet"] / "data" / f"train-{s:05d}-of-{SHARDS:05d}.parquet"
        ds.shard(SHARDS, s, contiguous=True).to_parquet(str(file))
    roots["wds"].mkdir(parents=True)
    per = len(images) // SHARDS
    shards = [f"train-{s:04d}.tar" for s in range(SHARDS)]
    for s, name in enumerate(shards):
        with wds.TarWriter(str(roots["wds"] / name)) as sink:
            for i in range(s * per, (s + 1) * per):
                sink.write({"__key__": f"{i:05d}", "jpg": images[i], "cls": labels[i]})
    split = {"name": "train", "num_samples": per * SHARDS, "filenames": shards}
    info = {
        "num_classes": CLASSES,
        "splits": {"train": {**split, "shard_lengths": [per] * SHARDS}},
    }
    (roots["wds"] / "_info.json").write_text(json.dumps(info))
    return roots


def loader(form: str, root: Path, size: int, workers: int):
    from dat_lab.data import DataConfig, build_datamodule

    cfg = DataConfig(
        name="timm",
        dataset=DATASET[form],
        path=root,
        img_size=size,
        batch_size=BATCH,
        num_workers=workers,
        val_split="train",  # the benchmark reads the train loader only
    )
    dm = build_datamodule(cfg)
    dm.setup("fit")
    return dm.train_dataloader()


def images_per_s(train_loader) -> float:
    """One epoch of ``train_loader``: images over seconds."""
    start = time.perf_counter()
    seen = sum(len(y) for _, y in train_loader)
    return seen / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where the forms are written")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        os.environ.setdefault("HF_DATASETS_CACHE", str(root / "hf_cache"))
        roots = write_forms(root, jpegs(args.images))
        loaders = {f: loader(f, roots[f], args.size, args.workers) for f in FORMS}
        load_before = os.getloadavg()
        rates: dict[str, list[float]] = {f: [] for f in FORMS}
        for _ in range(args.repeats):
            for form in FORMS:
                rates[form].append(images_per_s(loaders[form]))
        load_after = os.getloadavg()
    print(
        f"{args.images} JPEGs (500x375, q90), {args.size} px train transform, batch {BATCH}, "
        f"{args.workers} workers, median of {args.repeats}; {os.cpu_count()} CPUs, load "
        f"average {load_before[0]:.1f} before, {load_after[0]:.1f} after\n"
    )
    print("| form | images/s | vs folder | each repeat |")
    print("|---|---|---|---|")
    folder = statistics.median(rates["folder"])
    for form in FORMS:
        median = statistics.median(rates[form])
        each = ", ".join(f"{r:.0f}" for r in rates[form])
        print(f"| {form} | {median:.0f} | {median / folder:.2f} | {each} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
