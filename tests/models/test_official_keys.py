"""The preset table's official key lists: which presets have one, and that they fit the models."""

from __future__ import annotations

from importlib.resources import files

import pytest
import torch
from official_layout import LISTED

from dat_lab.models import build_model
from dat_lab.models.checkpoints import Layout, convert
from dat_lab.models.presets import PRESETS, official_presets


def test_every_preset_with_official_weights_lists_its_keys_but_dat_base_384():
    unlisted = [p.name for p in official_presets() if p.official_shapes() is None]
    assert unlisted == ["dat_base_384"]
    assert all(p.official_shapes() is None for p in PRESETS.values() if p.official is None)


def test_the_packaged_key_files_are_the_listed_presets_and_name_their_source():
    folder = files("dat_lab.models").joinpath("official_keys")
    names = sorted(f.name for f in folder.iterdir() if f.name.endswith(".txt"))
    assert names == sorted(f"{name}.txt" for name in LISTED)
    for name in names:
        assert "LeapLabTHU/DAT" in folder.joinpath(name).read_text().splitlines()[0]


@pytest.mark.parametrize("preset", LISTED)
def test_the_listed_shapes_fill_the_official_model_strictly(preset):
    shapes = PRESETS[preset].official_shapes()
    assert shapes
    cfg = PRESETS[preset].build().replace(sampling=PRESETS[preset].official)
    with torch.device("meta"):  # shapes only
        model = build_model(cfg)
        state = {key: torch.empty(shape) for key, shape in shapes.items()}
    converted = convert(state, model, Layout.OFFICIAL, strict=True)  # raises on any mismatch
    assert converted.state.keys() == model.state_dict().keys()
    assert list(shapes)[0] == "patch_proj.0.weight"  # the checkpoint's order


def test_official_shapes_are_a_fresh_dict_each_call():
    shapes = PRESETS["dat_tiny"].official_shapes()
    assert shapes is not None
    shapes.clear()
    assert PRESETS["dat_tiny"].official_shapes()
