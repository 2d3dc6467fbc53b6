"""The one model schema: :class:`DatConfig`, a whole backbone of :class:`StageConfig` s.

The stages and their knobs are :mod:`dat_lab.models.stage`; this module adds the stem, the
downsampling, the MLP and the input size, and checks each stage against the feature map it
gets. Every impossible combination is refused when the config is built, with a
:class:`~dat_lab.schema.ConfigError` naming the key, the value and what is allowed. The stage
types and the enums are re-exported here for callers that build configs in Python.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from dat_lab.models.enums import MlpKind, Patchify, PosEnc, Sampling
from dat_lab.models.stage import StageConfig
from dat_lab.schema import (
    ConfigError,
    added_field,
    check,
    config_hash,
    from_mapping,
    to_mapping,
)


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
    stem: Patchify = added_field(Patchify.PATCH)
    downsample: Patchify = added_field(Patchify.PATCH)
    mlp: MlpKind = added_field(MlpKind.PLAIN)
    layer_scale: float | None = added_field(None)
    lpu: bool = added_field(False)

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


__all__ = ["DatConfig"]
