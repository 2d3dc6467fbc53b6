"""Blocks and a stage of blocks.

Every block may have DAT++'s extras, each off by default: a local perception unit before it
(``lpu``), LayerScale on its branches (``layer_scale``) and the ConvFFN (``mlp: dwconv``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from timm.models import checkpoint_seq
from torch import nn

from dat_lab.models.attention import build_attention
from dat_lab.models.config import DatConfig
from dat_lab.models.conv_layers import ConvDownsample, ConvMlp, LayerScale, LocalPerceptionUnit
from dat_lab.models.enums import MlpKind, Patchify
from dat_lab.models.layers import Downsample, DropPath, Mlp


def _maybe(enabled: bool, build: Callable[[], nn.Module]) -> nn.Module:
    # Built only when enabled: a module built and dropped would still draw from the RNG and
    # change the initialisation (and so the results) of every model without it.
    return build() if enabled else nn.Identity()


class DatBlock(nn.Module):
    """Pre-norm residual block: ``x + DropPath(Attn(LN(x)))``, then ``x + DropPath(MLP(LN(x)))``.

    With DAT++'s extras: ``x <- x + dwconv3x3(x)`` first (LPU), and each branch scaled by a
    learned per-channel LayerScale.

    Shapes: ``(B, H, W, dim) -> (B, H, W, dim)``.
    """

    def __init__(
        self,
        dim: int,
        attn: nn.Module,
        mlp: nn.Module,
        drop_path: float,
        layer_scale: float | None = None,
        lpu: bool = False,
    ) -> None:
        super().__init__()
        self.lpu = _maybe(lpu, lambda: LocalPerceptionUnit(dim))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attn
        self.ls1 = _maybe(layer_scale is not None, lambda: LayerScale(dim, layer_scale or 1.0))
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp
        self.ls2 = _maybe(layer_scale is not None, lambda: LayerScale(dim, layer_scale or 1.0))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lpu(x)
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


class DepthwiseConv(nn.Module):
    """The token mixer of X: a ``k x k`` depthwise conv (padding k // 2), channels-last."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, kernel, 1, kernel // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class ConvNeXtBlock(nn.Module):
    """X (the DAT++ code's ConvNeXt block): ``x + DropPath(MLP(LN(dwconv_kxk(x))))``.

    One residual branch, no pre-norm (``attn`` is the depthwise conv, named so for the FLOP
    rows). LayerScale, when set, scales the branch as in ConvNeXt; the LPU precedes it as it
    precedes every DAT++ block.
    """

    def __init__(
        self,
        dim: int,
        kernel: int,
        mlp: nn.Module,
        drop_path: float,
        layer_scale: float | None = None,
        lpu: bool = False,
    ) -> None:
        super().__init__()
        self.lpu = _maybe(lpu, lambda: LocalPerceptionUnit(dim))
        self.attn = DepthwiseConv(dim, kernel)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp
        self.ls2 = _maybe(layer_scale is not None, lambda: LayerScale(dim, layer_scale or 1.0))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lpu(x)
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(self.attn(x)))))


def build_mlp(kind: MlpKind, dim: int, hidden: int) -> nn.Module:
    return ConvMlp(dim, hidden) if kind == MlpKind.DWCONV else Mlp(dim, hidden)


class DatStage(nn.Module):
    """Optional downsampling (patch: 2x2 conv stride 2; conv: 3x3 conv stride 2; + LN), blocks.

    Args:
        cfg: the model config (stage knobs and the model-wide block extras).
        index: stage index (0-based; selects default offset kernels).
        drop_paths: stochastic-depth rate of each block.
    """

    def __init__(self, cfg: DatConfig, index: int, drop_paths: list[float]) -> None:
        super().__init__()
        stage = cfg.stages[index]
        size = cfg.feature_size(index) if cfg.img_size is not None else None
        self.grad_checkpointing = False
        self.letters = stage.letters
        if index == 0:
            self.downsample: nn.Module = nn.Identity()
        else:
            down = ConvDownsample if cfg.downsample == Patchify.CONV else Downsample
            self.downsample = down(cfg.stages[index - 1].dim, stage.dim)
        blocks: list[nn.Module] = []
        ls, lpu = cfg.layer_scale, cfg.lpu
        hidden = int(stage.dim * cfg.mlp_ratio)
        for i, letter in enumerate(self.letters):
            if letter == "X":
                mlp = build_mlp(cfg.mlp, stage.dim, hidden)
                blocks.append(ConvNeXtBlock(stage.dim, stage.window, mlp, drop_paths[i], ls, lpu))
                continue
            # The attention before its MLP: the order (and so the random initialisation) of
            # DAT's own blocks, kept so that a seed gives the same model as before DAT++.
            attn = build_attention(letter, stage, index, size, cfg.sampling)
            mlp = build_mlp(cfg.mlp, stage.dim, hidden)
            blocks.append(DatBlock(stage.dim, attn, mlp, drop_paths[i], ls, lpu))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            # One checkpoint per block (non-reentrant, RNG state preserved: drop path draws
            # the same mask when recomputed, so gradients equal the plain backward's).
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)
