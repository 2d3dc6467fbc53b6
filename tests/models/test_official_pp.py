"""Official DAT++ checkpoints: parameter counts, strict loading, DAT++ coordinates."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from official_deformable import official_deformable_forward
from official_layout import PP_PRESETS, official_shapes, official_state_dict

from dat_lab.models import Sampling, build_model, get_preset
from dat_lab.models.attention import DeformableAttention
from dat_lab.models.checkpoints import load_official_checkpoint
from dat_lab.models.conv_layers import ConvMlp
from dat_lab.models.enums import OffsetMode, PosEnc
from dat_lab.models.official import rename_official_key as _rename
from dat_lab.models.stage import DeformableSpec


@pytest.mark.parametrize("preset", PP_PRESETS)
def test_parameter_count_equals_the_official_checkpoint(preset):
    official = sum(math.prod(s) for s in official_shapes(preset).values())
    model = build_model(get_preset(preset))
    assert sum(p.numel() for p in model.parameters()) == official


@pytest.mark.parametrize("preset", PP_PRESETS)
def test_official_state_dict_loads_strictly(preset, tmp_path):
    state = official_state_dict(preset)
    torch.save({"model": state}, tmp_path / "ckpt.pth")
    model = build_model(get_preset(preset).replace(sampling=Sampling.OFFICIAL_PP))
    load_official_checkpoint(model, tmp_path / "ckpt.pth")
    ours = model.state_dict()
    pairs = {
        "stem.conv1.weight": "patch_proj.0.weight",
        "stem.norm2.bias": "patch_proj.4.norm.bias",
        "stages.1.downsample.proj.weight": "down_projs.0.0.weight",
        "stages.2.blocks.4.attn.rpb": "stages.2.attns.4.rpb",
        "stages.2.blocks.4.attn.qkv.weight": "stages.2.attns.4.qkv.weight",
        "stages.2.blocks.5.lpu.conv.weight": "stages.2.local_perception_units.5.weight",
        "stages.3.blocks.1.mlp.dwconv.weight": "stages.3.mlps.1.dwc.weight",
        "stages.3.blocks.1.norm2.weight": "stages.3.layer_norms.3.norm.weight",
        "stages.0.blocks.1.attn.pos_bias.rpe_table": "stages.0.attns.1.rpe_table",
    }
    for our_key, their_key in pairs.items():
        torch.testing.assert_close(ours[our_key], state[their_key])
    torch.testing.assert_close(
        ours["stages.3.blocks.0.mlp.fc1.weight"],
        state["stages.3.mlps.0.linear1.0.weight"][..., 0, 0],
    )


def test_dat_pp_only_keys_map_to_layer_scale_convnext_and_log_cpb():
    keys = {"stages.0.blocks.1.ls2.gamma", "stages.1.blocks.2.attn.conv.weight"}
    assert _rename("stages.0.layer_scales.3.weight", keys) == "stages.0.blocks.1.ls2.gamma"
    assert _rename("stages.0.layer_scales.2.weight", keys) == "stages.0.blocks.1.ls1.gamma"
    assert _rename("stages.1.attns.2.weight", keys) == "stages.1.blocks.2.attn.conv.weight"
    assert _rename("stages.1.ln_cnvnxt.2.norm.bias", keys) == "stages.1.blocks.2.norm2.bias"
    assert (
        _rename("stages.2.attns.1.rpe_table.2.weight", keys)
        == "stages.2.blocks.1.attn.pos_bias.rpe_table.2.weight"
    )


@pytest.mark.parametrize("pos_enc", [PosEnc.RELATIVE, PosEnc.LOG_CPB])
@pytest.mark.parametrize("reduction, size", [(1, (7, 7)), (2, (8, 6))])
def test_official_pp_sampling_reproduces_the_official_dat_pp_deformable_forward(
    pos_enc, reduction, size
):
    torch.manual_seed(0)
    spec = DeformableSpec(True, 2.0, OffsetMode.CLAMPED, reduction, 2, 3, pos_enc)
    m = DeformableAttention(32, 4, spec, size, sampling=Sampling.OFFICIAL_PP)
    with torch.no_grad():  # offsets of a few cells, so that some points hit the clamp
        m.conv_offset.proj.weight.mul_(20.0)
    x = torch.randn(2, *size, 32)
    _, pos = m.sample_points(m.proj_q(x))
    assert (pos.abs() == 1.0).any() and (pos.abs() < 1.0).any()
    expected = official_deformable_forward(m, x.permute(0, 3, 1, 2))
    torch.testing.assert_close(m(x).permute(0, 3, 1, 2), expected, atol=1e-5, rtol=1e-5)
    consistent = DeformableAttention(32, 4, spec, size)
    consistent.load_state_dict(m.state_dict())
    assert (consistent(x).permute(0, 3, 1, 2) - expected).abs().max() > 1e-3


def test_conv_mlp_is_the_official_conv_ffn():
    torch.manual_seed(0)
    mlp = ConvMlp(8, 32)
    x = torch.randn(2, 8, 5, 6)  # channels-first, as the official code
    h = F.conv2d(x, mlp.fc1.weight[:, :, None, None], mlp.fc1.bias)
    h = F.gelu(h + mlp.dwconv(h))
    expected = F.conv2d(h, mlp.fc2.weight[:, :, None, None], mlp.fc2.bias)
    out = mlp(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_timm_official_tag_loads_dat_pp_weights_with_the_dat_pp_convention(tmp_path):
    import timm

    state = official_state_dict("dat_pp_tiny", std=0.02, unit_norms=True)
    torch.save({"model": state, "epoch": 299}, tmp_path / "dat_pp_tiny_in1k_224.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the official_pp model is no "consistent sampling" one
        model = timm.create_model(
            "dat_pp_tiny.official_in1k",
            pretrained=True,
            pretrained_cfg_overlay={"file": str(tmp_path / "dat_pp_tiny_in1k_224.pth")},
        ).eval()
    assert model.cfg.sampling == Sampling.OFFICIAL_PP
    reference = build_model(get_preset("dat_pp_tiny").replace(sampling=Sampling.OFFICIAL_PP))
    load_official_checkpoint(reference, tmp_path / "dat_pp_tiny_in1k_224.pth")
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference.eval()(x))
    features = timm.create_model("dat_pp_nano", features_only=True)(torch.randn(1, 3, 32, 32))
    assert [f.shape[1:] for f in features] == [(16, 16, 16), (32, 8, 8), (64, 4, 4), (96, 2, 2)]
