"""``dat-lab data inspect``: what a data config reads, without training.

Usage::

    dat-lab data inspect name=timm dataset=wds/imagenet-1k path=/data/imagenet-1k-wds
    dat-lab data inspect name=timm path=/data/imagenet classes=docs/imagenet100.txt
    dat-lab data inspect name=cifar100 path=/data img_size=32 --sample 16

Keys are those of the data section (``data.`` may prefix them); values are parsed as YAML.
``img_size`` defaults to 224 and ``batch_size`` to 1. It prints the classes, the samples per
split (per epoch), the sizes of the first ``--sample`` images of each split as stored, and
the train and eval transforms. Bad input exits with code 2, naming the key.
"""

from __future__ import annotations

import argparse
from typing import Any

from dat_lab.schema import COMMAND_LINE, ConfigError, apply_overrides, parse_override

DEFAULTS = {"img_size": 224, "batch_size": 1}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``data`` (with its ``inspect`` action) on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "data", help="inspect a data config: classes, sizes, transforms (trains nothing)",
        description=__doc__.split("\n\n")[0],
    )  # fmt: skip
    p.add_argument("action", choices=("inspect",), help="what to do (inspect)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="data-section keys")
    p.add_argument("--sample", type=int, default=64, help="images per split whose size is shown")
    p.set_defaults(func=run)
    return p


def data_config(overrides: list[str]) -> Any:
    """The DataConfig of ``KEY=VALUE`` items (``data.`` prefixes allowed)."""
    from dat_lab.data import DataConfig
    from dat_lab.schema import from_mapping

    pairs = dict(parse_override(text) for text in overrides)
    pairs = {k.removeprefix("data."): v for k, v in pairs.items()}
    mapping = apply_overrides(dict(DEFAULTS), pairs)
    return from_mapping(DataConfig, mapping, prefix="data", file=COMMAND_LINE)


def run(args: argparse.Namespace) -> int:
    from dat_lab.data.inspect import inspect_data

    if args.sample < 1:
        raise ConfigError(f"must be >= 1, got {args.sample}", "--sample", COMMAND_LINE)
    print(inspect_data(data_config(args.overrides), args.sample).render())
    return 0
