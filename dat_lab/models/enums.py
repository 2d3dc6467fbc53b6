"""The closed choices of the model config: attention letters and the knobs' allowed values.

Kept apart from :mod:`dat_lab.models.config` (which validates how they combine) so that the
layers can import the choices without the schema.
"""

from __future__ import annotations

import enum


class Attn(enum.StrEnum):
    """Attention letters of a stage spec, one per block (docs/design.md §2)."""

    LOCAL = "L"  # Swin W-MSA
    SHIFTED = "S"  # Swin SW-MSA
    DEFORMABLE = "D"  # DAT
    SPATIAL_REDUCTION = "P"  # PVT SRA
    GLOBAL = "G"  # full MHSA
    NEIGHBORHOOD = "N"  # NAT: each query attends to its k x k neighbourhood (DAT++)
    CONVNEXT = "X"  # ConvNeXt-style block: depthwise conv, norm, MLP (DAT++ code's X)


class PosEnc(enum.StrEnum):
    """Position encoding of a deformable block ("Pos. Embed" in the paper's ablation)."""

    NONE = "none"
    FIXED = "fixed"  # learned bias heads x HW x Ns, tied to one input size
    DWCONV = "dwconv"  # 3x3 depthwise conv of q added to the output (LePE-like)
    RELATIVE = "relative"  # (2H-1)x(2W-1) table read by bilinear interpolation
    LOG_CPB = "log_cpb"  # DAT++: an MLP of log-spaced displacements (Swin-V2's log-CPB)


class OffsetMode(enum.StrEnum):
    """How offsets are bounded."""

    BOUNDED = "bounded"  # DAT: dp <- s * tanh(dp) / (Hk, Wk)
    CLAMPED = "clamped"  # DAT++: dp unbounded, p + dp clamped to [-1, 1]


class Sampling(enum.StrEnum):
    """Coordinate convention of the deformable block.

    ``consistent`` (default): reference points at key-cell centres and ``grid_sample`` with
    ``align_corners=False``, so a zero offset at r = 1 lands exactly on a pixel, and one
    relative-table entry is one pixel of displacement.
    ``official``: the official DAT code's convention (cell-centre references but
    ``align_corners=True``; relative displacement halved), to reproduce official DAT weights.
    ``official_pp``: the official DAT++ code's convention, to reproduce official DAT++
    weights: as ``official``, but reference points ``(i + 0.5) / (Hk - 1)`` and query points
    ``i / (H - 1)`` (both mapped to [-1, 1]; the last reference points fall outside and are
    clamped), and bounded offsets scaled by ``1 / (Hk - 1)``. (With offsets off, the DAT++
    code average-pools r x r cells for keys and drops the position term; dat-lab keeps its own
    no-offset block, keys at the reference points.)
    """

    CONSISTENT = "consistent"
    OFFICIAL = "official"
    OFFICIAL_PP = "official_pp"

    @property
    def align_corners(self) -> bool:
        """Both official conventions sample with ``align_corners=True``."""
        return self != Sampling.CONSISTENT


class Patchify(enum.StrEnum):
    """Stem and downsampling between stages."""

    PATCH = "patch"  # DAT: non-overlapping p x p conv (stem), 2x2 stride-2 conv (downsampling)
    CONV = "conv"  # DAT++: overlapping 3x3 convs (stem: two, with LN+GELU; downsampling: one)


class MlpKind(enum.StrEnum):
    """The feed-forward layer of a block."""

    PLAIN = "plain"  # Linear, GELU, Linear
    DWCONV = "dwconv"  # DAT++ ConvFFN: Linear, + depthwise 3x3 (residual), GELU, Linear
