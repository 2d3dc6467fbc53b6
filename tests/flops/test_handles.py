"""The fvcore handles on one-op modules, with the ground truth written as arithmetic."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dat_lab.flops.handles import COUNTED_OPS, ZERO_COST_OPS, einsum_flops, flop_analysis
from dat_lab.models.attention._core import attend


class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


def count(module: nn.Module, *inputs: torch.Tensor):
    with torch.no_grad():
        analysis = flop_analysis(module.eval(), inputs)
        return analysis.total(), analysis.unsupported_ops(), analysis.by_operator()


@pytest.mark.parametrize("with_bias", [True, False])
def test_sdpa_counts_its_two_matmuls_like_the_explicit_branch(with_bias):
    b, h, nq, nk, d = 2, 3, 10, 7, 8
    q, k, v = torch.randn(b, h, nq, d), torch.randn(b, h, nk, d), torch.randn(b, h, nk, d)
    bias = torch.randn(h, nq, nk) if with_bias else None
    expected = b * h * nq * nk * d * 2  # q k^T and weights v, one multiply-add each
    for fused in (True, False):
        total, unsupported, _ = count(
            Fn(lambda q, k, v, fused=fused: attend(q, k, v, bias, fused=fused)[0]), q, k, v
        )
        assert total == expected
        assert not unsupported


def test_sdpa_with_a_different_value_width():
    q, k, v = torch.randn(1, 2, 5, 4), torch.randn(1, 2, 6, 4), torch.randn(1, 2, 6, 3)
    total, _, _ = count(Fn(F.scaled_dot_product_attention), q, k, v)
    assert total == 2 * 5 * 6 * 4 + 2 * 5 * 6 * 3


def test_einsum_is_an_exact_integer():
    a, b = torch.randn(2, 3, 5, 7), torch.randn(2, 3, 11, 7)
    total, _, ops = count(Fn(lambda a, b: torch.einsum("bhqd,bhkd->bhqk", a, b)), a, b)
    assert total == 2 * 3 * 5 * 11 * 7
    assert isinstance(ops["einsum"], int)


def test_einsum_chains_contract_along_the_optimal_path():
    # (10x20)(20x30) first: 6,000, then (10x30)(30x40): 12,000; the other order costs more.
    assert einsum_flops("ij,jk,kl->il", [[10, 20], [20, 30], [30, 40]]) == 18_000
    assert einsum_flops("...qd,...kd->...qk", [[2, 3, 5, 7], [2, 3, 11, 7]]) == 2 * 3 * 5 * 11 * 7
    assert einsum_flops("ij,jk", [[4, 5], [5, 6]]) == 4 * 5 * 6  # implicit output
    assert einsum_flops("ii->i", [[4, 4]]) == 0  # one operand: no multiply-add


def test_einsum_stays_exact_beyond_float_precision():
    n = 2**20  # product 2**60 + ... is not representable as a float64 integer
    assert einsum_flops("ab,bc->ac", [[n, n + 1], [n + 1, 3]]) == n * (n + 1) * 3


def test_linear_counts_in_times_out_per_token_and_no_bias():
    x = torch.randn(1, 5, 7, 16)
    for bias in (True, False):
        total, _, _ = count(nn.Linear(16, 24, bias=bias), x)
        assert total == 5 * 7 * 16 * 24


def test_depthwise_conv_counts_per_group():
    total, _, _ = count(nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), torch.randn(1, 8, 9, 7))
    assert total == 8 * 9 * 5 * 4  # channels * k^2 * ceil(9/2) * ceil(7/2)


def test_layer_norm_grid_sample_mean_and_bicubic_follow_fvcores_estimates():
    x = torch.randn(1, 6, 5, 4)
    assert count(nn.LayerNorm(4), x)[0] == 5 * x.numel()
    grid = torch.rand(1, 3, 2, 2) * 2 - 1
    assert (
        count(Fn(lambda x, g: F.grid_sample(x, g, align_corners=False)), x, grid)[0]
        == 4 * 6 * 3 * 2
    )
    assert count(Fn(lambda x: x.mean(dim=(1, 2))), x)[0] == x.numel()
    up = Fn(lambda x: F.interpolate(x, size=(7, 9), mode="bicubic"))
    assert count(up, x)[0] == 16 * 6 * 7 * 9


def test_pointwise_and_data_movement_ops_cost_zero_and_are_not_unsupported():
    def body(x):
        y = F.pad(torch.roll(x, 1, dims=1), (0, 1)).softmax(-1)
        return F.gelu(y) * 2 + torch.tanh(y) - y.flip(-1)

    total, unsupported, _ = count(Fn(body), torch.randn(1, 4, 5))
    assert total == 0
    assert not unsupported


def test_an_op_in_neither_table_is_reported_not_silently_dropped():
    # aten::cumsum is in neither our tables nor fvcore's ignore list.
    _, unsupported, _ = count(Fn(lambda x: torch.cumsum(x, 0)), torch.randn(3, 3))
    assert unsupported == {"aten::cumsum": 1}


def test_the_ignore_list_is_ours_not_fvcores():
    analysis = flop_analysis(nn.Identity(), (torch.zeros(1),))
    assert analysis._ignored_ops == set(ZERO_COST_OPS)
    assert not set(COUNTED_OPS) & set(ZERO_COST_OPS)
    assert all(reason for reason in ZERO_COST_OPS.values())


def test_neighborhood_attention_counts_nats_formula_not_its_tile_matmuls():
    from dat_lab.models.attention.neighborhood import (
        NeighborhoodAttention,
        blocked_neighborhood_attention,
    )

    h, w, c, heads, k = 14, 14, 32, 2, 7
    attn = NeighborhoodAttention(c, heads, k)
    total, unsupported, _ = count(attn, torch.randn(1, h, w, c))
    assert total == 4 * h * w * c * c + 2 * h * w * k * k * c  # NAT's complexity
    assert not unsupported
    qkv, rpb = torch.randn(1, h, w, 3, heads, c // heads), attn.rpb.detach()
    tiled, _, _ = count(Fn(lambda t: blocked_neighborhood_attention(t, rpb, k, 8)), qkv)
    assert tiled > 2 * h * w * k * k * c  # what fvcore would count for the tile matmuls
