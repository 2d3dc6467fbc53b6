"""DataConfig: defaults are filled in, foreign and impossible knobs are refused by key."""

from __future__ import annotations

import pytest

from dat_lab.data.config import AugmentConfig, DataConfig, ShapesConfig
from dat_lab.schema import ConfigError, config_hash, from_mapping, to_mapping


def build(**data):
    return from_mapping(DataConfig, data, prefix="data", file="exp.yaml")


def test_shapes_defaults_are_filled_in():
    cfg = build(name="shapes", img_size=32, batch_size=64)
    assert cfg.sizes() == (2000, 1000)
    assert cfg.shapes_task() == ShapesConfig(task="pathfinder")
    assert cfg.shapes_task().params() == {"path_length": 5, "distractors": 0}


def test_svrt_knobs_resolve_per_task():
    cfg = build(name="shapes", img_size=32, batch_size=8, shapes={"task": "svrt", "vertices": 5})
    assert cfg.shapes_task().params() == {"vertices": 5, "min_distance": 0.5}


def test_config_round_trips_through_a_mapping():
    cfg = build(name="shapes", img_size=48, batch_size=8, shapes={"distractors": 1}, seed=3)
    again = from_mapping(DataConfig, to_mapping(cfg))
    assert again == cfg and config_hash(again) == config_hash(cfg)


@pytest.mark.parametrize(
    "data, key, words",
    [
        ({"name": "digits", "path": "/x"}, "data.path", "bundled"),
        ({"name": "cifar10"}, "data.path", "required"),
        ({"name": "imagefolder"}, "data.path", "required"),
        ({"name": "digits", "train_size": 100}, "data.train_size", "shapes knob"),
        ({"name": "cifar10", "path": "/x", "val_size": 10}, "data.val_size", "shapes knob"),
        ({"name": "digits", "cache_dir": "/tmp"}, "data.cache_dir", "shapes knob"),
        ({"name": "digits", "shapes": {}}, "data.shapes", "shapes knob"),
        ({"name": "shapes", "augment": {}}, "data.augment", "imagefolder knob"),
        (
            {"name": "cifar10", "path": "/x", "augment": {"reprob": 0}},
            "data.augment",
            "imagefolder",
        ),
        (
            {"name": "shapes", "shapes": {"task": "svrt", "distractors": 2}},
            "data.shapes.distractors",
            "pathfinder knob",
        ),
        ({"name": "shapes", "shapes": {"vertices": 4}}, "data.shapes.vertices", "svrt knob"),
        ({"name": "shapes", "shapes": {"task": "mazes"}}, "data.shapes.task", "'pathfinder'"),
        ({"name": "mnist"}, "data.name", "'digits'"),
        ({"name": "digits", "img_size": 4}, "data.img_size", "8..1024"),
        ({"name": "shapes", "img_size": 512}, "data.img_size", "16..256"),
        ({"name": "digits", "batch_size": 0}, "data.batch_size", ">= 1"),
        ({"name": "digits", "num_workers": -1}, "data.num_workers", ">= 0"),
        ({"name": "digits", "seed": -1}, "data.seed", ">= 0"),
        ({"name": "shapes", "train_size": 1}, "data.train_size", ">= 2"),
        ({"name": "shapes", "shapes": {"path_length": 1}}, "data.shapes.path_length", "3..64"),
        # 2 dashes: no layout fits at any size, so it is refused before any drawing
        ({"name": "shapes", "shapes": {"path_length": 2}}, "data.shapes.path_length", "3..64"),
        ({"name": "shapes", "shapes": {"distractors": -1}}, "data.shapes.distractors", "0..32"),
        (
            {"name": "shapes", "shapes": {"task": "svrt", "vertices": 2}},
            "data.shapes.vertices",
            "3..16",
        ),
        (
            {"name": "shapes", "shapes": {"task": "svrt", "min_distance": 0.9}},
            "data.shapes.min_distance",
            "(0, 0.6]",
        ),
        (
            {"name": "imagefolder", "path": "/x", "augment": {"reprob": 1.5}},
            "data.augment.reprob",
            "[0, 1]",
        ),
        (
            {"name": "imagefolder", "path": "/x", "augment": {"crop_pct": 0}},
            "data.augment.crop_pct",
            "(0, 1]",
        ),
        (
            {"name": "imagefolder", "path": "/x", "augment": {"interpolation": "lanczos3"}},
            "data.augment.interpolation",
            "'bicubic'",
        ),
        (
            {"name": "imagefolder", "path": "/x", "augment": {"auto_augment": "rand-q9"}},
            "data.augment.auto_augment",
            "timm cannot parse",
        ),
        ({"name": "digits", "img_szie": 32}, "data.img_szie", "did you mean 'img_size'"),
    ],
)
def test_bad_value_names_file_key_and_what_is_allowed(data, key, words):
    data = {"img_size": 32, "batch_size": 8, **data}
    with pytest.raises(ConfigError) as info:
        build(**data)
    # schema._convert reports an error inside an optional nested config (``shapes``,
    # ``augment``) at the field itself, dropping the inner key; accept that location too.
    parent = key.rsplit(".", 1)[0] if key.count(".") > 1 else key
    assert info.value.key in (key, parent)
    assert info.value.file == "exp.yaml"
    assert words in info.value.message


def test_paper_augmentation_is_the_default_and_parses():
    aug = build(name="imagefolder", img_size=224, batch_size=8, path="/data").augmentation()
    assert aug == AugmentConfig()
    assert (aug.auto_augment, aug.reprob, aug.interpolation) == (
        "rand-m9-mstd0.5-inc1",
        0.25,
        "bicubic",
    )
    assert AugmentConfig(auto_augment=None).auto_augment is None
