"""The paper's numbers (Xia et al., CVPR 2022: Fig. 5, Tables 4 and 5) as data, by knobs.

All are ImageNet-1K top-1 (%) of DAT-T variants trained 300 epochs at 224 px: they sit beside
our numbers in tables and plots, labelled as the paper's, and are never mixed into our
statistics. A paper row is matched by the knobs in effect in a run's config
(:mod:`dat_lab.results.knobs`), not by variant names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SETTING = "ImageNet-1K, DAT-T, 224 px, 300 epochs"
SOURCE = "Xia et al., CVPR 2022 (Fig. 5, Tables 4 and 5)"
# DAT's own setting, the paper's reference row in every ablation: D in stages 3-4 after S
# blocks in stages 1-2, s = 2, r = 1, learned bounded offsets, relative position bias.
DAT_DEFAULT: dict[str, Any] = {
    "d_stages": "3-4",
    "attn12": "S",
    "s": 2.0,
    "r": 1,
    "offsets": True,
    "pos_enc": "relative",
    "offset_mode": "bounded",
}
# Table 5's row order: deformable attention in stages 1-4, 2-4, 3-4, 4, none.
STAGE_ORDER = ("1-4", "2-4", "3-4", "4", "none")


@dataclass(frozen=True)
class PaperRow:
    """One published result: top-1 (%), and FLOPs (G) / params (M) where the paper gives them."""

    top1: float
    gflops: float | None = None
    mparams: float | None = None
    note: str = ""


# Maximum offset s (read off the paper's plot, +-0.01).
OFFSET_RANGE: dict[float, PaperRow] = {
    float(s): PaperRow(acc)
    for s, acc in {
        0: 81.70, 1: 81.89, 2: 82.04, 3: 81.94, 4: 81.90, 5: 81.99, 6: 81.96, 8: 82.07,
        9: 81.87, 10: 82.00, 11: 81.93, 12: 81.89, 14: 81.16, 16: 80.63,
    }.items()
}  # fmt: skip

# Which stages use D in place of their shifted-window block (Table 5).
STAGE_PLACEMENT: dict[str, PaperRow] = {
    "1-4": PaperRow(81.7),
    "2-4": PaperRow(81.9),
    "3-4": PaperRow(82.0, note="DAT"),
    "4": PaperRow(81.4),
    "none": PaperRow(81.3, note="Swin-T"),
}

# (Attn in stages 1-2, offsets, position encoding) -> (Table 4).
ATTENTION_ABLATION: dict[tuple[str, bool, str], PaperRow] = {
    ("S", False, "none"): PaperRow(81.4, 4.57, 28.29),
    ("S", False, "relative"): PaperRow(81.7, 4.57, 28.32),
    ("S", True, "none"): PaperRow(81.7, 4.58, 28.29),
    ("S", True, "fixed"): PaperRow(81.8, 4.58, 29.73),
    ("S", True, "dwconv"): PaperRow(81.8, 4.59, 28.31),
    ("P", True, "relative"): PaperRow(81.7, 4.48, 30.68),
    ("S", True, "relative"): PaperRow(82.0, 4.59, 28.32, note="DAT"),
}


def offset_range(knobs: dict[str, Any]) -> PaperRow | None:
    """The paper's top-1 at this run's s (DAT layout: D in stages 3-4, S in stages 1-2)."""
    s = knobs.get("s")
    if knobs.get("d_stages") != "3-4" or knobs.get("attn12") != "S" or not isinstance(s, float):
        return None
    if knobs.get("r") != 1 or knobs.get("offset_mode") != "bounded":
        return None
    return OFFSET_RANGE.get(s)


def stage_placement(knobs: dict[str, Any]) -> PaperRow | None:
    """The paper's top-1 for this run's D stages (other knobs at DAT's defaults)."""
    if knobs.get("d_stages") == "none":
        return STAGE_PLACEMENT["none"]
    if knobs.get("s") != 2.0 or knobs.get("r") != 1 or knobs.get("pos_enc") != "relative":
        return None
    if knobs.get("attn12") not in ("S", None):  # D_1234 replaces every S block
        return None
    return STAGE_PLACEMENT.get(str(knobs.get("d_stages")))


def attention_ablation(knobs: dict[str, Any]) -> PaperRow | None:
    """The paper's Table 4 row for (Attn S1-2, offsets, Pos. Embed), D in stages 3-4."""
    if knobs.get("d_stages") != "3-4" or knobs.get("r") != 1:
        return None
    if knobs.get("offsets") is True and knobs.get("s") != 2.0:
        return None
    key = (knobs.get("attn12"), knobs.get("offsets"), knobs.get("pos_enc"))
    return ATTENTION_ABLATION.get(key)  # type: ignore[arg-type]


def is_dat_default(knobs: dict[str, Any]) -> bool:
    """Whether a run's knobs are DAT's own setting (the baseline of the paper's ablations)."""
    return all(knobs.get(k) == v for k, v in DAT_DEFAULT.items())
