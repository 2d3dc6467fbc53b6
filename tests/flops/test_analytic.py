"""The published formulas, and the worked example of the DAT paper."""

from __future__ import annotations

from dat_lab.flops import analytic as A


def test_the_papers_worked_example_gives_79_63m_for_the_attention():
    # H = W = 14, C = 384, Ns = 49: r = 2 at 14 x 14 (key grid 7 x 7).
    hk, wk = A.key_grid(14, 14, 2)
    assert hk * wk == 49
    flops = A.deformable_attention(14, 14, 384, 49)
    assert flops == 2 * 196 * 49 * 384 + 2 * 196 * 384**2 + 2 * 49 * 384**2 == 79_629_312
    assert round(flops / 1e6, 2) == 79.63


def test_the_offset_network_formula_gives_0_51m_not_the_quoted_5_08m():
    flops = A.offset_network(49, 384, 5)
    assert flops == 27 * 49 * 384 == 508_032
    assert round(flops / 1e6, 2) == 0.51  # the paper's text quotes 5.08M, ten times this


def test_key_grid_rounds_up_like_the_strided_offset_conv():
    assert A.key_grid(14, 14, 1) == (14, 14)
    assert A.key_grid(9, 7, 2) == (5, 4)
    assert A.key_grid(7, 7, 3) == (3, 3)


def test_swin_formula_and_its_window_padding_residue():
    # Swin-T stage 1 W-MSA: 56 x 56, C = 96, M = 7.
    assert A.window_attention(56, 56, 96, (7, 7)) == 4 * 3136 * 96**2 + 2 * 49 * 3136 * 96
    assert A.window_padding(49, 49, 96, (7, 7)) == 0
    assert A.window_padding(9 * 7, 12 * 8, 16, (4, 4)) == 4 * 33 * 16**2 + 2 * 16 * 33 * 16


def test_spatial_reduction_with_sr_1_is_global_attention():
    assert A.spatial_reduction_attention(64, 64, 32, 1) == A.global_attention(64, 32)
