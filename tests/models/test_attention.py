"""Behaviour of each attention type, checked against each other and against the paper."""

from __future__ import annotations

import pytest
import torch

from dat_lab.models.attention import (
    DeformableAttention,
    GlobalAttention,
    NeighborhoodAttention,
    ShiftedWindowAttention,
    SpatialReductionAttention,
    WindowAttention,
)
from dat_lab.models.enums import OffsetMode, PosEnc, Sampling
from dat_lab.models.pos_embed import cell_centres
from dat_lab.models.stage import DeformableSpec


def spec(**kw) -> DeformableSpec:
    base = dict(
        offsets=True,
        offset_range=2.0,
        offset_mode=OffsetMode.BOUNDED,
        reduction=1,
        offset_groups=2,
        offset_kernel=3,
        pos_enc=PosEnc.NONE,
    )
    return DeformableSpec(**{**base, **kw})


def copy_qkvo_into_global(d: DeformableAttention, g: GlobalAttention) -> None:
    with torch.no_grad():
        g.qkv.weight.copy_(torch.cat([d.proj_q.weight, d.proj_k.weight, d.proj_v.weight]))
        g.qkv.bias.copy_(torch.cat([d.proj_q.bias, d.proj_k.bias, d.proj_v.bias]))
        g.proj.load_state_dict(d.proj_out.state_dict())


@pytest.mark.parametrize("size", [(7, 7), (6, 9)])
@pytest.mark.parametrize("fused", [True, False])
def test_deformable_without_offsets_at_r1_without_pe_equals_global(size, fused):
    torch.manual_seed(0)
    d = DeformableAttention(32, 4, spec(offsets=False), size)
    g = GlobalAttention(32, 4)
    copy_qkvo_into_global(d, g)
    d.fused_attn = g.fused_attn = fused
    x = torch.randn(2, *size, 32)
    torch.testing.assert_close(d(x), g(x), atol=1e-5, rtol=1e-5)


def test_deformable_with_zero_range_samples_the_input_at_the_reference_points():
    torch.manual_seed(0)
    d = DeformableAttention(32, 4, spec(offset_range=0.0), (8, 8))
    x = torch.randn(2, 8, 8, 32)
    ref, pos = d.sample_points(d.proj_q(x))
    torch.testing.assert_close(pos, ref)
    sampled = d.sample_keys(x, pos)  # B, Ns, C
    torch.testing.assert_close(sampled, x.reshape(2, 64, 32), atol=1e-6, rtol=0)


def test_reference_points_land_on_pixels_in_the_consistent_convention():
    ref = cell_centres(5, 7)
    # align_corners=False un-normalisation gives integer pixel coordinates 0..H-1.
    pix_y = (ref[..., 0] + 1) / 2 * 5 - 0.5
    pix_x = (ref[..., 1] + 1) / 2 * 7 - 0.5
    torch.testing.assert_close(pix_y[:, 0], torch.arange(5.0))
    torch.testing.assert_close(pix_x[0], torch.arange(7.0))


def test_official_convention_distorts_zero_offsets():
    """The official align_corners=True sampling does not return x at the reference points."""
    torch.manual_seed(0)
    d = DeformableAttention(32, 4, spec(offset_range=0.0), (8, 8), sampling=Sampling.OFFICIAL)
    x = torch.randn(1, 8, 8, 32)
    _, pos = d.sample_points(d.proj_q(x))
    sampled = d.sample_keys(x, pos)
    assert (sampled - x.reshape(1, 64, 32)).abs().max() > 1e-2


def test_reduction_shrinks_the_key_grid_and_r2_zero_offsets_average_2x2_cells():
    torch.manual_seed(0)
    d = DeformableAttention(32, 4, spec(offsets=False, reduction=2), (8, 8))
    x = torch.randn(1, 8, 8, 32)
    ref, pos = d.sample_points(d.proj_q(x))
    assert ref.shape[1:3] == (4, 4)
    sampled = d.sample_keys(x, pos)
    pooled = torch.nn.functional.avg_pool2d(x.permute(0, 3, 1, 2), 2).flatten(2).transpose(1, 2)
    torch.testing.assert_close(sampled, pooled, atol=1e-6, rtol=0)


def test_shifted_window_covering_the_whole_map_equals_local_window():
    torch.manual_seed(0)
    local = WindowAttention(32, 4, window=7)
    shifted = ShiftedWindowAttention(32, 4, window=7, shift=4)
    shifted.load_state_dict(local.state_dict())
    x = torch.randn(2, 7, 7, 32)
    torch.testing.assert_close(shifted(x), local(x))


def test_shifted_window_differs_from_local_when_windows_tile_the_map():
    torch.manual_seed(0)
    local = WindowAttention(32, 4, window=4)
    shifted = ShiftedWindowAttention(32, 4, window=4, shift=2)
    shifted.load_state_dict(local.state_dict())
    x = torch.randn(1, 8, 8, 32)
    assert (shifted(x) - local(x)).abs().max() > 1e-3


def test_local_window_is_local():
    """Changing a pixel in one window leaves the other windows' outputs unchanged."""
    torch.manual_seed(0)
    local = WindowAttention(16, 2, window=4)
    x = torch.randn(1, 8, 8, 16)
    y = x.clone()
    y[0, 0, 0] += 1.0
    diff = (local(x) - local(y)).abs().sum(-1)[0]
    assert diff[:4, :4].max() > 0 and diff[4:, :].max() == 0 and diff[:, 4:].max() == 0


def test_window_padding_keeps_real_tokens_away_from_padding():
    """A 5x5 map with window 4 is padded to 8x8; padding must not change real outputs."""
    torch.manual_seed(0)
    local = WindowAttention(16, 2, window=4)
    x = torch.randn(1, 5, 5, 16)
    out = local(x)
    assert out.shape == x.shape
    # The top-left window holds only real pixels: it equals attention on that crop alone.
    torch.testing.assert_close(out[:, :4, :4], local(x[:, :4, :4]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "module",
    [
        lambda: WindowAttention(32, 4, window=4),
        lambda: ShiftedWindowAttention(32, 4, window=4, shift=2),
        lambda: GlobalAttention(32, 4),
        lambda: SpatialReductionAttention(32, 4, sr_ratio=2),
        lambda: DeformableAttention(32, 4, spec(pos_enc=PosEnc.RELATIVE), (8, 8)),
        lambda: DeformableAttention(32, 4, spec(pos_enc=PosEnc.FIXED, reduction=2), (8, 8)),
        lambda: DeformableAttention(32, 4, spec(pos_enc=PosEnc.DWCONV), (8, 8)),
        lambda: NeighborhoodAttention(32, 4, kernel=3, tile=3),  # SDPA with the -inf mask
    ],
)
def test_fused_and_explicit_branches_agree(module):
    torch.manual_seed(0)
    m = module()
    x = torch.randn(2, 8, 8, 32)

    def run(fused: bool) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        m.fused_attn = fused
        m.zero_grad()
        with torch.no_grad():  # inference: SDPA's fused kernel whatever the bias
            inference = m(x)
        out = m(x)
        out.square().sum().backward()
        return inference, out, [p.grad.clone() for p in m.parameters()]

    fused, explicit = run(True), run(False)
    torch.testing.assert_close(fused[0], explicit[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused[1], explicit[1], atol=1e-5, rtol=1e-5)
    for a, b in zip(fused[2], explicit[2], strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_offset_network_gets_gradients_when_offsets_move():
    torch.manual_seed(0)
    d = DeformableAttention(32, 4, spec(offset_range=2.0, pos_enc=PosEnc.RELATIVE), (8, 8))
    d(torch.randn(2, 8, 8, 32)).square().sum().backward()
    for name, p in d.conv_offset.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_offsets_are_bounded_by_s_key_grid_cells():
    torch.manual_seed(0)
    s = 3.0
    d = DeformableAttention(32, 4, spec(offset_range=s), (8, 8))
    with torch.no_grad():
        d.conv_offset.proj.weight.mul_(1000)  # saturate tanh
    ref, pos = d.sample_points(d.proj_q(torch.randn(2, 8, 8, 32)))
    moved_cells = (pos - ref).abs() / (2 / 8)  # one key cell is 2/Hk normalised
    assert moved_cells.max() <= s / 2 + 1e-5
    assert moved_cells.max() > s / 2 * 0.9


def test_clamped_mode_keeps_points_inside_the_map():
    torch.manual_seed(0)
    d = DeformableAttention(32, 4, spec(offset_mode=OffsetMode.CLAMPED), (8, 8))
    with torch.no_grad():
        d.conv_offset.proj.weight.mul_(1000)
    _, pos = d.sample_points(d.proj_q(torch.randn(2, 8, 8, 32)))
    assert pos.abs().max() <= 1.0
    assert pos.abs().max() == 1.0  # saturated offsets hit the border


def test_relative_bias_reads_one_table_entry_per_pixel_of_displacement():
    from dat_lab.models.pos_embed import RelativePositionBias

    rpb = RelativePositionBias(heads=1, groups=1, size=(5, 5), official=False)
    with torch.no_grad():
        # table[i, j] = 100 * (i - 4) + (j - 4): the displacement in pixels, encoded
        i, j = torch.meshgrid(torch.arange(9.0), torch.arange(9.0), indexing="ij")
        rpb.rpe_table.copy_((100 * (i - 4) + (j - 4))[None])
    queries = cell_centres(5, 5).view(25, 2)
    keys = cell_centres(5, 5).view(1, 25, 2)
    bias = rpb(queries, keys, 5, 5)[0, 0]  # HW, Ns
    qy, qx = torch.div(torch.arange(25), 5, rounding_mode="floor"), torch.arange(25) % 5
    expected = 100 * (qy[:, None] - qy[None, :]) + (qx[:, None] - qx[None, :])
    torch.testing.assert_close(bias, expected.float(), atol=1e-3, rtol=0)


def test_fixed_position_bias_refuses_another_size():
    d = DeformableAttention(32, 4, spec(pos_enc=PosEnc.FIXED), (8, 8))
    with pytest.raises(ValueError, match="fixed position bias was built for a 8x8"):
        d(torch.randn(1, 6, 6, 32))


def test_spatial_reduction_without_reduction_equals_global():
    torch.manual_seed(0)
    p = SpatialReductionAttention(32, 4, sr_ratio=1)
    g = GlobalAttention(32, 4)
    with torch.no_grad():
        g.qkv.weight.copy_(torch.cat([p.q.weight, p.kv.weight]))
        g.qkv.bias.copy_(torch.cat([p.q.bias, p.kv.bias]))
        g.proj.load_state_dict(p.proj.state_dict())
    x = torch.randn(2, 6, 6, 32)
    torch.testing.assert_close(p(x), g(x), atol=1e-5, rtol=1e-5)


def test_the_window_mask_cache_keeps_only_the_most_recent_sizes():
    from dat_lab.models.attention.window import MASK_CACHE_SIZE

    shifted = ShiftedWindowAttention(8, 2, window=4, shift=2)
    for side in range(5, 6 + 2 * MASK_CACHE_SIZE):  # every size needs its own mask
        shifted(torch.randn(1, side, side, 8))
    cached = [key[:2] for key in shifted._mask_cache]
    last = 5 + 2 * MASK_CACHE_SIZE
    assert cached == [(s, s) for s in range(last - MASK_CACHE_SIZE, last + 1)][-MASK_CACHE_SIZE:]
