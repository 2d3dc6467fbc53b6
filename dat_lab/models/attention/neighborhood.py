"""N: neighborhood attention (NAT, Hassani et al. 2023), in plain PyTorch, as DAT++ uses it.

Each query attends to the ``k x k`` keys around it. At a border the window does not run off
the map and is not padded: it shifts inward, so every query sees exactly ``k x k`` keys
(natten's ``get_window_start``: ``start = clamp(i - k // 2, 0, L - k)``). A learned relative
position bias ``rpb`` of shape ``(heads, 2k - 1, 2k - 1)`` (natten's layout) is read at
``(key_y - query_y + k - 1, key_x - query_x + k - 1)``; natten's ``get_pb_start`` gives the
same entry for shifted border windows.

A map smaller than the kernel: natten's kernels need ``H, W >= k``; its module (and DAT++'s
copy of it, ``models/nat.py``) zero-pads the block's input at the bottom and right up to
``k``, runs, and crops the output back. The padded pixels are real keys (their k and v are
the projection biases). We do the same, so official weights behave alike on small maps.

No compiled extension. Training and inference run the blocked ("halo") form of
:mod:`.halo`: ``T x T`` query tiles attend densely to the ``(T + k - 1)^2`` keys around them,
with the bias ``-inf`` outside each query's window; exact, and it copies each key about
``((T + k - 1) / T)^2`` times instead of ``k^2``. On CPU the tile attention is the explicit
formula of :func:`.attend` (SDPA's CPU kernels need a bias without gradient); on CUDA it is
SDPA with the float bias. ``T`` follows :func:`tile_size` (measured, see
``benchmarks/bench_neighborhood.py``).

FLOPs: the tile matmuls would count ``((T + k - 1) / T)^2`` times NAT's. Under
``torch.jit.trace`` (fvcore's counting) N runs :func:`gathered_neighborhood_attention`, the
per-query gather, whose matmuls fvcore counts exactly as NAT's complexity,
``4 HW C^2 + 2 HW k^2 C``. The same function is the reference the blocked form is tested
against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from dat_lab.models.attention._core import attend
from dat_lab.models.attention.halo import halo_layout, window_starts


def tile_size(h: int, w: int, kernel: int) -> int:
    """Query tile side ``T`` for an ``h x w`` map (measured: ``bench_neighborhood.py --tiles``).

    A map of at most ``2k`` a side is one tile (its halo is the whole map: one dense masked
    attention, no gather). Otherwise ``T = k``: larger tiles copy fewer halo keys but score
    more masked ones (``(T + k - 1)^2`` per query instead of ``k^2``). Measured on CPU at
    DAT++-T's N stages (k = 7): T = 7 and 8 tie at 56^2, T = 6-7 is fastest at 28^2, and one
    tile at 14^2; ``T = 7`` also divides 56 and 28, so no query is padded.
    """
    if max(h, w) <= 2 * kernel:
        return max(h, w)
    return kernel


def neighborhood_index(
    h: int, w: int, kernel: int, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(HW, k^2)`` flat key indices of every query's window and its ``rpb`` entries.

    The ``rpb`` index is into the flattened ``(2k - 1) x (2k - 1)`` table.
    """
    offs = torch.arange(kernel, device=device)
    ky = window_starts(h, kernel, device)[:, None] + offs  # H, k
    kx = window_starts(w, kernel, device)[:, None] + offs  # W, k
    qy = torch.arange(h, device=device)[:, None]
    qx = torch.arange(w, device=device)[:, None]
    # (H, 1, k, 1) and (1, W, 1, k) broadcast to (H, W, k, k)
    keys = ky[:, None, :, None] * w + kx[None, :, None, :]
    side = 2 * kernel - 1
    dy = (ky - qy + kernel - 1)[:, None, :, None]
    dx = (kx - qx + kernel - 1)[None, :, None, :]
    bias = dy * side + dx
    n, kk = h * w, kernel * kernel
    return keys.reshape(n, kk), bias.expand(h, w, kernel, kernel).reshape(n, kk)


def gathered_neighborhood_attention(
    qkv: torch.Tensor, rpb: torch.Tensor, kernel: int
) -> torch.Tensor:
    """Per-query gather of every window: ``(B, H, W, 3, heads, d) -> (B, H, W, heads * d)``.

    ``k^2`` copies of keys and values, then ``1 x d`` by ``d x k^2`` matmuls: the reference of
    the blocked form, and the path fvcore counts (its matmuls are NAT's complexity exactly).
    """
    b, h, w, _, heads, d = qkv.shape
    n = h * w
    q, k, v = qkv.reshape(b, n, 3, heads, d).permute(2, 0, 3, 1, 4).unbind(0)
    keys, bias_index = neighborhood_index(h, w, kernel, qkv.device)
    kk = keys.shape[1]
    # index_select on the flat index: its backward (index_add) is ~20% faster on CPU than
    # advanced indexing's.
    k_win = k.index_select(2, keys.flatten()).view(b, heads, n, kk, d)
    v_win = v.index_select(2, keys.flatten()).view(b, heads, n, kk, d)
    logits = (q * d**-0.5).unsqueeze(-2) @ k_win.transpose(-2, -1)  # B, heads, HW, 1, k^2
    bias = rpb.view(heads, -1)[:, bias_index]  # heads, HW, k^2
    weights = (logits + bias[None, :, :, None, :].to(logits.dtype)).softmax(dim=-1)
    out = (weights @ v_win).squeeze(-2)  # B, heads, HW, d
    return out.transpose(1, 2).reshape(b, h, w, heads * d)


def blocked_neighborhood_attention(
    qkv: torch.Tensor, rpb: torch.Tensor, kernel: int, tile: int, fused: bool = True
) -> torch.Tensor:
    """Tile-by-halo attention (:mod:`.halo`): ``(B, H, W, 3, heads, d) -> (B, H, W, heads*d)``.

    Equal to :func:`gathered_neighborhood_attention` in values and gradients.
    """
    b, h, w, _, heads, d = qkv.shape
    layout = halo_layout(h, w, kernel, tile, qkv.device)
    ry, rx = layout.rows, layout.cols
    tiles, hp, wp = ry.n * rx.n, ry.n * ry.tile, rx.n * rx.tile
    q = F.pad(qkv[:, :, :, 0], (0, 0, 0, 0, 0, wp - w, 0, hp - h))  # whole tiles
    q = q.view(b, ry.n, ry.tile, rx.n, rx.tile, heads, d).permute(0, 5, 1, 3, 2, 4, 6)
    q = q.reshape(b, heads * tiles, ry.tile * rx.tile, d)
    # Each halo gathered once: rows, then columns (two small index_adds backward); an axis
    # that is one tile with the whole map as its halo needs no gather.
    kv = qkv[:, :, :, 1:]
    if ry.n > 1 or ry.halo < h:
        kv = kv.index_select(1, ry.keys)
    if rx.n > 1 or rx.halo < w:
        kv = kv.index_select(2, rx.keys)
    kv = kv.view(b, ry.n, ry.halo, rx.n, rx.halo, 2, heads, d).permute(5, 0, 6, 1, 3, 2, 4, 7)
    k, v = kv.reshape(2, b, heads * tiles, ry.halo * rx.halo, d).unbind(0)
    table = torch.cat((rpb.flatten(1), rpb.new_full((heads, 1), float("-inf"))), dim=1)
    bias = table.index_select(1, layout.bias_index.flatten()).view(heads, *layout.bias_index.shape)
    bias = bias.index_select(1, layout.tile_pattern).flatten(0, 1).to(q.dtype)
    out, _ = attend(q, k, v, bias, fused=fused)  # B, heads * tiles, T_h T_w, d
    out = out.view(b, heads, ry.n, rx.n, ry.tile, rx.tile, d).permute(0, 2, 4, 3, 5, 1, 6)
    return out.reshape(b, hp, wp, heads * d)[:, :h, :w]


class NeighborhoodAttention(nn.Module):
    """N: multi-head attention over each query's clamped ``k x k`` neighbourhood, plus rpb.

    Args:
        dim: channels C.
        heads: heads M.
        kernel: neighbourhood size k (odd).
        tile: query tile side of the blocked form; ``None``: :func:`tile_size` of the map.

    Shapes: ``(B, H, W, dim) -> (B, H, W, dim)``.
    """

    def __init__(self, dim: int, heads: int, kernel: int, tile: int | None = None) -> None:
        super().__init__()
        self.heads, self.kernel, self.tile = heads, kernel, tile
        self.fused_attn = True
        self.qkv = nn.Linear(dim, 3 * dim)
        self.rpb = nn.Parameter(torch.zeros(heads, 2 * kernel - 1, 2 * kernel - 1))
        trunc_normal_(self.rpb, std=0.02, mean=0.0, a=-2.0, b=2.0)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h0, w0, c = x.shape
        pad_h, pad_w = max(0, self.kernel - h0), max(0, self.kernel - w0)
        if pad_h or pad_w:  # natten's module: zero-pad bottom/right up to the kernel
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        h, w = h0 + pad_h, w0 + pad_w
        qkv = self.qkv(x).view(b, h, w, 3, self.heads, c // self.heads)
        if torch.jit.is_tracing():  # FLOP counting: the path whose matmuls are NAT's count
            out = gathered_neighborhood_attention(qkv, self.rpb, self.kernel)
        else:
            tile = self.tile or tile_size(h, w, self.kernel)
            out = blocked_neighborhood_attention(qkv, self.rpb, self.kernel, tile, self.fused_attn)
        out = self.proj(out)  # then crop, as natten's module (and the FLOP count) does
        return out[:, :h0, :w0].contiguous() if (pad_h or pad_w) else out
