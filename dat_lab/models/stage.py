"""One stage of the model schema: :class:`StageConfig` and the resolved :class:`DeformableSpec`.

A stage is a width, a depth, a head count, a window and a string of attention letters (one per
block, repeated to the depth). Knobs of the deformable (D), spatial-reduction (P) and
neighbourhood (N) blocks live on the stage; setting one on a stage that has no such block is a
:class:`~dat_lab.schema.ConfigError`. :mod:`dat_lab.models.config` composes stages into a
:class:`~dat_lab.models.config.DatConfig` and checks them against the input size.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from dat_lab.models.enums import Attn, OffsetMode, PosEnc
from dat_lab.schema import added_field, check

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
    nat_kernel: int | None = added_field(None)

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
