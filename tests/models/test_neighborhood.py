"""N (neighborhood attention) against a direct definition, the per-query gather, natten's
layout, and G."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dat_lab.models.attention import GlobalAttention, NeighborhoodAttention
from dat_lab.models.attention.halo import halo_layout, window_starts
from dat_lab.models.attention.neighborhood import (
    blocked_neighborhood_attention,
    gathered_neighborhood_attention,
    neighborhood_index,
)


def direct_neighborhood_attention(attn: NeighborhoodAttention, x: torch.Tensor) -> torch.Tensor:
    """A loop over queries, each with its own k x k window clamped inside the map.

    A map smaller than the kernel is zero-padded at the bottom/right to the kernel first and
    the output cropped, as natten's module (and DAT++'s nat.py) does.
    """
    b, h0, w0, c = x.shape
    k, heads = attn.kernel, attn.heads
    d = c // heads
    x = F.pad(x, (0, 0, 0, max(0, k - w0), 0, max(0, k - h0)))
    h, w = x.shape[1:3]
    q, key, v = attn.qkv(x).view(b, h, w, 3, heads, d).unbind(3)
    rows = []
    for y in range(h):
        for x_ in range(w):
            sy = min(max(y - k // 2, 0), h - k)  # shifted inward at a border
            sx = min(max(x_ - k // 2, 0), w - k)
            keys = key[:, sy : sy + k, sx : sx + k].reshape(b, k * k, heads, d)
            vals = v[:, sy : sy + k, sx : sx + k].reshape(b, k * k, heads, d)
            # rpb entry of key (ky, kx) for query (y, x): (ky - y + k - 1, kx - x + k - 1)
            bias = attn.rpb[:, sy - y + k - 1 : sy - y + 2 * k - 1, sx - x_ + k - 1 :]
            bias = bias[:, :, :k].reshape(heads, k * k)
            logits = torch.einsum("bhd,bnhd->bhn", q[:, y, x_] * d**-0.5, keys) + bias
            rows.append(torch.einsum("bhn,bnhd->bhd", logits.softmax(-1), vals))
    out = torch.stack(rows, 1).reshape(b, h, w, c)
    return attn.proj(out)[:, :h0, :w0]


@pytest.mark.parametrize(
    "size, kernel",
    [((5, 5), 3), ((6, 7), 3), ((8, 6), 5), ((7, 7), 7), ((4, 6), 5), ((3, 2), 5)],
    ids=["odd", "odd-even", "even", "kernel=map", "one-side-smaller", "smaller-than-kernel"],
)
def test_neighborhood_attention_equals_direct_definition_in_values_and_gradients(size, kernel):
    torch.manual_seed(0)
    attn = NeighborhoodAttention(12, 3, kernel).double()
    with torch.no_grad():
        attn.rpb.normal_()  # a bias large enough to matter
    x = torch.randn(2, *size, 12, dtype=torch.double, requires_grad=True)
    out = attn(x)
    ref = direct_neighborhood_attention(attn, x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, ref)
    grad_out = torch.randn_like(out)
    params = [x, attn.rpb, attn.qkv.weight, attn.proj.weight]
    ours = torch.autograd.grad(out, params, grad_out)
    theirs = torch.autograd.grad(ref, params, grad_out)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "h, w, kernel, tile",
    [
        (9, 9, 3, 4),  # odd, tiles not dividing the map
        (8, 8, 5, 4),  # even, tiles dividing it
        (11, 6, 5, 3),  # non-square
        (7, 7, 7, 8),  # map equal to the kernel
        (10, 12, 7, 8),  # map smaller than tile + kernel - 1: the halo is the whole map
        (20, 17, 7, 5),  # interior tiles with clamped first and last ones
        (16, 16, 3, 16),  # one tile
    ],
)
def test_blocked_form_equals_the_gather_in_values_and_gradients(h, w, kernel, tile):
    torch.manual_seed(0)
    heads, d = 2, 3
    qkv = torch.randn(2, h, w, 3, heads, d, dtype=torch.double, requires_grad=True)
    rpb = torch.randn(heads, 2 * kernel - 1, 2 * kernel - 1, dtype=torch.double)
    rpb.requires_grad_()
    ours = blocked_neighborhood_attention(qkv, rpb, kernel, tile)
    ref = gathered_neighborhood_attention(qkv, rpb, kernel)
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)
    grad_out = torch.randn_like(ours)
    for a, b in zip(
        torch.autograd.grad(ours, (qkv, rpb), grad_out),
        torch.autograd.grad(ref, (qkv, rpb), grad_out),
        strict=True,
    ):  # the qkv gradient holds those of q, k and v
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("h, w, kernel, tile", [(9, 9, 3, 4), (20, 17, 7, 5), (10, 12, 7, 8)])
def test_every_window_lies_in_its_tiles_halo_and_keeps_k_squared_keys(h, w, kernel, tile):
    layout = halo_layout(h, w, kernel, tile, torch.device("cpu"))
    for axis, length in ((layout.rows, h), (layout.cols, w)):
        keys = axis.keys.view(axis.n, axis.halo)
        assert keys.min() >= 0 and keys.max() < length  # halos stay inside the map
        starts = window_starts(length, kernel).tolist()
        for t in range(axis.n):
            for i in range(axis.tile):
                query = min(t * axis.tile + i, length - 1)  # padded queries: the last window
                inside = keys[t][axis.inside[t, i]].tolist()
                assert inside == list(range(starts[query], starts[query] + kernel))
    side = 2 * kernel - 1
    finite = (layout.bias_index < side * side).sum(-1)
    assert (finite == kernel * kernel).all()  # the -inf slot elsewhere


def _natten_window_start(index: int, length: int, kernel: int) -> int:
    """natten 0.14's get_window_start, dilation 1, restated."""
    ns = kernel // 2
    return max(index - ns, 0) + (index + ns >= length) * (length - index - ns - 1)


def _natten_pb_start(index: int, length: int, kernel: int) -> int:
    """natten 0.14's get_pb_start, dilation 1, restated."""
    ns = kernel // 2
    return ns + (index < ns) * (ns - index) + (index + ns >= length) * (length - index - 1 - ns)


@pytest.mark.parametrize("h, w, kernel", [(7, 7, 7), (9, 11, 3), (10, 5, 5), (14, 8, 7)])
def test_window_and_bias_index_follow_natten_rules(h, w, kernel):
    for length in (h, w):
        starts = window_starts(length, kernel).tolist()
        assert starts == [_natten_window_start(i, length, kernel) for i in range(length)]
    keys, bias = neighborhood_index(h, w, kernel)
    side = 2 * kernel - 1
    for y in range(h):
        for x in range(w):
            sy, sx = _natten_window_start(y, h, kernel), _natten_window_start(x, w, kernel)
            py, px = _natten_pb_start(y, h, kernel), _natten_pb_start(x, w, kernel)
            window = [(a, b) for a in range(kernel) for b in range(kernel)]
            # natten: key (sy + a, sx + b) reads rpb[pb_start_y + a, pb_start_x + b]
            assert keys[y * w + x].tolist() == [(sy + a) * w + sx + b for a, b in window]
            assert bias[y * w + x].tolist() == [(py + a) * side + px + b for a, b in window]


def test_kernel_covering_the_map_without_bias_equals_global_attention():
    torch.manual_seed(0)
    n_attn = NeighborhoodAttention(16, 4, kernel=5)
    with torch.no_grad():
        n_attn.rpb.zero_()
    g_attn = GlobalAttention(16, 4)
    missing = g_attn.load_state_dict(
        {k: v for k, v in n_attn.state_dict().items() if k != "rpb"}, strict=True
    )
    assert not missing.missing_keys
    x = torch.randn(2, 5, 5, 16)
    torch.testing.assert_close(n_attn(x), g_attn(x))
    with torch.no_grad():
        n_attn.rpb.normal_()
    assert not torch.allclose(n_attn(x), g_attn(x))  # the bias is what separates them
