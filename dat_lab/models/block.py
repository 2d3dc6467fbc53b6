"""A transformer block and a stage of blocks."""

from __future__ import annotations

import torch
from timm.models import checkpoint_seq
from torch import nn

from dat_lab.models.attention import build_attention
from dat_lab.models.config import Sampling, StageConfig
from dat_lab.models.layers import Downsample, DropPath, Mlp


class DatBlock(nn.Module):
    """Pre-norm residual block: ``x + DropPath(Attn(LN(x)))``, then ``x + DropPath(MLP(LN(x)))``.

    Shapes: ``(B, H, W, dim) -> (B, H, W, dim)``.
    """

    def __init__(self, dim: int, attn: nn.Module, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class DatStage(nn.Module):
    """Optional downsampling (2x2 conv, stride 2, + LN), then ``depth`` blocks.

    Args:
        stage: the stage config (letters, width, heads, knobs).
        index: stage index (0-based; selects default offset kernels).
        dim_in: channels coming in (None: no downsampling, the first stage after the stem).
        size: feature map at the model's img_size (None when the size is not fixed).
        mlp_ratio, drop_paths, sampling: as in :class:`DatConfig`.
    """

    def __init__(
        self,
        stage: StageConfig,
        index: int,
        dim_in: int | None,
        size: tuple[int, int] | None,
        mlp_ratio: float,
        drop_paths: list[float],
        sampling: Sampling,
    ) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.letters = stage.letters
        self.downsample = Downsample(dim_in, stage.dim) if dim_in is not None else nn.Identity()
        self.blocks = nn.Sequential(
            *[
                DatBlock(
                    stage.dim,
                    build_attention(letter, stage, index, size, sampling),
                    mlp_ratio,
                    drop_paths[i],
                )
                for i, letter in enumerate(self.letters)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            # One checkpoint per block (non-reentrant, RNG state preserved: drop path draws
            # the same mask when recomputed, so gradients equal the plain backward's).
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)
