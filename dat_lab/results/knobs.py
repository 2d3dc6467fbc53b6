"""The paper's ablation knobs of a stored run, read from its config as plain data.

A stored ``config.json`` keeps ``None`` for every knob left at its default. Tables need the
value in effect (s = 2, offsets on, relative position encoding, r = 1), so this module fills
the defaults in exactly as :meth:`dat_lab.models.config.StageConfig.deformable` does (a test
checks the two agree). It works on plain data so that ``dat-lab report`` never imports torch.

Knobs, one value per run (``None`` where the model has no such block):

- ``d_stages``: the stages (1-based) that hold a D block, e.g. ``"3-4"``, ``"1,3"``, ``"none"``;
- ``attn12``: the non-local letters of stages 1-2 other than D (``"S"``, ``"P"``, ``"G"``), the
  paper's "Attn (S1-2)" column;
- ``s``, ``r``, ``offsets``, ``pos_enc``, ``offset_mode``: the D blocks' maximum offset,
  reduction, offsets on/off, position encoding and offset mode; when the D stages disagree the
  values are joined with ``/`` in stage order (``"2/4"``);
- DAT++'s model-level changes: ``patches`` (stem and downsampling, ``"conv"``, ``"patch"`` or
  ``"conv/patch"`` when they differ), ``mlp`` (``"plain"``, ``"dwconv"``), ``lpu`` and
  ``layer_scale`` (None: off).
"""

from __future__ import annotations

import math
from typing import Any

KNOBS = ("d_stages", "attn12", "s", "r", "offsets", "pos_enc", "offset_mode", "patches", "mlp",
         "lpu", "layer_scale")  # fmt: skip

# Display names of the knobs in tables and plots.
KNOB_LABELS = {
    "d_stages": "D stages",
    "attn12": "Attn (S1-2)",
    "s": "s",
    "r": "r",
    "offsets": "Offsets",
    "pos_enc": "Pos. Embed",
    "offset_mode": "offset mode",
    "patches": "Stem/down",
    "mlp": "MLP",
    "lpu": "LPU",
    "layer_scale": "LayerScale",
}


def _deformable(stage: dict[str, Any]) -> dict[str, Any]:
    """The D knobs of one stage with the defaults of ``StageConfig.deformable`` filled in."""
    offsets = True if stage.get("offsets") is None else bool(stage["offsets"])
    mode = stage.get("offset_mode") or "bounded"
    if not offsets or mode == "clamped":
        s = None  # no offset network, or unbounded offsets: s means nothing
    else:
        s = 2.0 if stage.get("offset_range") is None else float(stage["offset_range"])
    return {
        "s": s,
        "r": int(stage.get("reduction") or 1),
        "offsets": offsets,
        "pos_enc": stage.get("pos_enc") or "relative",
        "offset_mode": mode if offsets else None,
    }


def _join(values: list[Any]) -> Any:
    """One value if all agree, else the values joined with '/' (None when there are none)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(v == present[0] for v in present):
        return present[0]
    return "/".join(_short(v) for v in present)


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def stage_span(stages: list[int]) -> str:
    """``[3, 4]`` -> ``"3-4"``, ``[1, 3]`` -> ``"1,3"``, ``[]`` -> ``"none"``."""
    if not stages:
        return "none"
    if len(stages) > 1 and stages == list(range(stages[0], stages[-1] + 1)):
        return f"{stages[0]}-{stages[-1]}"
    return ",".join(str(s) for s in stages)


def run_knobs(config: dict[str, Any]) -> dict[str, Any]:
    """The knobs of one run's plain config (see the module docstring)."""
    stages = (config.get("model") or {}).get("stages") or []
    d_specs = [_deformable(st) for st in stages if "D" in str(st.get("attn", ""))]
    d_stages = [i + 1 for i, st in enumerate(stages) if "D" in str(st.get("attn", ""))]
    early = "".join(str(st.get("attn", "")) for st in stages[:2])
    attn12 = "".join(sorted(set(early) - {"L", "D"}))
    knobs = {"d_stages": stage_span(d_stages), "attn12": attn12 or None}
    for key in ("s", "r", "offsets", "pos_enc", "offset_mode"):
        knobs[key] = _join([spec[key] for spec in d_specs])
    return knobs | _dat_pp_knobs(config.get("model") or {})


def _dat_pp_knobs(model: dict[str, Any]) -> dict[str, Any]:
    """DAT++'s model-level knobs with DAT's defaults filled in (a stored config omits them
    at their defaults)."""
    stem, down = model.get("stem") or "patch", model.get("downsample") or "patch"
    return {
        "patches": stem if stem == down else f"{stem}/{down}",
        "mlp": model.get("mlp") or "plain",
        "lpu": bool(model.get("lpu")),
        "layer_scale": model.get("layer_scale"),
    }


def _missing(value: Any) -> bool:
    """None, NaN or pandas' NA (what a frame makes of a None in a column of strings)."""
    if value is None or type(value).__name__ == "NAType":
        return True
    return isinstance(value, float) and math.isnan(value)


def knobs_of_row(row: Any) -> dict[str, Any]:
    """The ``knob.*`` entries of a frame row as plain values (pandas' NaN/NA back to None)."""
    out = {}
    for key in KNOBS:
        value = row.get(f"knob.{key}") if hasattr(row, "get") else None
        out[key] = None if _missing(value) else value
    return out
