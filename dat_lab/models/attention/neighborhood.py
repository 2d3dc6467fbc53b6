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

No compiled extension: keys and values of every window are gathered with one index tensor
(``(HW, k^2)``, cached per map size; that makes ``k^2`` copies of k and v, so on CPU N costs
several times a window block of the same size, see ``benchmarks/bench_backbone.py``), then
``q k^T`` and ``weights v`` are batched matmuls of ``1 x d`` by ``d x k^2``. fvcore counts
those matmuls exactly (``HW k^2 d`` per head each), so N needs no FLOP handle of its own:
``4 HW C^2 + 2 HW k^2 C`` (NAT's complexity).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn


def window_starts(length: int, kernel: int, device=None) -> torch.Tensor:
    """First key index of each query's window along one axis (``length >= kernel``)."""
    i = torch.arange(length, device=device)
    return (i - kernel // 2).clamp(0, length - kernel)


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


class NeighborhoodAttention(nn.Module):
    """N: multi-head attention over each query's clamped ``k x k`` neighbourhood, plus rpb.

    Args:
        dim: channels C.
        heads: heads M.
        kernel: neighbourhood size k (odd).

    Shapes: ``(B, H, W, dim) -> (B, H, W, dim)``.
    """

    def __init__(self, dim: int, heads: int, kernel: int) -> None:
        super().__init__()
        self.heads, self.kernel = heads, kernel
        self.qkv = nn.Linear(dim, 3 * dim)
        self.rpb = nn.Parameter(torch.zeros(heads, 2 * kernel - 1, 2 * kernel - 1))
        trunc_normal_(self.rpb, std=0.02, mean=0.0, a=-2.0, b=2.0)
        self.proj = nn.Linear(dim, dim)
        self._index_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _index(self, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (h, w, device)
        if key not in self._index_cache:
            self._index_cache[key] = neighborhood_index(h, w, self.kernel, device)
        return self._index_cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h0, w0, c = x.shape
        pad_h, pad_w = max(0, self.kernel - h0), max(0, self.kernel - w0)
        if pad_h or pad_w:  # natten's module: zero-pad bottom/right up to the kernel
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        h, w = h0 + pad_h, w0 + pad_w
        n, d = h * w, c // self.heads
        qkv = self.qkv(x).view(b, n, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each B, heads, HW, d
        keys, bias_index = self._index(h, w, x.device)
        kk = keys.shape[1]
        # index_select on the flat index: its backward (index_add) is ~20% faster on CPU than
        # advanced indexing's.
        k_win = k.index_select(2, keys.flatten()).view(b, self.heads, n, kk, d)
        v_win = v.index_select(2, keys.flatten()).view(b, self.heads, n, kk, d)
        logits = (q * d**-0.5).unsqueeze(-2) @ k_win.transpose(-2, -1)  # B, heads, HW, 1, k^2
        bias = self.rpb.view(self.heads, -1)[:, bias_index]  # heads, HW, k^2
        weights = (logits + bias[None, :, :, None, :].to(logits.dtype)).softmax(dim=-1)
        out = (weights @ v_win).squeeze(-2)  # B, heads, HW, d
        out = self.proj(out.transpose(1, 2).reshape(b, h, w, c))
        return out[:, :h0, :w0].contiguous() if (pad_h or pad_w) else out
