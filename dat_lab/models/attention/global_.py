"""G: global (full) multi-head self-attention."""

from __future__ import annotations

import torch
from torch import nn

from dat_lab.models.attention._core import attend


class GlobalAttention(nn.Module):
    """G: every query attends to every position (ViT MHSA, Vaswani et al. eq. 1).

    ``Attention(Q, K, V) = SoftMax(Q K^T / sqrt(d)) V`` over all ``HW`` keys: the natural
    baseline for D, which at r = 1 also has ``HW`` keys.

    Shapes: ``(B, H, W, dim) -> (B, H, W, dim)``.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.fused_attn = True
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        qkv = self.qkv(x).view(b, h * w, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B, heads, HW, d
        out, _ = attend(q, k, v, fused=self.fused_attn)
        return self.proj(out.transpose(1, 2).reshape(b, h, w, c))
