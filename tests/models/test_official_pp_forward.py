"""Whole-model check: official DAT++ weights give the official DAT++ logits.

Random tensors in the official key layout (``official_pp_shapes``) are saved as an official
checkpoint, loaded into our model with ``load_official_checkpoint`` (``sampling:
official_pp``), and our logits are compared with ``official_pp_forward``, a transcription of
the official DAT++ code that reads the same state dict by its official names.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from official_layout import PP_PRESETS, official_shapes
from official_pp_reference import (
    OfficialPP,
    official_pp_forward,
    official_pp_shapes,
    official_tiny,
)

from dat_lab.models import Sampling, build_model, get_preset
from dat_lab.models.checkpoints import load_official_checkpoint
from dat_lab.models.config import DatConfig
from dat_lab.models.dat import DAT
from dat_lab.models.enums import MlpKind, OffsetMode, Patchify, PosEnc
from dat_lab.models.stage import StageConfig

# Every DAT++ part at 64 px: conv stem, conv downsampling, LPU, ConvFFN, N/D alternating (N
# windows clamped at the borders on 16x16 and 8x8 maps, zero-padded on the 4x4 map), clamped
# offsets on 4x4 and 2x2 key grids, the relative table; stage 4 is D D as in DAT++.
SMALL = OfficialPP(
    img_size=64,
    dim_stem=16,
    dims=(16, 32, 64, 128),
    depths=(2, 4, 2, 2),
    stage_spec=("ND", "NDND", "ND", "DD"),
    heads=(2, 2, 4, 8),
    groups=(1, 2, 2, 4),
    strides=(4, 2, 1, 1),
    nat_ksizes=(5, 5, 5, 5),
    num_classes=10,
)


def official_variants() -> dict[str, OfficialPP]:
    """The official configs (``configs/dat_{tiny,small,base}.yaml``; B++ 384 is B++ at 384)."""
    tiny = official_tiny()
    small = dataclasses.replace(
        tiny, dim_stem=96, dims=(96, 192, 384, 768), heads=(3, 6, 12, 24), groups=(1, 2, 3, 6)
    )
    base = dataclasses.replace(
        tiny, dim_stem=128, dims=(128, 256, 512, 1024), heads=(4, 8, 16, 32), groups=(2, 4, 8, 16)
    )
    return {
        "dat_pp_tiny": tiny,
        "dat_pp_small": small,
        "dat_pp_base": base,
        "dat_pp_base_384": dataclasses.replace(base, img_size=384),
    }


def our_config(cfg: OfficialPP) -> DatConfig:
    """Our config of the official arguments (one LayerScale value for the model)."""
    stages = []
    for i, letters in enumerate(cfg.stage_spec):
        bounded = cfg.offset_range_factor[i] >= 0
        stages.append(
            StageConfig(
                dim=cfg.dims[i],
                depth=cfg.depths[i],
                heads=cfg.heads[i],
                attn=letters,
                offset_mode=OffsetMode.BOUNDED if bounded else OffsetMode.CLAMPED,
                offset_range=cfg.offset_range_factor[i] if bounded else None,
                reduction=cfg.strides[i],
                offset_groups=cfg.groups[i],
                offset_kernel=cfg.ksizes[i],
                pos_enc=PosEnc.LOG_CPB if cfg.log_cpb[i] else PosEnc.RELATIVE,
                nat_kernel=cfg.nat_ksizes[i] if "N" in letters else None,
            )
        )
    scale = cfg.layer_scale_values[0]
    return DatConfig(
        stages=tuple(stages),
        img_size=(cfg.img_size, cfg.img_size),
        num_classes=cfg.num_classes,
        patch_size=cfg.patch_size,
        mlp_ratio=cfg.expansion,
        sampling=Sampling.OFFICIAL_PP,
        stem=Patchify.CONV,
        downsample=Patchify.CONV,
        mlp=MlpKind.DWCONV,
        layer_scale=scale if scale > 0 else None,
        lpu=True,
    )


def random_official_state(cfg: OfficialPP, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values of every official key, scaled so that every term moves the logits.

    Weights ~ 1/sqrt(fan_in), norm and LayerScale weights ~ 1, biases ~ 0.1, position tables
    ~ 1 (so that a misread entry shows); the offset projection is doubled so that some
    sampled points reach the clamp and some do not.
    """
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_pp_shapes(cfg).items():
        t = torch.randn(*shape, generator=g)
        if key.endswith("norm.weight") or ".layer_scales." in key:
            t = 1.0 + 0.2 * t
        elif key.endswith(("rpb", "rpe_table")):
            pass  # std 1
        elif key.endswith("bias") or len(shape) == 1:
            t = 0.1 * t
        else:
            t = t / math.prod(shape[1:]) ** 0.5
        if key.endswith("conv_offset.3.weight"):
            t = 2.0 * t
        state[key] = t
    return state


def load_ours(cfg: OfficialPP, state: dict[str, torch.Tensor], tmp_path: Path) -> DAT:
    """Our model of ``cfg``, loaded from ``state`` saved as an official checkpoint (eval)."""
    torch.save({"model": state, "epoch": 0}, tmp_path / "official.pth")
    model = build_model(our_config(cfg))
    return load_official_checkpoint(model, tmp_path / "official.pth").eval()


@pytest.mark.parametrize("preset", PP_PRESETS)
def test_reference_key_layout_is_the_official_checkpoints(preset):
    cfg = official_variants()[preset]
    assert official_pp_shapes(cfg) == official_shapes(preset)
    # and our_config of the official arguments is the preset (up to stochastic depth)
    ours = get_preset(preset).replace(sampling=Sampling.OFFICIAL_PP, drop_path=0.0)
    assert _spelled_out(our_config(cfg)) == _spelled_out(ours)


def _spelled_out(cfg: DatConfig) -> DatConfig:
    """Defaults written out and one letter per block ("ND" x 2 and "NDND" build alike)."""
    stages = cfg.canonical().stages
    return cfg.replace(stages=tuple(dataclasses.replace(s, attn=s.letters) for s in stages))


CASES = {
    "relative": SMALL,
    "layer_scale": dataclasses.replace(SMALL, layer_scale_values=(0.5,) * 4),
    "log_cpb": dataclasses.replace(SMALL, log_cpb=(True,) * 4),
    "bounded": dataclasses.replace(SMALL, offset_range_factor=(1.0, 2.0, 3.0, 4.0)),
}


def _double(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.double() for k, v in state.items()}


@pytest.mark.parametrize("case", CASES)
def test_official_pp_weights_give_the_official_logits(case, tmp_path):
    cfg = CASES[case]
    state = random_official_state(cfg)
    model = load_ours(cfg, state, tmp_path)
    x = torch.randn(2, 3, cfg.img_size, cfg.img_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # float32, as checkpoints run (our fused attention path)
        expected = official_pp_forward(state, cfg, x)
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
        # float64 takes rounding out of the way: a formula off by 1e-6 (e.g. a norm's eps)
        # shows; forward_deformable_maps runs the explicit attention path and records points.
        expected = official_pp_forward(_double(state), cfg, x.double())
        logits, records = model.double().forward_deformable_maps(x.double())
    torch.testing.assert_close(logits, expected, atol=1e-10, rtol=1e-10)
    assert expected.std() > 0.1  # logits that carry signal, not a constant
    points = torch.cat([r.maps.sampled.flatten() for r in records])
    if case != "bounded":  # the clamp is hit, and not everywhere
        assert (points.abs() == 1.0).any() and (points.abs() < 1.0).any()


def test_the_sampling_convention_matters_to_the_whole_model(tmp_path):
    state = random_official_state(SMALL)
    model = load_ours(SMALL, state, tmp_path)
    consistent = build_model(our_config(SMALL).replace(sampling=Sampling.CONSISTENT)).eval()
    consistent.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        gap = (consistent(x) - official_pp_forward(state, SMALL, x)).abs().max()
    assert gap > 1e-3  # so the match above is the official_pp convention's, not any model's


def test_dat_pp_tiny_at_224_gives_the_official_logits(tmp_path):
    cfg = official_tiny()
    state = random_official_state(cfg)
    model = load_ours(cfg, state, tmp_path)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    # float32 (float64 would double the time): 26 blocks of rounding drift by ~5e-5, so 1e-4.
    # The small model's float64 cases check the formulas tightly; this one, the real sizes.
    with torch.no_grad():
        expected = official_pp_forward(state, cfg, x)
        torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=1e-4)
