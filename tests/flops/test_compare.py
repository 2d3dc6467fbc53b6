"""fvcore = formula + named residue, exactly, for every module kind over a grid of shapes.

Each case is a one-stage model (patch 1, so the stage runs at the input size) traced by fvcore
for real; every row (stem, attention, MLP, head) and every stage total must differ by 0, and no
op the model runs may be unsupported. Both attention branches (fused SDPA / explicit) are
traced and must count the same, row by row.
"""

from __future__ import annotations

import itertools

import pytest

from dat_lab.flops import count_model
from dat_lab.flops import compare as C
from dat_lab.models import build_model, get_preset, list_presets
from dat_lab.models.config import DatConfig, OffsetMode, PosEnc, Sampling, StageConfig


def one_stage(img_size, size=None, sampling=Sampling.CONSISTENT, mlp_ratio=4.0, **stage) -> DatConfig:
    stage = {"dim": 32, "depth": 1, "heads": 4, **stage}
    return DatConfig(
        stages=(StageConfig(**stage),), img_size=img_size, patch_size=1, num_classes=5,
        mlp_ratio=mlp_ratio, sampling=sampling,
    )


def assert_exact_in_both_branches(cfg: DatConfig, size=None):
    reports = []
    for fused in (True, False):
        model = build_model(cfg)
        model.set_fused_attn(fused)
        report = count_model(model, size)
        assert not report.unsupported
        for row in report.rows:
            assert row.difference == 0, (row, fused)
        assert all(s.difference == 0 for s in report.stages)
        assert report.difference == 0 and report.ok
        reports.append(report)
    fused, explicit = reports
    assert [r.fvcore for r in fused.rows] == [r.fvcore for r in explicit.rows]
    return fused


WINDOW_SIZES = [(8, 8), (9, 7), (3, 5), (13, 10)]  # exact, padded non-square, < window, padded


@pytest.mark.parametrize("letter", ["L", "S"])
@pytest.mark.parametrize("hw", WINDOW_SIZES)
def test_window_attention_is_swins_formula_plus_padding(letter, hw):
    report = assert_exact_in_both_branches(one_stage(hw, attn=letter, window=4, heads=2))
    attn = next(r for r in report.rows if r.kind == letter)
    padded = hw[0] % min(4, hw[0]) or hw[1] % min(4, hw[1])
    assert (C.WINDOW_PADDING in attn.residue) == bool(padded)


@pytest.mark.parametrize("hw", [(8, 8), (9, 7)])
def test_global_attention_is_exactly_vits_formula(hw):
    report = assert_exact_in_both_branches(one_stage(hw, attn="G", dim=24, heads=3, mlp_ratio=2.5))
    attn = next(r for r in report.rows if r.kind == "G")
    assert list(attn.residue) == [C.PRE_NORM]


@pytest.mark.parametrize("sr", [1, 2, 3])
@pytest.mark.parametrize("hw", [(8, 8), (9, 7)])
def test_spatial_reduction_attention(sr, hw):
    assert_exact_in_both_branches(one_stage(hw, attn="P", sr_ratio=sr))


D_GRID = list(itertools.product(PosEnc, [True, False], [1, 2], Sampling))


@pytest.mark.parametrize("pos_enc, offsets, r, sampling", D_GRID)
def test_deformable_attention_over_every_knob(pos_enc, offsets, r, sampling):
    knobs = {"offset_groups": 2, "offset_kernel": 3} if offsets else {}
    cfg = one_stage((9, 7), attn="D", pos_enc=pos_enc, offsets=offsets, reduction=r, sampling=sampling, **knobs)
    report = assert_exact_in_both_branches(cfg)
    attn = next(r for r in report.rows if r.kind == "D")
    assert (C.OFFSET_NORM in attn.residue) == offsets
    assert (C.RELATIVE_LOOKUP in attn.residue) == (pos_enc == PosEnc.RELATIVE)
    assert (C.DWCONV_PE in attn.residue) == (pos_enc == PosEnc.DWCONV)


@pytest.mark.parametrize(
    "hw, heads, groups, r, k",
    [((8, 8), 4, 1, 1, 1), ((8, 8), 4, 4, 3, 5), ((11, 6), 2, 2, 2, 3), ((5, 12), 8, 4, 4, 7)],
)
def test_deformable_attention_over_shapes_groups_and_kernels(hw, heads, groups, r, k):
    cfg = one_stage(hw, attn="D", heads=heads, offset_groups=groups, reduction=r, offset_kernel=k)
    assert_exact_in_both_branches(cfg)


def test_clamped_offsets_count_like_bounded_ones():
    bounded = assert_exact_in_both_branches(one_stage((8, 8), attn="D"))
    clamped = assert_exact_in_both_branches(one_stage((8, 8), attn="D", offset_mode=OffsetMode.CLAMPED))
    assert bounded.total == clamped.total


@pytest.mark.parametrize("pos_enc", [PosEnc.RELATIVE, PosEnc.DWCONV, PosEnc.NONE])
def test_counting_at_another_size_than_built(pos_enc):
    cfg = one_stage((8, 8), attn="LD", depth=2, window=4, pos_enc=pos_enc, reduction=2)
    report = assert_exact_in_both_branches(cfg, size=(11, 6))
    attn = next(r for r in report.rows if r.kind == "D")
    assert (C.TABLE_RESAMPLE in attn.residue) == (pos_enc == PosEnc.RELATIVE)
    assert report.size == (11, 6)


@pytest.mark.parametrize("name", ["dat_nano", "dat_micro"])
def test_small_presets_with_stem_downsampling_and_head_rows(name):
    report = assert_exact_in_both_branches(get_preset(name))
    kinds = {r.kind for r in report.rows}
    assert kinds == {"stem", "merge", "L", "S", "D", "mlp", "head"}
    assert sum(s.fvcore for s in report.stages) == report.total
    assert report.params == sum(p.numel() for p in build_model(get_preset(name)).parameters())


def test_every_preset_is_named_here():
    # The big presets are counted in test_paper_figures.py (unsupported ops included).
    assert set(list_presets()) == {"dat_nano", "dat_micro", "dat_tiny", "dat_small", "dat_base", "dat_base_384"}
