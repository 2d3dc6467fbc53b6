"""P: PVT spatial-reduction attention."""

from __future__ import annotations

import torch
from torch import nn

from dat_lab.models.attention._core import attend


class SpatialReductionAttention(nn.Module):
    """P: queries at every position, keys/values from a spatially reduced map (PVT, eq. 3-4).

    ``SRA(Q, K, V) = Concat(head_i) W^O`` with ``head_i = Attention(Q W^Q_i, SR(K) W^K_i,
    SR(V) W^V_i)`` and ``SR(x) = Norm(Conv_{sr x sr, stride sr}(x))``; ``sr = 1`` skips the
    reduction (then P equals G). The paper's "P" row uses sr 8 and 4 in stages 1-2.

    Shapes: ``(B, H, W, dim) -> (B, H, W, dim)``; needs ``H, W >= sr``.
    """

    def __init__(self, dim: int, heads: int, sr_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.sr_ratio = sr_ratio
        self.fused_attn = True
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        d = c // self.heads
        q = self.q(x).view(b, h * w, self.heads, d).transpose(1, 2)  # B, heads, HW, d
        if self.sr_ratio > 1:
            if min(h, w) < self.sr_ratio:
                raise ValueError(
                    f"P block: feature map {h}x{w} smaller than sr_ratio {self.sr_ratio}"
                )
            x = self.norm(self.sr(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
        kv = self.kv(x.reshape(b, -1, c)).view(b, -1, 2, self.heads, d)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each B, heads, Nk, d
        out, _ = attend(q, k, v, fused=self.fused_attn)
        return self.proj(out.transpose(1, 2).reshape(b, h, w, c))
