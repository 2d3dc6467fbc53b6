"""``timm``: the user's data through timm's readers (``timm.data.create_dataset``), offline.

``DataConfig.dataset`` is timm's dataset string and ``DataConfig.path`` its root:

- ``""`` (folder or tar): ``path/<split>/`` (a class-folder tree) or ``path/<split>.tar``
  (class folders inside one tar), read by timm's ``ReaderImageFolder`` / ``ReaderImageInTar``;
- ``hfds/NAME`` (map-style) or ``hfids/NAME`` (iterable): the local Hugging Face dataset
  folder ``path/NAME`` (``path`` itself when NAME is empty): parquet or arrow files as the hub
  ships them, with the ``README.md`` that declares its ``ClassLabel`` names. It is read as
  ``datasets.load_dataset(folder)`` reads one with ``HF_HUB_OFFLINE=1`` and
  ``HF_DATASETS_OFFLINE=1``: nothing is fetched; the arrow cache goes to the HF cache
  (``HF_DATASETS_CACHE``), as for any local dataset;
- ``wds/NAME``: webdataset shards in ``path`` with timm's ``_info.json`` (splits, shard names
  and lengths; ``num_classes``), read by ``ReaderWds``;
- ``torch/cifar10`` etc.: torchvision's data sets at ``path`` (``download=False``; torchvision
  checks the official files' MD5 before it unpickles them).

Folder, tar, hfds and torch readers are map-style (``ImageDataset``); wds and hfids are
iterable (``IterableImageDataset``): they are built in ``setup()``, once the DDP group exists,
so that each global data-loader worker reads its own shards (see :mod:`dat_lab.data.iterable`).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from timm.data import create_dataset

from dat_lab.data.classes import subset_indices
from dat_lab.schema import ConfigError

ITERABLE = ("wds", "hfids")
EXTRAS = {"hfds": ("datasets", "hf"), "hfids": ("datasets", "hf"), "wds": ("webdataset", "wds")}
EVAL_SYNONYMS = ("val", "valid", "validation", "eval", "evaluation")  # timm's _EVAL_SYNONYM
TRAIN_SYNONYMS = ("train", "training")
WDS_INFO = ("_info.json", "info.json")


def prefix_of(dataset: str) -> str:
    """``hfds`` of ``hfds/imagenet-1k``; ``""`` for a folder or tar."""
    prefix, sep, _ = dataset.partition("/")
    return prefix.lower() if sep else ""


def require_extra(prefix: str) -> None:
    """ConfigError naming the pip extra when the reader's package is not installed."""
    if prefix not in EXTRAS:
        return
    module, extra = EXTRAS[prefix]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"reader {prefix}/ needs the {module!r} package: pip install 'dat-lab[{extra}]'",
            "data.dataset",
        )


def go_offline() -> None:
    """Make the Hugging Face libraries read local files only (also if already imported)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    # Lazy: the optional [hf] extra (require_extra checked it), and the variables above must
    # be set before datasets is first imported.
    import datasets
    import huggingface_hub

    huggingface_hub.constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True  # datasets reads this flag, not the variable


def split_root(path: Path, split: str, key: str) -> Path:
    """Folder or tar of ``split``: ``path/<split>`` or ``path/<split>.tar``, also under timm's
    synonyms (``val`` for ``validation``); ConfigError naming ``key`` and all that was tried."""
    names = [split]
    for synonyms in (TRAIN_SYNONYMS, EVAL_SYNONYMS):
        if split in synonyms:
            names += [s for s in synonyms if s != split]
    tried = [path / f"{name}{ext}" for name in names for ext in ("", ".tar")]
    for candidate in tried:
        if candidate.is_dir() or (candidate.suffix == ".tar" and candidate.is_file()):
            return candidate
    shown = ", ".join(p.name + ("" if p.suffix == ".tar" else "/") for p in tried)
    raise ConfigError(f"split {split!r} not found in {str(path)!r} (tried {shown})", key)


def hf_folder(path: Path, dataset: str) -> Path:
    """The local HF dataset folder of ``hfds/NAME`` / ``hfids/NAME``."""
    name = dataset.partition("/")[2]
    folder = path / name if name else path
    if not folder.is_dir():
        raise ConfigError(
            f"Hugging Face dataset folder {str(folder)!r} does not exist", "data.path"
        )
    return folder


def wds_info(path: Path) -> dict[str, Any]:
    """timm's ``_info.json`` of a folder of webdataset shards."""
    for name in WDS_INFO:
        if (path / name).is_file():
            try:
                info = json.loads((path / name).read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise ConfigError(
                    f"cannot read {str(path / name)!r}: {err}", "data.path"
                ) from None
            if isinstance(info, dict) and isinstance(info.get("splits"), dict):
                return info
            raise ConfigError(f"{str(path / name)!r} holds no 'splits' mapping", "data.path")
    raise ConfigError(
        f"no {' or '.join(WDS_INFO)} in {str(path)!r} (timm's webdataset index: splits with "
        "filenames, shard_lengths and num_samples; and num_classes)",
        "data.path",
    )


def check_wds_split(info: dict[str, Any], path: Path, split: str, key: str) -> None:
    if split not in info["splits"]:
        raise ConfigError(
            f"split {split!r} not in {str(path)!r}'s _info.json (splits: "
            f"{', '.join(info['splits'])})",
            key,
        )


def create(
    dataset: str,
    path: Path,
    split: str,
    key: str,
    *,
    class_map: dict[str, int] | None = None,
    is_training: bool = False,
    seed: int = 0,
) -> Any:
    """timm's dataset of ``split`` (no transform yet); ConfigError naming ``key`` for a split
    the data does not hold, ``data.path`` for data timm cannot read."""
    prefix = prefix_of(dataset)
    require_extra(prefix)
    kwargs: dict[str, Any] = {"split": split, "class_map": class_map}
    if prefix == "":
        root: str | None = str(split_root(path, split, key))
        kwargs["search_split"] = False
    elif prefix in ("hfds", "hfids"):
        go_offline()
        dataset, root = f"{prefix}/{hf_folder(path, dataset)}", None  # HF's own cache
    elif prefix == "wds":
        check_wds_split(wds_info(path), path, split, key)
        root = str(path)
    else:
        root, kwargs["download"] = str(path), False
    if prefix in ITERABLE:
        kwargs.update(is_training=is_training, seed=seed)
    try:
        return create_dataset(dataset, root=root, **kwargs)
    except ValueError as err:
        if "split" in str(err).lower():
            raise ConfigError(f"split {split!r} not found in {str(path)!r} ({err})", key) from None
        raise ConfigError(
            f"timm cannot read {dataset or 'folder'} at {path}: {err}", "data.path"
        ) from None
    except (RuntimeError, OSError, AssertionError, KeyError, FileNotFoundError) as err:
        raise ConfigError(
            f"timm cannot read {dataset or 'folder'} at {str(path)!r}: "
            f"{err or type(err).__name__}",
            "data.path",
        ) from None


def class_to_idx(dataset: Any) -> dict[str, int]:
    """The class name -> label map a map-style timm (or torchvision) dataset uses."""
    reader = getattr(dataset, "reader", None)
    for owner, attr in ((reader, "class_to_idx"), (reader, "class_name_to_idx")):
        mapping = getattr(owner, attr, None)
        if mapping:
            return dict(mapping)
    return dict(getattr(dataset, "class_to_idx", {}) or {})


def targets(dataset: Any) -> list[int]:
    """Every sample's label, read without decoding images (map-style datasets)."""
    reader = getattr(dataset, "reader", None)
    if reader is None:  # torchvision
        return [int(t) for t in dataset.targets]
    if hasattr(reader, "targets"):
        return [int(t) for t in reader.targets]
    if hasattr(reader, "samples"):
        return [int(t) for _, t in reader.samples]
    return [int(t) for t in reader.iter_targets()]


def wds_class_names(info: dict[str, Any], path: Path) -> tuple[str, ...]:
    """``class_names`` of ``_info.json``, else ``0..num_classes-1`` (shards hold ``.cls``)."""
    names = info.get("class_names")
    if isinstance(names, list) and names:
        return tuple(str(n) for n in names)
    count = info.get("num_classes")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ConfigError(
            f"{str(path)!r}'s _info.json gives no num_classes (an integer >= 1) nor "
            "class_names; webdataset shards carry label numbers only",
            "data.path",
        )
    return tuple(str(i) for i in range(count))


def _hf_label_names(features: Any, folder: Path, label_key: str = "label") -> tuple[str, ...]:
    names = getattr(features.get(label_key) if features else None, "names", None)
    if not names:
        raise ConfigError(
            f"{str(folder)!r} declares no ClassLabel names for {label_key!r} (its README.md "
            "dataset_info features, as the hub's datasets have)",
            "data.path",
        )
    return tuple(names)


def hf_class_names(folder: Path) -> tuple[str, ...]:
    """The label names a local HF dataset declares (read offline, no data loaded)."""
    go_offline()
    import datasets  # lazy: the optional [hf] extra

    try:
        builder = datasets.load_dataset_builder(str(folder))
    except (ValueError, OSError, FileNotFoundError) as err:
        raise ConfigError(
            f"cannot read {str(folder)!r} as a dataset: {err}", "data.path"
        ) from None
    return _hf_label_names(builder.info.features, folder)


def keep_hf_classes(dataset: Any, wanted: list[str], where: str) -> None:
    """Drop the rows of a timm hfds dataset outside ``wanted`` (timm remaps names only)."""
    reader = dataset.reader
    source = _hf_label_names(reader.dataset.features, Path(where), reader.label_key)
    keep = set(subset_indices(source, wanted, where))
    reader.dataset = reader.dataset.filter(
        lambda label: label in keep, input_columns=reader.label_key
    )
    reader.num_samples = len(reader.dataset)
