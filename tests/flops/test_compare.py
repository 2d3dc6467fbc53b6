"""fvcore = formula + named residue, exactly, for every module kind over a grid of shapes.

Each case is a one-stage model (patch 1, so the stage runs at the input size) traced by fvcore
for real; every row (stem, attention, MLP, head) and every stage total must differ by 0, and no
op the model runs may be unsupported. Both attention branches (fused SDPA / explicit) are
traced and must count the same, row by row.
"""

from __future__ import annotations

import itertools

import pytest

from dat_lab.flops import compare as C
from dat_lab.flops import count_model
from dat_lab.models import build_model, get_preset, list_presets
from dat_lab.models.config import DatConfig
from dat_lab.models.enums import OffsetMode, PosEnc, Sampling
from dat_lab.models.stage import StageConfig


def one_stage(
    img_size, size=None, sampling=Sampling.CONSISTENT, mlp_ratio=4.0, model=None, **stage
) -> DatConfig:
    stage = {"dim": 32, "depth": 1, "heads": 4, **stage}
    return DatConfig(
        stages=(StageConfig(**stage),),
        img_size=img_size,
        patch_size=1,
        num_classes=5,
        mlp_ratio=mlp_ratio,
        sampling=sampling,
        **(model or {}),
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
@pytest.mark.parametrize("dim, heads, window", [(32, 2, 4), (48, 3, 3)])
def test_window_attention_is_swins_formula_plus_padding(letter, hw, dim, heads, window):
    cfg = one_stage(hw, attn=letter, window=window, dim=dim, heads=heads)
    report = assert_exact_in_both_branches(cfg)
    attn = next(r for r in report.rows if r.kind == letter)
    padded = hw[0] % min(window, hw[0]) or hw[1] % min(window, hw[1])
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
    cfg = one_stage(
        (9, 7), attn="D", pos_enc=pos_enc, offsets=offsets, reduction=r, sampling=sampling, **knobs
    )
    report = assert_exact_in_both_branches(cfg)
    attn = next(r for r in report.rows if r.kind == "D")
    assert (C.OFFSET_NORM in attn.residue) == offsets
    # Keys on the pixels (no offsets, r = 1, consistent): the table is gathered, 0 FLOPs.
    on_pixels = not offsets and r == 1 and sampling == Sampling.CONSISTENT
    assert (C.RELATIVE_LOOKUP in attn.residue) == (pos_enc == PosEnc.RELATIVE and not on_pixels)
    assert (C.DWCONV_PE in attn.residue) == (pos_enc == PosEnc.DWCONV)


@pytest.mark.parametrize(
    "hw, dim, heads, groups, r, k",
    [
        ((8, 8), 32, 4, 1, 1, 1),
        ((8, 8), 64, 4, 4, 3, 5),
        ((11, 6), 48, 2, 2, 2, 3),
        ((5, 12), 32, 8, 4, 4, 7),
        ((7, 10), 96, 3, 3, 1, 9),
        ((6, 9), 24, 6, 2, 2, 5),
    ],
)
@pytest.mark.parametrize("offsets", [True, False])
def test_deformable_attention_over_shapes_widths_groups_and_kernels(
    hw, dim, heads, groups, r, k, offsets
):
    knobs = {"offset_groups": groups, "offset_kernel": k} if offsets else {}
    cfg = one_stage(hw, attn="D", dim=dim, heads=heads, reduction=r, offsets=offsets, **knobs)
    report = assert_exact_in_both_branches(cfg)
    attn = next(row for row in report.rows if row.kind == "D")
    hk, wk = -(-hw[0] // r), -(-hw[1] // r)
    offset_term = (k * k + 2) * hk * wk * dim if offsets else 0
    n, ns = hw[0] * hw[1], hk * wk
    assert attn.formula == 2 * n * ns * dim + 2 * n * dim**2 + 2 * ns * dim**2 + offset_term


@pytest.mark.parametrize("letters", [pytest.param("LSDPG", marks=pytest.mark.slow), "GDPSL"])
def test_every_letter_in_one_stage_at_a_non_square_size(letters):
    cfg = one_stage((10, 7), attn=letters, depth=5, window=4, heads=4, sr_ratio=2, reduction=2)
    report = assert_exact_in_both_branches(cfg)
    assert [r.kind for r in report.rows if r.kind in "LSDPG"] == list(letters)


def test_clamped_offsets_count_like_bounded_ones():
    bounded = assert_exact_in_both_branches(one_stage((8, 8), attn="D"))
    clamped = assert_exact_in_both_branches(
        one_stage((8, 8), attn="D", offset_mode=OffsetMode.CLAMPED)
    )
    assert bounded.total == clamped.total


@pytest.mark.parametrize("pos_enc", [PosEnc.RELATIVE, PosEnc.DWCONV, PosEnc.NONE])
def test_counting_at_another_size_than_built(pos_enc):
    cfg = one_stage((8, 8), attn="LD", depth=2, window=4, pos_enc=pos_enc, reduction=2)
    report = assert_exact_in_both_branches(cfg, size=(11, 6))
    attn = next(r for r in report.rows if r.kind == "D")
    assert (C.TABLE_RESAMPLE in attn.residue) == (pos_enc == PosEnc.RELATIVE)
    assert report.size == (11, 6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dat_nano", "dat_micro"])
def test_small_presets_with_stem_downsampling_and_head_rows(name):
    report = assert_exact_in_both_branches(get_preset(name))
    kinds = {r.kind for r in report.rows}
    assert kinds == {"stem", "merge", "L", "S", "D", "mlp", "head"}
    assert sum(s.fvcore for s in report.stages) == report.total
    assert report.params == sum(p.numel() for p in build_model(get_preset(name)).parameters())


def test_every_preset_is_named_here():
    # The big presets are counted in test_paper_figures.py (unsupported ops included).
    assert set(list_presets()) == {
        "dat_nano",
        "dat_micro",
        "dat_tiny",
        "dat_small",
        "dat_base",
        "dat_base_384",
        "dat_pp_nano",
        "dat_pp_tiny",
        "dat_pp_small",
        "dat_pp_base",
        "dat_pp_base_384",
    }


def test_the_papers_worked_example_block_counted_by_fvcore():
    # H = W = 14, C = 384, r = 2 (Ns = 49), k = 5, 12 heads, 3 groups: docs/flops.md quotes this.
    cfg = one_stage(
        (14, 14), attn="D", dim=384, heads=12, reduction=2, offset_kernel=5, offset_groups=3
    )
    attn = next(r for r in assert_exact_in_both_branches(cfg).rows if r.kind == "D")
    assert attn.formula == 79_629_312 + 508_032
    assert attn.residue == {
        C.PRE_NORM: 5 * 196 * 384,
        C.OFFSET_NORM: 5 * 49 * 384,
        C.KEY_SAMPLING: 4 * 49 * 384,
        C.RELATIVE_LOOKUP: 4 * 12 * 196 * 49,
    }
    assert attn.fvcore == 81_144_000


# -- DAT++ parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hw, kernel", [((8, 8), 3), ((9, 7), 5), ((7, 7), 7), ((4, 6), 5), ((3, 3), 7)]
)
def test_neighborhood_attention_is_nats_formula_plus_padding_of_small_maps(hw, kernel):
    report = assert_exact_in_both_branches(one_stage(hw, attn="N", nat_kernel=kernel))
    attn = next(r for r in report.rows if r.kind == "N")
    n = hw[0] * hw[1]
    assert attn.formula == 4 * n * 32**2 + 2 * n * kernel**2 * 32
    assert (C.NEIGHBORHOOD_PADDING in attn.residue) == (min(hw) < kernel)


@pytest.mark.parametrize("hw", [(8, 8), (9, 7)])
def test_conv_ffn_lpu_layer_scale_and_convnext_blocks(hw):
    model = {"mlp": "dwconv", "lpu": True, "layer_scale": 1e-5}
    cfg = one_stage(hw, attn="NXD", depth=3, window=5, nat_kernel=3, model=model)
    report = assert_exact_in_both_branches(cfg)
    n, hidden = hw[0] * hw[1], 128
    mlp = next(r for r in report.rows if r.kind == "mlp")
    assert mlp.formula == 2 * n * 32 * hidden + 9 * n * hidden
    lpus = [r for r in report.rows if r.kind == "lpu"]
    assert len(lpus) == 3 and all(r.formula == 9 * n * 32 for r in lpus)
    conv = next(r for r in report.rows if r.kind == "X")
    assert conv.formula == 25 * n * 32 and conv.residue == {}


@pytest.mark.parametrize("sampling", [Sampling.CONSISTENT, Sampling.OFFICIAL_PP])
def test_log_cpb_is_a_named_residue(sampling):
    cfg = one_stage((9, 7), attn="D", pos_enc=PosEnc.LOG_CPB, reduction=2, offset_groups=2)
    report = assert_exact_in_both_branches(cfg.replace(sampling=sampling))
    attn = next(r for r in report.rows if r.kind == "D")
    assert attn.residue[C.LOG_CPB] == 2 * 63 * 20 * 2 * 32 + 63 * 20 * 32 * 4


@pytest.mark.parametrize("size", [None, (33, 30)])
def test_dat_pp_nano_with_conv_stem_and_conv_downsampling(size):
    report = assert_exact_in_both_branches(get_preset("dat_pp_nano"), size=size)
    kinds = {r.kind for r in report.rows}
    assert kinds == {"stem", "merge", "lpu", "N", "D", "mlp", "head"}
    stem = next(r for r in report.rows if r.kind == "stem")
    h1, w1 = (17, 15) if size else (16, 16)  # 3x3 stride-2 conv rounds up; the second: stride 1
    assert stem.formula == h1 * w1 * 8 * 3 * 9 + h1 * w1 * 16 * 8 * 9
    merge = next(r for r in report.rows if r.name == "stages.1.downsample")
    h, w = (9, 8) if size else (8, 8)
    assert merge.formula == h * w * 32 * 16 * 9
