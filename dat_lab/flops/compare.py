"""fvcore counts against the analytic formulas, module by module: ``fvcore = formula + residue``.

:func:`expected_rows` derives, from a config and an input size alone, one row per module
(stem, each downsampling, each block's attention and MLP, the head) holding the published
formula and the itemised residue. :func:`compare_counts` puts fvcore's per-module counts
beside them; every row's ``difference`` must be exactly 0 (integers, no tolerance).

The split (see ``docs/flops.md``):

- attention rows hold the block's pre-norm (``norm1``) with the attention module; formula:
  DAT's ``Omega(DA)`` for D (with the offset-network term only when there is an offset
  network), Swin's for L/S, ViT's for G, the same accounting for P; residue: the pre-norm, the
  offset network's LayerNorm, bilinear sampling of keys, the relative-position lookup, table
  resampling, the DWConv position encoding, window padding, P's reduction LayerNorm;
- MLP rows hold ``norm2`` with the MLP: formula ``2 n C hidden``, residue the pre-norm;
- stem / downsampling: formula the conv, residue its LayerNorm;
- head: formula the classifier, residue the final LayerNorm and the average pool (timm's
  ``SelectAdaptivePool2d``, the model's ``global_pool`` module).

Pointwise ops (softmax, GELU, bias and mask additions, residual additions, tanh, the scale)
count 0 in the convention (:data:`dat_lab.flops.handles.ZERO_COST_OPS`), so they are not rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dat_lab.flops import analytic as A
from dat_lab.models.config import DatConfig
from dat_lab.models.enums import Attn, MlpKind, Patchify, PosEnc
from dat_lab.models.stage import StageConfig

# Residue item names (stable keys: they appear in tables, JSON and tests).
PRE_NORM = "pre-norm LayerNorm"
NORM = "LayerNorm"
OFFSET_NORM = "offset-network LayerNorm"
KEY_SAMPLING = "key sampling (bilinear)"
RELATIVE_LOOKUP = "relative position lookup (bilinear)"
TABLE_RESAMPLE = "relative table resample (bicubic)"
DWCONV_PE = "DWConv position encoding"
WINDOW_PADDING = "window padding"
NEIGHBORHOOD_PADDING = "neighborhood padding (map < kernel)"
LOG_CPB = "log-CPB MLP"
SR_NORM = "reduction LayerNorm"
FINAL_NORM = "final LayerNorm"
AVG_POOL = "average pool"


@dataclass(frozen=True)
class Expected:
    """What a row should count: the formula and the named residue items."""

    name: str
    kind: str
    stage: int | None
    modules: tuple[str, ...]  # fvcore module names whose counts make up the row
    formula: int
    residue: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ModuleRow:
    """One module: fvcore's count, the formula, the residue items and what is left over.

    ``kind`` is an attention letter (L, S, D, P, G, N, X) or ``stem``, ``merge``, ``lpu``,
    ``mlp``, ``head``;
    ``stage`` is the 0-based stage index (None for stem and head).
    """

    name: str
    kind: str
    stage: int | None
    fvcore: int
    formula: int
    residue: dict[str, int]

    @property
    def residue_total(self) -> int:
        return sum(self.residue.values())

    @property
    def difference(self) -> int:
        """``fvcore - formula - residue``: 0 when every FLOP is accounted for."""
        return self.fvcore - self.formula - self.residue_total


def stage_sizes(cfg: DatConfig, size: tuple[int, int]) -> list[tuple[int, int]]:
    """Feature map (H, W) of every stage for an input of ``size`` pixels."""
    return [cfg.feature_size(i, size) for i in range(len(cfg.stages))]


def _nonzero(items: dict[str, int]) -> dict[str, int]:
    """Residue items that apply (an item that is 0 for this config is left out)."""
    return {k: v for k, v in items.items() if v}


def _window_geometry(stage: StageConfig, h: int, w: int) -> tuple[tuple[int, int], int]:
    """Window actually used and padded token count (as ``WindowAttention`` does)."""
    wh, ww = min(stage.window, h), min(stage.window, w)
    return (wh, ww), A.ceil_div(h, wh) * wh * A.ceil_div(w, ww) * ww


def attention_terms(
    cfg: DatConfig, index: int, letter: str, hw: tuple[int, int], built: tuple[int, int] | None
) -> tuple[int, dict[str, int]]:
    """Formula and residue of one attention module (without its pre-norm).

    ``hw`` is the feature map it runs on, ``built`` the one its tables were built for.
    """
    stage = cfg.stages[index]
    h, w = hw
    n, c = h * w, stage.dim
    attn = Attn(letter)
    if attn in (Attn.LOCAL, Attn.SHIFTED):
        window, n_padded = _window_geometry(stage, h, w)
        return A.window_attention(h, w, c, window), {
            WINDOW_PADDING: A.window_padding(n, n_padded, c, window)
        }
    if attn == Attn.GLOBAL:
        return A.global_attention(n, c), {}
    if attn == Attn.NEIGHBORHOOD:
        k = stage.neighborhood
        n_padded = max(h, k) * max(w, k)  # natten's module pads a small map to the kernel
        return A.neighborhood_attention(h, w, c, k), {
            NEIGHBORHOOD_PADDING: A.window_padding(n, n_padded, c, (k, k))
        }
    if attn == Attn.CONVNEXT:
        return A.conv(n, 1, c, (stage.window, stage.window)), {}
    if attn == Attn.SPATIAL_REDUCTION:
        sr = stage.sr_ratio or 1
        n_kv = (h // sr) * (w // sr)
        residue = {SR_NORM: A.layer_norm(n_kv, c)} if sr > 1 else {}
        return A.spatial_reduction_attention(n, n_kv, c, sr), residue
    return _deformable_terms(cfg, index, hw, built)


def _deformable_terms(
    cfg: DatConfig, index: int, hw: tuple[int, int], built: tuple[int, int] | None
) -> tuple[int, dict[str, int]]:
    stage = cfg.stages[index]
    spec = stage.deformable(index)
    h, w = hw
    n, c = h * w, stage.dim
    hk, wk = A.key_grid(h, w, spec.reduction)
    ns = hk * wk
    formula = A.deformable_attention(h, w, c, ns)
    residue: dict[str, int] = {}
    if spec.offsets:
        formula += A.offset_network(ns, c, spec.offset_kernel)
        residue[OFFSET_NORM] = A.layer_norm(ns, c)
    # With no offsets at r = 1 the reference points are the pixels: the model skips sampling
    # (except in the official convention, whose reference points are off the pixel grid).
    if spec.offsets or spec.reduction > 1 or cfg.sampling.align_corners:
        residue[KEY_SAMPLING] = A.bilinear_sampling(ns, c)
    if spec.pos_enc == PosEnc.RELATIVE:
        # Keys on the pixels: the table is read by an integer-index gather (0 FLOPs).
        if spec.offsets or spec.reduction > 1 or cfg.sampling.align_corners:
            residue[RELATIVE_LOOKUP] = A.relative_position_lookup(stage.heads, n, ns)
        if built is not None and built != hw:
            residue[TABLE_RESAMPLE] = A.relative_table_resample(stage.heads, h, w)
    if spec.pos_enc == PosEnc.DWCONV:
        residue[DWCONV_PE] = A.dwconv_position_encoding(n, c)
    if spec.pos_enc == PosEnc.LOG_CPB:
        residue[LOG_CPB] = A.log_cpb(stage.heads, spec.offset_groups, n, ns)
    return formula, residue


def _stem_row(cfg: DatConfig, size: tuple[int, int], out: tuple[int, int]) -> Expected:
    c0, n0 = cfg.stages[0].dim, out[0] * out[1]
    if cfg.stem == Patchify.PATCH:
        formula = A.patch_embed(n0, cfg.in_chans, c0, cfg.patch_size)
        return Expected("stem", "stem", None, ("stem",), formula, {NORM: A.layer_norm(n0, c0)})
    n1 = A.ceil_div(size[0], 2) * A.ceil_div(size[1], 2)  # after the first stride-2 conv
    norms = A.layer_norm(n1, c0 // 2) + A.layer_norm(n0, c0)
    formula = A.conv_stem(n1, n0, cfg.in_chans, c0)
    return Expected("stem", "stem", None, ("stem",), formula, {NORM: norms})


def _block_rows(cfg: DatConfig, i: int, hw: tuple[int, int], built) -> list[Expected]:
    stage = cfg.stages[i]
    n, c = hw[0] * hw[1], stage.dim
    hidden = int(c * cfg.mlp_ratio)
    mlp = A.conv_mlp(n, c, hidden) if cfg.mlp == MlpKind.DWCONV else A.mlp(n, c, hidden)
    pre = {PRE_NORM: A.layer_norm(n, c)}
    rows = []
    for j, letter in enumerate(stage.letters):
        p = f"stages.{i}.blocks.{j}"
        if cfg.lpu:
            rows.append(
                Expected(f"{p}.lpu", "lpu", i, (f"{p}.lpu",), A.local_perception_unit(n, c))
            )
        formula, residue = attention_terms(cfg, i, letter, hw, built)
        if letter == Attn.CONVNEXT.value:  # no pre-norm: the depthwise conv sees x itself
            rows.append(Expected(f"{p}.attn", letter, i, (f"{p}.attn",), formula))
        else:
            rows.append(
                Expected(
                    f"{p}.attn",
                    letter,
                    i,
                    (f"{p}.norm1", f"{p}.attn"),
                    formula,
                    _nonzero({**pre, **residue}),
                )
            )
        rows.append(Expected(f"{p}.mlp", "mlp", i, (f"{p}.norm2", f"{p}.mlp"), mlp, pre))
    return rows


def expected_rows(cfg: DatConfig, size: tuple[int, int]) -> list[Expected]:
    """Every row of the model at input ``size`` (H, W pixels), from the config alone."""
    sizes = stage_sizes(cfg, size)
    built = stage_sizes(cfg, cfg.img_size) if cfg.img_size is not None else None
    rows = [_stem_row(cfg, size, sizes[0])]
    merge = A.conv_downsample if cfg.downsample == Patchify.CONV else A.patch_merging
    for i, stage in enumerate(cfg.stages):
        h, w = sizes[i]
        n, c = h * w, stage.dim
        if i > 0:
            rows.append(
                Expected(
                    f"stages.{i}.downsample",
                    "merge",
                    i,
                    (f"stages.{i}.downsample",),
                    merge(n, cfg.stages[i - 1].dim, c),
                    {NORM: A.layer_norm(n, c)},
                )
            )
        rows.extend(_block_rows(cfg, i, (h, w), built[i] if built else None))
    h, w = sizes[-1]
    c = cfg.stages[-1].dim
    rows.append(
        Expected(
            "head",
            "head",
            None,
            ("norm", "global_pool", "head", ""),
            A.classifier(c, cfg.num_classes),
            {FINAL_NORM: A.layer_norm(h * w, c), AVG_POOL: A.average_pool(h * w, c)},
        )
    )
    return rows


def root_own_count(by_module: Mapping[str, int]) -> int:
    """What fvcore counted in the root module's own scope (not inside any child)."""
    children = [k for k in by_module if k and "." not in k]
    return by_module[""] - sum(by_module[k] for k in children)


def compare_counts(expected: list[Expected], by_module: Mapping[str, int]) -> list[ModuleRow]:
    """Rows with fvcore's counts: ``by_module`` maps fvcore module names to counts.

    The module name ``""`` in a row stands for the root's own scope (see :func:`root_own_count`).
    """

    def count(name: str) -> int:
        return root_own_count(by_module) if name == "" else int(by_module[name])

    return [
        ModuleRow(e.name, e.kind, e.stage, sum(count(m) for m in e.modules), e.formula, e.residue)
        for e in expected
    ]
