"""Layers shared by every block: stem, downsampling, MLP, drop path, channels-first norm.

Feature maps travel between blocks channels-last, ``(B, H, W, C)``, as in timm's Swin: linear
layers and LayerNorm act on the last dimension without permutes. Convolutions permute locally.
"""

from __future__ import annotations

import torch
from timm.layers import DropPath, LayerNorm2d, Mlp
from torch import nn

__all__ = ["DropPath", "LayerNorm2d", "Mlp", "Stem", "Downsample", "drop_path_rates"]


class Stem(nn.Module):
    """Patch embedding: ``patch x patch`` conv with stride ``patch``, then LayerNorm.

    Args:
        in_chans: image channels.
        dim: output channels.
        patch_size: kernel and stride (4 in the paper).

    Shapes: ``(B, in_chans, H, W) -> (B, H // p, W // p, dim)``.
    """

    def __init__(self, in_chans: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class Downsample(nn.Module):
    """Between stages: 2x2 conv with stride 2 (no bias), then LayerNorm.

    Shapes: ``(B, H, W, C_in) -> (B, H // 2, W // 2, C_out)``. An odd side loses its last row
    or column, as in the official code.
    """

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim_in, dim_out, kernel_size=2, stride=2, bias=False)
        self.norm = nn.LayerNorm(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x.permute(0, 3, 1, 2))
        return self.norm(x.permute(0, 2, 3, 1))


def drop_path_rates(rate: float, depths: list[int]) -> list[list[float]]:
    """Stochastic-depth rates rising linearly from 0 to ``rate`` over all blocks, per stage."""
    n = sum(depths)
    flat = [rate * i / (n - 1) if n > 1 else 0.0 for i in range(n)]
    out, start = [], 0
    for d in depths:
        out.append(flat[start : start + d])
        start += d
    return out
