"""The one model schema: :class:`DatConfig` and its :class:`StageConfig` s.

A stage is a width, a depth, a head count, a window and a string of attention letters (one per
block, repeated to the depth: ``"LD"`` with depth 6 is ``LDLDLD``). Knobs of the deformable
block (D) and of the spatial-reduction block (P) live on the stage; setting one on a stage
that has no such block is an error, so nothing is accepted and ignored. A ``None`` knob takes
the documented default (see :meth:`StageConfig.deformable`).

Every impossible combination is refused when the config is built, with a
:class:`~dat_lab.schema.ConfigError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from dat_lab.models.enums import Attn, MlpKind, OffsetMode, Patchify, PosEnc, Sampling
from dat_lab.schema import (
    IDENTITY_IF_SET,
    ConfigError,
    check,
    config_hash,
    from_mapping,
    to_mapping,
)

LETTERS = "".join(a.value for a in Attn)
# Official DAT uses depthwise kernels 9, 7, 5, 3 in stages 1-4; we keep them as the default.
DEFAULT_NAT_KERNEL = 7  # DAT++'s nat_ksizes
DEFAULT_OFFSET_KERNEL = (9, 7, 5, 3)
D_KNOBS = (
    "offsets",
    "offset_range",
    "offset_mode",
    "reduction",
    "offset_groups",
    "offset_kernel",
    "pos_enc",
)


@dataclass(frozen=True)
class DeformableSpec:
    """The resolved knobs of every D block of one stage (no ``None`` left)."""

    offsets: bool
    offset_range: float
    offset_mode: OffsetMode
    reduction: int
    offset_groups: int
    offset_kernel: int
    pos_enc: PosEnc


@dataclass(frozen=True)
class StageConfig:
    """One stage of the hierarchy.

    Args:
        dim: channel width of the stage (free: not forced to double).
        depth: number of blocks (attention + MLP pairs).
        heads: attention heads (``dim % heads == 0``).
        attn: attention letters, repeated to ``depth`` (``len(attn)`` must divide ``depth``).
        window: window size of L and S blocks; the depthwise kernel of X blocks (odd).
        shift: shift of S blocks; ``None`` = ceil(window / 2) as in the official DAT code.
        offsets: D: learn offsets (False = keys at the reference points, no offset network).
        offset_range: D: maximum offset s in key-grid cells x 2 (s = 2 moves one cell); >= 0.
        offset_mode: D: ``bounded`` (s * tanh) or ``clamped`` (DAT++).
        reduction: D: r, key grid of about H/r x W/r.
        offset_groups: D: offset groups G (``heads % G == 0``); ``None`` = max(1, heads // 4).
        offset_kernel: D: depthwise kernel k of the offset network (odd); ``None`` = 9/7/5/3
            by stage index as the official code.
        pos_enc: D: position encoding, ``None`` = relative.
        sr_ratio: P: spatial-reduction stride; ``None`` = 1.
        nat_kernel: N: neighbourhood size k (odd); ``None`` = 7 as DAT++.
    """

    dim: int
    depth: int
    heads: int
    attn: str = "LS"
    window: int = 7
    shift: int | None = None
    offsets: bool | None = None
    offset_range: float | None = None
    offset_mode: OffsetMode | None = None
    reduction: int | None = None
    offset_groups: int | None = None
    offset_kernel: int | None = None
    pos_enc: PosEnc | None = None
    sr_ratio: int | None = None
    nat_kernel: int | None = field(default=None, metadata={IDENTITY_IF_SET: True})

    def __post_init__(self) -> None:
        check(self.dim > 0, "dim", f"must be > 0, got {self.dim}")
        check(self.depth > 0, "depth", f"must be > 0, got {self.depth}")
        check(self.heads > 0, "heads", f"must be > 0, got {self.heads}")
        check(
            self.dim % self.heads == 0,
            "heads",
            f"dim {self.dim} is not divisible by heads {self.heads}",
        )
        check(len(self.attn) > 0, "attn", "needs at least one letter")
        for c in self.attn:
            check(
                c in LETTERS, "attn", f"unknown letter {c!r} in {self.attn!r}; allowed: {LETTERS}"
            )
        check(
            self.depth % len(self.attn) == 0,
            "attn",
            f"{len(self.attn)} letters {self.attn!r} do not tile depth {self.depth}",
        )
        check(self.window > 0, "window", f"must be > 0, got {self.window}")
        self._check_shift()
        self._check_knob_owners()
        self._check_deformable_values()
        if self.sr_ratio is not None:
            check(self.sr_ratio >= 1, "sr_ratio", f"must be >= 1, got {self.sr_ratio}")
        self._check_dat_pp_letters()

    def _check_dat_pp_letters(self) -> None:
        if self.nat_kernel is not None:
            check(
                "N" in self.attn,
                "nat_kernel",
                f"is a neighborhood (N) knob but stage has no N block (attn={self.attn!r})",
            )
            k = self.nat_kernel
            check(k >= 1 and k % 2 == 1, "nat_kernel", f"must be an odd integer >= 1, got {k}")
        if "X" in self.attn:
            check(
                self.window % 2 == 1,
                "window",
                f"is the depthwise kernel of X blocks and must be odd, got {self.window}",
            )

    def _check_shift(self) -> None:
        if self.shift is None:
            return
        check("S" in self.attn, "shift", f"is set but stage has no S block (attn={self.attn!r})")
        check(
            0 < self.shift < self.window,
            "shift",
            f"must be in 1..{self.window - 1} (window {self.window}), got {self.shift}",
        )

    def _check_knob_owners(self) -> None:
        for knob in D_KNOBS:
            if getattr(self, knob) is not None:
                check(
                    "D" in self.attn,
                    knob,
                    f"is a deformable (D) knob but stage has no D block (attn={self.attn!r})",
                )
        if self.sr_ratio is not None:
            check(
                "P" in self.attn,
                "sr_ratio",
                f"is a spatial-reduction (P) knob but stage has no P block (attn={self.attn!r})",
            )

    def _check_deformable_values(self) -> None:
        if self.offset_range is not None:
            check(
                self.offset_range >= 0 and math.isfinite(self.offset_range),
                "offset_range",
                f"maximum offset s must be a finite number >= 0, got {self.offset_range}",
            )
        if self.reduction is not None:
            check(self.reduction >= 1, "reduction", f"r must be >= 1, got {self.reduction}")
        if self.offset_groups is not None:
            check(
                self.offset_groups >= 1, "offset_groups", f"must be >= 1, got {self.offset_groups}"
            )
            check(
                self.heads % self.offset_groups == 0,
                "offset_groups",
                f"heads {self.heads} are not divisible by offset_groups {self.offset_groups}",
            )
        if self.offset_kernel is not None:
            k = self.offset_kernel
            check(k >= 1 and k % 2 == 1, "offset_kernel", f"must be an odd integer >= 1, got {k}")
        if self.offsets is False:
            for knob in ("offset_range", "offset_mode", "offset_groups", "offset_kernel"):
                check(
                    getattr(self, knob) is None,
                    knob,
                    "has no effect with offsets: false (there is no offset network)",
                )
        if self.offset_mode == OffsetMode.CLAMPED:
            check(
                self.offset_range is None,
                "offset_range",
                "has no effect with offset_mode: clamped (offsets are unbounded)",
            )

    @property
    def letters(self) -> str:
        """One attention letter per block."""
        return self.attn * (self.depth // len(self.attn))

    def deformable(self, stage_index: int) -> DeformableSpec:
        """The D knobs with defaults filled in (valid only for a stage with a D block)."""
        return DeformableSpec(
            offsets=True if self.offsets is None else self.offsets,
            offset_range=2.0 if self.offset_range is None else self.offset_range,
            offset_mode=self.offset_mode or OffsetMode.BOUNDED,
            reduction=self.reduction or 1,
            offset_groups=self.offset_groups or max(1, self.heads // 4),
            offset_kernel=self.offset_kernel or DEFAULT_OFFSET_KERNEL[min(stage_index, 3)],
            pos_enc=self.pos_enc or PosEnc.RELATIVE,
        )

    def canonical(self, stage_index: int) -> StageConfig:
        """This stage with every default that applies written out (``None`` only where unused).

        Two stages that build the same modules have the same canonical form, so a preset's
        default ``offset_range`` and an explicit ``offset_range: 2`` hash alike (same run id).
        """
        changes: dict[str, Any] = {}
        if "S" in self.attn:
            changes["shift"] = self.shift_size
        if "P" in self.attn:
            changes["sr_ratio"] = self.sr_ratio or 1
        if "N" in self.attn:
            changes["nat_kernel"] = self.neighborhood
        if "D" in self.attn:
            spec = self.deformable(stage_index)
            changes.update(offsets=spec.offsets, reduction=spec.reduction, pos_enc=spec.pos_enc)
            if spec.offsets:
                changes.update(
                    offset_mode=spec.offset_mode,
                    offset_groups=spec.offset_groups,
                    offset_kernel=spec.offset_kernel,
                )
                if spec.offset_mode == OffsetMode.BOUNDED:
                    changes["offset_range"] = spec.offset_range
        return dataclasses.replace(self, **changes)

    @property
    def neighborhood(self) -> int:
        """Kernel k of N blocks (DAT++: 7)."""
        return self.nat_kernel or DEFAULT_NAT_KERNEL

    @property
    def shift_size(self) -> int:
        """Shift of S blocks (official DAT: ceil(window / 2))."""
        return self.shift if self.shift is not None else math.ceil(self.window / 2)


@dataclass(frozen=True)
class DatConfig:
    """A whole DAT backbone.

    Args:
        stages: the stages, in order (1 to 4 or more; each halves the resolution after the
            first).
        img_size: (H, W) the model is built for: sizes the deformable relative table and the
            fixed position bias. Other sizes still run (tables are resampled), except with
            fixed PE. ``None`` = no fixed size (then no D block may use fixed or relative PE).
        in_chans: input channels.
        num_classes: classifier outputs (0 = no head, features only).
        patch_size: stem stride (4 in the paper; 2 suits 32 px images).
        mlp_ratio: MLP hidden width / dim.
        drop_path: stochastic depth rate, rising linearly over all blocks.
        sampling: coordinate convention of D blocks (``consistent``, ``official`` or
            ``official_pp``).
        stem: ``patch`` (p x p conv, stride p) or ``conv`` (DAT++: 3x3 conv stride 2 to
            dim/2, LN, GELU, 3x3 conv stride p/2 to dim, LN; p must be even).
        downsample: ``patch`` (2x2 conv, stride 2) or ``conv`` (DAT++: 3x3 conv, stride 2,
            padding 1) between stages.
        mlp: ``plain`` or ``dwconv`` (DAT++'s ConvFFN: a residual depthwise 3x3 conv on the
            hidden layer, before GELU).
        layer_scale: initial LayerScale of the attention and MLP branches (``null``: none).
        lpu: a local perception unit (residual depthwise 3x3 conv) before every block.
    """

    stages: tuple[StageConfig, ...]
    img_size: tuple[int, int] | None = (224, 224)
    in_chans: int = 3
    num_classes: int = 1000
    patch_size: int = 4
    mlp_ratio: float = 4.0
    drop_path: float = 0.0
    sampling: Sampling = Sampling.CONSISTENT
    # DAT++'s knobs: at their defaults (DAT's) they leave the hash, so DAT configs keep theirs.
    stem: Patchify = field(default=Patchify.PATCH, metadata={IDENTITY_IF_SET: True})
    downsample: Patchify = field(default=Patchify.PATCH, metadata={IDENTITY_IF_SET: True})
    mlp: MlpKind = field(default=MlpKind.PLAIN, metadata={IDENTITY_IF_SET: True})
    layer_scale: float | None = field(default=None, metadata={IDENTITY_IF_SET: True})
    lpu: bool = field(default=False, metadata={IDENTITY_IF_SET: True})

    def __post_init__(self) -> None:
        check(len(self.stages) >= 1, "stages", "needs at least one stage")
        if self.img_size is not None:
            check(
                all(s > 0 for s in self.img_size), "img_size", f"must be > 0, got {self.img_size}"
            )
        check(self.in_chans > 0, "in_chans", f"must be > 0, got {self.in_chans}")
        check(self.num_classes >= 0, "num_classes", f"must be >= 0, got {self.num_classes}")
        check(self.patch_size >= 1, "patch_size", f"must be >= 1, got {self.patch_size}")
        check(self.mlp_ratio > 0, "mlp_ratio", f"must be > 0, got {self.mlp_ratio}")
        check(0.0 <= self.drop_path < 1.0, "drop_path", f"must be in [0, 1), got {self.drop_path}")
        if self.layer_scale is not None:
            check(
                self.layer_scale > 0 and math.isfinite(self.layer_scale),
                "layer_scale",
                f"must be a finite number > 0 or null (no LayerScale), got {self.layer_scale}",
            )
        if self.stem == Patchify.CONV:
            check(
                self.patch_size % 2 == 0,
                "patch_size",
                f"stem: conv makes the stride from two convs (2, then patch_size / 2); "
                f"patch_size must be even, got {self.patch_size}",
            )
        self._check_maps_not_empty()
        for i, stage in enumerate(self.stages):
            try:
                self._check_stage_fits(i, stage)
            except ConfigError as err:
                raise err.located(prefix=f"stages.{i}") from None

    def _check_maps_not_empty(self) -> None:
        """The input must leave at least one pixel in the last stage: its size over the
        stem's stride (patch_size) and one halving per later stage."""
        if self.img_size is None:
            return
        last = len(self.stages) - 1
        h, w = self.feature_size(last)
        stride = self.patch_size * 2**last
        check(
            h >= 1 and w >= 1,
            "img_size",
            f"{self.img_size[0]}x{self.img_size[1]} leaves the feature map empty at stage "
            f"{last} (patch_size {self.patch_size} x 2^{last} = stride {stride}); "
            f"use an img_size of at least {stride} or a smaller patch_size",
        )

    def _check_stage_fits(self, index: int, stage: StageConfig) -> None:
        if self.img_size is None:
            if "D" in stage.attn:
                pe = stage.deformable(index).pos_enc
                check(
                    pe not in (PosEnc.FIXED, PosEnc.RELATIVE),
                    "pos_enc",
                    f"{pe.value!r} needs a fixed input size but img_size is null; "
                    "set img_size or use pos_enc none|dwconv",
                )
            return
        h, w = self.feature_size(index)
        if "D" in stage.attn:
            spec = stage.deformable(index)
            check(
                spec.reduction <= min(h, w),
                "reduction",
                f"r={spec.reduction} is larger than the {h}x{w} feature map "
                f"(img_size {self.img_size[0]}x{self.img_size[1]}); allowed: 1..{min(h, w)}",
            )
        if "P" in stage.attn:
            sr = stage.sr_ratio or 1
            check(
                sr <= min(h, w),
                "sr_ratio",
                f"{sr} is larger than the {h}x{w} feature map; allowed: 1..{min(h, w)}",
            )

    def feature_size(
        self, stage_index: int, img_size: tuple[int, int] | None = None
    ) -> tuple[int, int]:
        """Feature-map (H, W) of a stage at ``img_size`` (stem, then /2 per stage).

        Patch convs floor (an odd side loses its last row); the padded 3x3 convs of the conv
        stem/downsampling round up.
        """
        size = img_size or self.img_size
        if size is None:
            raise ValueError("img_size is not fixed in this config; pass one")
        h, w = size
        if self.stem == Patchify.CONV:
            for s in (2, self.patch_size // 2):
                h, w = (h - 1) // s + 1, (w - 1) // s + 1
        else:
            h, w = h // self.patch_size, w // self.patch_size
        for _ in range(stage_index):
            if self.downsample == Patchify.CONV:
                h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
            else:
                h, w = h // 2, w // 2
        return h, w

    @property
    def depth(self) -> int:
        return sum(s.depth for s in self.stages)

    def replace(self, **changes: Any) -> DatConfig:
        """A copy with fields changed (validated again; unknown fields raise TypeError)."""
        return dataclasses.replace(self, **changes)

    def with_stage(self, index: int, **changes: Any) -> DatConfig:
        """A copy with one stage's fields changed."""
        stages = list(self.stages)
        stages[index] = dataclasses.replace(stages[index], **changes)
        return self.replace(stages=tuple(stages))

    def to_dict(self) -> dict[str, Any]:
        return to_mapping(self)

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], file: str | None = None, prefix: str = ""
    ) -> DatConfig:
        return from_mapping(cls, data, prefix=prefix, file=file)

    def canonical(self) -> DatConfig:
        """This config with every applicable default written out (``StageConfig.canonical``)."""
        return self.replace(stages=tuple(s.canonical(i) for i, s in enumerate(self.stages)))

    @property
    def hash(self) -> str:
        """Hash of the canonical form: configs that build the same model hash alike."""
        return config_hash(self.canonical())


# Re-exported for callers that build configs in Python.
__all__ = [
    "Attn",
    "DatConfig",
    "DeformableSpec",
    "MlpKind",
    "OffsetMode",
    "Patchify",
    "PosEnc",
    "Sampling",
    "StageConfig",
]
