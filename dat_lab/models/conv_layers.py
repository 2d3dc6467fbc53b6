"""DAT++'s convolutional parts: conv stem, conv downsampling, ConvFFN, LPU (and LayerScale).

Feature maps travel channels-last ``(B, H, W, C)`` between blocks (see
:mod:`dat_lab.models.layers`); each conv permutes locally. Module and parameter names follow
what the official DAT++ code's checkpoint needs, through :mod:`dat_lab.models.official`.
"""

from __future__ import annotations

import torch
from timm.layers import LayerScale
from torch import nn

__all__ = ["ConvStem", "ConvDownsample", "ConvMlp", "LayerScale", "LocalPerceptionUnit"]


def _cf(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _cl(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


class ConvStem(nn.Module):
    """DAT++ stem: 3x3 conv (stride 2) to dim/2, LN, GELU, 3x3 conv (stride p/2) to dim, LN.

    Overlapping patches (``use_conv_patches``). With ``patch_size`` 4 both strides are 2, as
    in the official code.

    Shapes: ``(B, in_chans, H, W) -> (B, ceil(H / p), ceil(W / p), dim)`` (for even p).
    """

    def __init__(self, in_chans: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, dim // 2, 3, 2, 1)
        self.norm1 = nn.LayerNorm(dim // 2)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(dim // 2, dim, 3, patch_size // 2, 1)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(_cl(self.conv1(x))))
        return self.norm2(_cl(self.conv2(_cf(x))))


class ConvDownsample(nn.Module):
    """DAT++ downsampling: 3x3 conv, stride 2, padding 1 (no bias), then LayerNorm.

    Shapes: ``(B, H, W, C_in) -> (B, ceil(H / 2), ceil(W / 2), C_out)``.
    """

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim_in, dim_out, kernel_size=3, stride=2, padding=1, bias=False)
        self.norm = nn.LayerNorm(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_cl(self.proj(_cf(x))))


class ConvMlp(nn.Module):
    """DAT++ ConvFFN (``TransformerMLPWithConv``): ``fc2(GELU(h + dwconv3x3(h)))``, ``h = fc1(x)``.

    The depthwise conv acts on the hidden layer and is added to it (a residual), before GELU.

    Shapes: ``(B, H, W, dim) -> (B, H, W, dim)``.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        h = h + _cl(self.dwconv(_cf(h)))
        return self.fc2(self.act(h))


class LocalPerceptionUnit(nn.Module):
    """LPU (CMT; DAT++ ``use_lpus``): ``x + dwconv3x3(x)``, before every block.

    Shapes: ``(B, H, W, dim) -> (B, H, W, dim)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + _cl(self.conv(_cf(x)))
