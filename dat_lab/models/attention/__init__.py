"""The attention modules, and :func:`build_attention` (one module per stage-spec letter)."""

from __future__ import annotations

from timm.layers import register_notrace_module
from torch import nn

from dat_lab.models.attention.deformable import DeformableAttention, DeformableMaps
from dat_lab.models.attention.global_ import GlobalAttention
from dat_lab.models.attention.neighborhood import NeighborhoodAttention
from dat_lab.models.attention.shifted_window import ShiftedWindowAttention
from dat_lab.models.attention.spatial_reduction import SpatialReductionAttention
from dat_lab.models.attention.window import WindowAttention
from dat_lab.models.enums import Attn, Sampling
from dat_lab.models.stage import StageConfig

# FX tracing (timm's feature extraction, torchvision's create_feature_extractor) keeps each
# attention module whole: their padding, windowing and key grids depend on the input shape.
for _cls in (
    WindowAttention,
    ShiftedWindowAttention,
    DeformableAttention,
    SpatialReductionAttention,
    GlobalAttention,
    NeighborhoodAttention,
):  # X is a block of its own (dat_lab.models.block.ConvNeXtBlock), not an attention
    register_notrace_module(_cls)


def build_attention(
    letter: str,
    stage: StageConfig,
    stage_index: int,
    size: tuple[int, int] | None,
    sampling: Sampling,
) -> nn.Module:
    """The attention module for one block of ``stage`` (``size``: its feature map, if fixed)."""
    attn = Attn(letter)
    if attn == Attn.LOCAL:
        return WindowAttention(stage.dim, stage.heads, stage.window)
    if attn == Attn.SHIFTED:
        return ShiftedWindowAttention(stage.dim, stage.heads, stage.window, stage.shift_size)
    if attn == Attn.DEFORMABLE:
        spec = stage.deformable(stage_index)
        return DeformableAttention(stage.dim, stage.heads, spec, size, sampling)
    if attn == Attn.SPATIAL_REDUCTION:
        return SpatialReductionAttention(stage.dim, stage.heads, stage.sr_ratio or 1)
    if attn == Attn.NEIGHBORHOOD:
        return NeighborhoodAttention(stage.dim, stage.heads, stage.neighborhood)
    if attn == Attn.GLOBAL:
        return GlobalAttention(stage.dim, stage.heads)
    raise ValueError(f"letter {letter!r} is not an attention (X builds its own block)")


__all__ = [
    "DeformableAttention",
    "DeformableMaps",
    "GlobalAttention",
    "NeighborhoodAttention",
    "ShiftedWindowAttention",
    "SpatialReductionAttention",
    "WindowAttention",
    "build_attention",
]
