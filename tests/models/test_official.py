"""The official-checkpoint loader and the official coordinate convention."""

from __future__ import annotations

import math

import pytest
import torch
from official_deformable import official_deformable_forward
from official_layout import official_state_dict

from dat_lab.models import Sampling, build_model, get_preset
from dat_lab.models.attention import DeformableAttention
from dat_lab.models.checkpoints import CheckpointMismatch, load_official_checkpoint
from dat_lab.models.enums import OffsetMode, PosEnc
from dat_lab.models.stage import DeformableSpec


@pytest.mark.parametrize(
    "preset",
    [pytest.param(p, marks=pytest.mark.slow) for p in ("dat_tiny", "dat_small", "dat_base")],
)
def test_official_state_dict_loads_strictly(preset, tmp_path):
    state = official_state_dict(preset)
    path = tmp_path / "ckpt.pth"
    torch.save({"model": state}, path)
    model = build_model(get_preset(preset).replace(sampling=Sampling.OFFICIAL))
    load_official_checkpoint(model, path)
    ours = model.state_dict()
    torch.testing.assert_close(ours["head.weight"], state["cls_head.weight"])
    torch.testing.assert_close(
        ours["stages.2.blocks.1.attn.proj_q.weight"],
        state["stages.2.attns.1.proj_q.weight"].flatten(1),
    )
    torch.testing.assert_close(
        ours["stages.1.blocks.0.norm2.weight"], state["stages.1.layer_norms.1.norm.weight"]
    )


@pytest.mark.slow
def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path):
    model = build_model(get_preset("dat_tiny"))
    state = official_state_dict("dat_tiny")
    cases = {
        "missing key(s) for this model: stages.2.blocks.1.attn.pos_bias.rpe_table": lambda s: (
            s.pop("stages.2.attns.1.rpe_table")
        ),
        "official key 'stages.2.attns.1.extra' has no counterpart": lambda s: s.__setitem__(
            "stages.2.attns.1.extra", torch.zeros(1)
        ),
        "shape (10, 768) != (1000, 768)": lambda s: s.__setitem__(
            "cls_head.weight", torch.zeros(10, 768)
        ),
    }
    for message, corrupt in cases.items():
        broken = dict(state)
        corrupt(broken)
        torch.save(broken, tmp_path / "bad.pth")
        with pytest.raises(
            CheckpointMismatch, match=message.replace("(", r"\(").replace(")", r"\)")
        ):
            load_official_checkpoint(model, tmp_path / "bad.pth")


def test_official_sampling_reproduces_the_official_deformable_forward():
    torch.manual_seed(0)
    spec = DeformableSpec(True, 2.0, OffsetMode.BOUNDED, 1, 2, 5, PosEnc.RELATIVE)
    m = DeformableAttention(32, 4, spec, (7, 7), sampling=Sampling.OFFICIAL)
    x = torch.randn(2, 7, 7, 32)
    expected = official_deformable_forward(m, x.permute(0, 3, 1, 2), v1=True)
    torch.testing.assert_close(m(x).permute(0, 3, 1, 2), expected, atol=1e-5, rtol=1e-5)


def test_consistent_sampling_differs_from_official_with_the_same_weights():
    torch.manual_seed(0)
    spec = DeformableSpec(True, 2.0, OffsetMode.BOUNDED, 1, 2, 5, PosEnc.RELATIVE)
    m = DeformableAttention(32, 4, spec, (7, 7))
    x = torch.randn(2, 7, 7, 32)
    expected = official_deformable_forward(m, x.permute(0, 3, 1, 2), v1=True)
    assert (m(x).permute(0, 3, 1, 2) - expected).abs().max() > 1e-3
    assert math.isfinite(float(expected.sum()))
