"""Official DAT weights through timm: a file in the official layout gives the official outputs.

The checkpoint is random values in every official key and shape (the preset table's key list,
``Preset.official_shapes``),
saved as the official training code saves them (a dict with ``model``, ``optimizer``,
``lr_scheduler``, ``max_accuracy``, ``epoch``). The reference is the official-convention path
already checked against an independent transcription of the official forward
(``test_official.py``): ``sampling="official"`` plus ``load_official_checkpoint``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from official_layout import official_state_dict

from dat_lab.models import Sampling, build_model, get_preset
from dat_lab.models.checkpoints import load_official_checkpoint
from dat_lab.schema import ConfigError


def save_as_official(state: dict[str, torch.Tensor], path: Path) -> Path:
    """The official code's checkpoint dict (its yacs ``config`` entry is not loadable safely)."""
    torch.save(
        {
            "model": state,
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}]},
            "lr_scheduler": {"last_epoch": 300},
            "max_accuracy": 82.0,
            "epoch": 299,
        },
        path,
    )
    return path


def official_reference(preset: str, path: Path) -> torch.nn.Module:
    model = build_model(get_preset(preset).replace(sampling=Sampling.OFFICIAL))
    return load_official_checkpoint(model, path).eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("official")
    return {
        p: save_as_official(official_state_dict(p, std=0.02, unit_norms=True), root / f"{p}.pth")
        for p in ("dat_tiny", "dat_small", "dat_base")
    }


@pytest.mark.parametrize(
    "preset",
    [
        "dat_tiny",
        pytest.param("dat_small", marks=pytest.mark.slow),
        pytest.param("dat_base", marks=pytest.mark.slow),
    ],
)
def test_timm_route_gives_the_official_outputs(preset, checkpoints):
    path = checkpoints[preset]
    model = timm.create_model(
        f"{preset}.official_in1k", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))
    ).eval()
    assert model.cfg.sampling == Sampling.OFFICIAL
    reference = official_reference(preset, path)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=0)
    assert expected.std() > 0.01  # the weights matter: not a constant output


def test_features_only_equals_the_official_stage_outputs(checkpoints):
    path = checkpoints["dat_tiny"]
    features = timm.create_model(
        "dat_tiny.official_in1k",
        pretrained=True,
        features_only=True,
        pretrained_cfg_overlay=dict(file=str(path)),
    ).eval()
    reference = official_reference("dat_tiny", path)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        stages = reference.forward_intermediates(x, intermediates_only=True)
        outs = features(x)
    assert [tuple(o.shape[1:]) for o in outs] == [
        (96, 56, 56),
        (192, 28, 28),
        (384, 14, 14),
        (768, 7, 7),
    ]
    for out, expected in zip(outs, stages, strict=True):
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_another_input_size_resizes_the_relative_tables_bicubically(checkpoints):
    state = torch.load(checkpoints["dat_tiny"], weights_only=True)["model"]
    model = timm.create_model(
        "dat_tiny.official_in1k",
        pretrained=True,
        img_size=384,
        pretrained_cfg_overlay=dict(file=str(checkpoints["dat_tiny"])),
    )
    table = model.state_dict()["stages.2.blocks.1.attn.pos_bias.rpe_table"]
    source = state["stages.2.attns.1.rpe_table"]  # 12 x 27 x 27 at 224 px (14 x 14 map)
    assert tuple(source.shape) == (12, 27, 27) and tuple(table.shape) == (12, 47, 47)
    expected = F.interpolate(source[None], size=(47, 47), mode="bicubic")[0]
    torch.testing.assert_close(table, expected)
    # Window tables do not depend on the input size: loaded as they are.
    torch.testing.assert_close(
        model.state_dict()["stages.0.blocks.0.attn.relative_position_bias_table"],
        state["stages.0.attns.0.relative_position_bias_table"],
    )
    with torch.no_grad():
        assert model(torch.randn(1, 3, 384, 384)).shape == (1, 1000)


@pytest.mark.slow
def test_base_384_loads_base_weights_with_window_and_position_tables_resized(checkpoints):
    # DAT-B 384 is fine-tuned from DAT-B 224: window 7 -> 12, 24 x 24 maps in stage 3.
    model = timm.create_model(
        "dat_base_384.official_in1k",
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(checkpoints["dat_base"])),
    )
    state = torch.load(checkpoints["dat_base"], weights_only=True)["model"]
    ours = model.state_dict()
    window = ours["stages.0.blocks.0.attn.relative_position_bias_table"]  # (23^2, heads)
    source = state["stages.0.attns.0.relative_position_bias_table"]  # (13^2, heads)
    grid = source.T.reshape(1, -1, 13, 13)
    expected = F.interpolate(grid, size=(23, 23), mode="bicubic").reshape(-1, 23 * 23).T
    torch.testing.assert_close(window, expected)
    assert tuple(ours["stages.2.blocks.1.attn.pos_bias.rpe_table"].shape) == (16, 47, 47)
    torch.testing.assert_close(ours["head.weight"], state["cls_head.weight"])


def test_another_number_of_classes_drops_the_official_head(checkpoints):
    model = timm.create_model(
        "dat_tiny.official_in1k",
        pretrained=True,
        num_classes=10,
        pretrained_cfg_overlay=dict(file=str(checkpoints["dat_tiny"])),
    )
    state = torch.load(checkpoints["dat_tiny"], weights_only=True)["model"]
    assert model.head.out_features == 10
    torch.testing.assert_close(model.stem.proj.weight, state["patch_proj.0.weight"])


def test_official_weights_without_the_official_tag_warn(checkpoints):
    with pytest.warns(UserWarning, match="consistent sampling"):
        timm.create_model(
            "dat_tiny",
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(checkpoints["dat_tiny"])),
        )


def test_a_file_lacking_an_official_key_is_refused_naming_the_file_and_the_key(
    checkpoints, tmp_path
):
    state = torch.load(checkpoints["dat_tiny"], weights_only=True)["model"]
    del state["stages.2.attns.1.rpe_table"]
    path = save_as_official(state, tmp_path / "partial.pth")
    with pytest.raises(ConfigError) as err:
        timm.create_model(
            "dat_tiny.official_in1k", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))
        )
    assert str(err.value) == (
        f"pretrained_cfg.file: {str(path)!r} is not dat_tiny's official checkpoint: 1 key(s) "
        "differ: 'stages.2.attns.1.rpe_table' is missing (official shape (12, 27, 27))"
    )
    # Not strict (timm's pretrained_strict=False): a partial file loads what it has.
    model = timm.create_model(
        "dat_tiny.official_in1k",
        pretrained=True,
        pretrained_strict=False,
        pretrained_cfg_overlay=dict(file=str(path)),
    )
    torch.testing.assert_close(model.stem.proj.weight, state["patch_proj.0.weight"])


def test_an_official_file_fine_tuned_to_another_class_count_loads_without_its_head(
    checkpoints, tmp_path
):
    state = torch.load(checkpoints["dat_tiny"], weights_only=True)["model"]
    state["cls_head.weight"], state["cls_head.bias"] = torch.zeros(10, 768), torch.zeros(10)
    path = save_as_official(state, tmp_path / "ten.pth")
    model = timm.create_model(
        "dat_tiny.official_in1k",
        pretrained=True,
        num_classes=10,
        pretrained_cfg_overlay=dict(file=str(path)),
    )
    assert model.head.out_features == 10
    torch.testing.assert_close(model.norm.weight, state["cls_norm.norm.weight"])
