"""The official DAT++ forward, transcribed as functions of a state dict in the official layout.

A test helper, independent of ``dat_lab.models``: it reads the official checkpoint's own key
names (``patch_proj.*``, ``stages.i.{layer_norms,attns,mlps,layer_scales,
local_perception_units}.*``, ``down_projs.*``, ``cls_norm``, ``cls_head``) and follows the
official code of LeapLabTHU/DAT (main branch): ``models/dat.py`` (``DAT``,
``TransformerStage``, ``LayerScale``), ``models/dat_blocks.py`` (``DAttentionBaseline``,
``TransformerMLPWithConv``, ``LayerNormProxy``) and ``models/nat.py``
(``NeighborhoodAttention2D``, whose natten kernels are restated here from natten's
window and bias-start rules). Tensors stay channels-first as in the official code.

Only what the DAT++ configs (``configs/dat_{tiny,small,base,base_384}.yaml``) switch on is
here: conv stem and downsampling, LPU, N and D blocks, ConvFFN, the relative position table
or log-CPB, and optional LayerScale; ``use_pes`` on, ``dwc_pes``/``fixed_pes``/``no_offs`` off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class OfficialPP:
    """The official ``DAT(**config.MODEL.DAT)`` arguments a DAT++ config sets (per stage)."""

    img_size: int
    dim_stem: int
    dims: tuple[int, ...]
    depths: tuple[int, ...]
    stage_spec: tuple[str, ...]  # one letter per block, e.g. "NDND"
    heads: tuple[int, ...]
    groups: tuple[int, ...]
    strides: tuple[int, ...]
    ksizes: tuple[int, ...] = (9, 7, 5, 3)
    nat_ksizes: tuple[int, ...] = (7, 7, 7, 7)
    offset_range_factor: tuple[float, ...] = (-1, -1, -1, -1)  # < 0: clamped points
    layer_scale_values: tuple[float, ...] = (-1, -1, -1, -1)  # <= 0: no LayerScale
    log_cpb: tuple[bool, ...] = (False, False, False, False)
    patch_size: int = 4
    expansion: int = 4
    num_classes: int = 1000

    def fmap(self, stage: int) -> int:
        """The map side the official code sizes a stage's tables for (floor division)."""
        return self.img_size // self.patch_size // 2**stage


def official_tiny() -> OfficialPP:
    """``configs/dat_tiny.yaml``."""
    spec = ("ND", "NDND", "ND" * 9, "DD")
    return OfficialPP(224, 64, (64, 128, 256, 512), (2, 4, 18, 2), spec, (2, 4, 8, 16),
                      (1, 2, 4, 8), (8, 4, 2, 1))  # fmt: skip


# -- the official key layout ------------------------------------------------------------------
def _stage_shapes(cfg: OfficialPP, i: int) -> dict[str, tuple[int, ...]]:
    c, heads, g, hid = cfg.dims[i], cfg.heads[i], cfg.groups[i], cfg.dims[i] * cfg.expansion
    p, cg, k = f"stages.{i}", cfg.dims[i] // cfg.groups[i], cfg.nat_ksizes[i]
    out: dict[str, tuple[int, ...]] = {}
    for j in range(2 * cfg.depths[i]):
        out |= {f"{p}.layer_norms.{j}.norm.weight": (c,), f"{p}.layer_norms.{j}.norm.bias": (c,)}
    for d in range(cfg.depths[i]):
        m = f"{p}.mlps.{d}"
        out |= {f"{m}.linear1.0.weight": (hid, c, 1, 1), f"{m}.linear1.0.bias": (hid,)}
        out |= {f"{m}.linear2.0.weight": (c, hid, 1, 1), f"{m}.linear2.0.bias": (c,)}
        out |= {f"{m}.dwc.weight": (hid, 1, 3, 3), f"{m}.dwc.bias": (hid,)}
    for d, letter in enumerate(cfg.stage_spec[i]):
        a = f"{p}.attns.{d}"
        if letter == "N":
            out |= {f"{a}.rpb": (heads, 2 * k - 1, 2 * k - 1)}
            out |= {f"{a}.qkv.weight": (3 * c, c), f"{a}.qkv.bias": (3 * c,)}
            out |= {f"{a}.proj.weight": (c, c), f"{a}.proj.bias": (c,)}
            continue
        if not cfg.log_cpb[i]:
            out[f"{a}.rpe_table"] = (heads, 2 * cfg.fmap(i) - 1, 2 * cfg.fmap(i) - 1)
        ks = cfg.ksizes[i]
        out |= {f"{a}.conv_offset.0.weight": (cg, 1, ks, ks), f"{a}.conv_offset.0.bias": (cg,)}
        out |= {f"{a}.conv_offset.1.norm.weight": (cg,), f"{a}.conv_offset.1.norm.bias": (cg,)}
        out[f"{a}.conv_offset.3.weight"] = (2, cg, 1, 1)
        for proj in ("proj_q", "proj_k", "proj_v", "proj_out"):
            out |= {f"{a}.{proj}.weight": (c, c, 1, 1), f"{a}.{proj}.bias": (c,)}
        if cfg.log_cpb[i]:  # Linear(2, 32), ReLU, Linear(32, heads / groups, bias=False)
            out |= {f"{a}.rpe_table.0.weight": (32, 2), f"{a}.rpe_table.0.bias": (32,)}
            out[f"{a}.rpe_table.2.weight"] = (heads // g, 32)
    if cfg.layer_scale_values[i] > 0:
        out |= {f"{p}.layer_scales.{j}.weight": (c,) for j in range(2 * cfg.depths[i])}
    for d in range(cfg.depths[i]):
        u = f"{p}.local_perception_units.{d}"
        out |= {f"{u}.weight": (c, 1, 3, 3), f"{u}.bias": (c,)}
    return out


def official_pp_shapes(cfg: OfficialPP) -> dict[str, tuple[int, ...]]:
    """Every key and shape of the official DAT++ state dict for ``cfg``."""
    s, h = cfg.dim_stem, cfg.dim_stem // 2
    out: dict[str, tuple[int, ...]] = {
        "patch_proj.0.weight": (h, 3, 3, 3),
        "patch_proj.0.bias": (h,),
        "patch_proj.1.norm.weight": (h,),
        "patch_proj.1.norm.bias": (h,),
        "patch_proj.3.weight": (s, h, 3, 3),
        "patch_proj.3.bias": (s,),
        "patch_proj.4.norm.weight": (s,),
        "patch_proj.4.norm.bias": (s,),
    }
    for i in range(len(cfg.dims)):
        out |= _stage_shapes(cfg, i)
    for i in range(len(cfg.dims) - 1):
        out[f"down_projs.{i}.0.weight"] = (cfg.dims[i + 1], cfg.dims[i], 3, 3)
        out |= {f"down_projs.{i}.1.norm.{n}": (cfg.dims[i + 1],) for n in ("weight", "bias")}
    out |= {"cls_norm.norm.weight": (cfg.dims[-1],), "cls_norm.norm.bias": (cfg.dims[-1],)}
    out["cls_head.weight"] = (cfg.num_classes, cfg.dims[-1])
    out["cls_head.bias"] = (cfg.num_classes,)
    return out


# -- layers -------------------------------------------------------------------------------------
def _ln(sd: State, p: str, x: torch.Tensor) -> torch.Tensor:
    """``LayerNormProxy``: LayerNorm over channels of a channels-first map."""
    y = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], sd[f"{p}.weight"], sd[f"{p}.bias"])
    return y.permute(0, 3, 1, 2)


def _conv(
    sd: State, p: str, x: torch.Tensor, stride: int = 1, padding: int = 0, groups: int = 1
) -> torch.Tensor:
    return F.conv2d(x, sd[f"{p}.weight"], sd.get(f"{p}.bias"), stride, padding, groups=groups)


def conv_ffn(sd: State, p: str, x: torch.Tensor) -> torch.Tensor:
    """``TransformerMLPWithConv``: linear1, + dwc (residual), GELU, linear2 (1x1 convs)."""
    h = _conv(sd, f"{p}.linear1.0", x)
    h = h + _conv(sd, f"{p}.dwc", h, padding=1, groups=h.shape[1])
    return _conv(sd, f"{p}.linear2.0", F.gelu(h))


def _natten_starts(length: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """natten's (dilation 1) ``get_window_start`` and ``get_pb_start`` of every index."""
    ns, i = k // 2, torch.arange(length)
    near_end = (i + ns >= length).long()
    window = (i - ns).clamp(min=0) + near_end * (length - i - ns - 1)
    pb = ns + (i < ns).long() * (ns - i) + near_end * (length - i - 1 - ns)
    return window, pb


def neighborhood(sd: State, p: str, x: torch.Tensor, heads: int, k: int) -> torch.Tensor:
    """``NeighborhoodAttention2D`` (``models/nat.py``, dilation 1) with natten's QK-RPB and AV.

    A map smaller than ``k`` is zero-padded at the bottom/right before ``qkv`` and cropped.
    """
    x = x.permute(0, 2, 3, 1)
    b, h0, w0, c = x.shape
    x = F.pad(x, (0, 0, 0, max(0, k - w0), 0, max(0, k - h0)))
    h, w, d = x.shape[1], x.shape[2], c // heads
    qkv = F.linear(x, sd[f"{p}.qkv.weight"], sd[f"{p}.qkv.bias"])
    q, key, v = qkv.reshape(b, h, w, 3, heads, d).permute(3, 0, 4, 1, 2, 5)  # B, M, H, W, d
    (wy, py), (wx, px) = _natten_starts(h, k), _natten_starts(w, k)
    win = torch.arange(k)
    ry, rx = (wy[:, None] + win)[:, None, :, None], (wx[:, None] + win)[None, :, None, :]
    by, bx = (py[:, None] + win)[:, None, :, None], (px[:, None] + win)[None, :, None, :]
    k_win, v_win = key[:, :, ry, rx], v[:, :, ry, rx]  # B, M, H, W, k, k, d
    attn = torch.einsum("bmhwd,bmhwijd->bmhwij", q * d**-0.5, k_win) + sd[f"{p}.rpb"][:, by, bx]
    attn = attn.flatten(-2).softmax(-1).view_as(attn)
    out = torch.einsum("bmhwij,bmhwijd->bhwmd", attn, v_win).reshape(b, h, w, c)[:, :h0, :w0]
    return F.linear(out, sd[f"{p}.proj.weight"], sd[f"{p}.proj.bias"]).permute(0, 3, 1, 2)


def _grid(
    n_h: int, n_w: int, start: float, b: int, dtype: torch.dtype, less: float = 1.0
) -> torch.Tensor:
    """``_get_ref_points`` (start 0.5) / ``_get_q_grid`` (start 0): (y, x) over ``n - less``.

    DAT++ divides by ``n - 1`` (``less = 1``); the DAT v1 code by ``n`` (``less = 0``).
    """
    ys = (torch.arange(n_h, dtype=dtype) + start) / (n_h - less) * 2.0 - 1.0
    xs = (torch.arange(n_w, dtype=dtype) + start) / (n_w - less) * 2.0 - 1.0
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1)[None].expand(b, -1, -1, -1)


@dataclass(frozen=True)
class DSpec:
    """One D block's official constructor arguments."""

    heads: int
    groups: int
    stride: int
    ksize: int
    offset_range_factor: float
    log_cpb: bool
    v1: bool = False  # the DAT v1 code's grids: divided by n, queries at cell centres


def deformable(sd: State, p: str, x: torch.Tensor, s: DSpec) -> torch.Tensor:
    """``DAttentionBaseline.forward`` with ``use_pe`` on (relative table or log-CPB).

    With ``s.v1``: the DAT v1 (CVPR 2022) code's ``DAttentionBaseline``, which differs only
    in its grids (reference and query points at cell centres over ``n``).
    """
    b, c, h, w = x.shape
    g, cg, hc = s.groups, c // s.groups, c // s.heads
    q = _conv(sd, f"{p}.proj_q", x)
    pad = s.ksize // 2 if s.ksize != s.stride else 0
    off = _conv(sd, f"{p}.conv_offset.0", q.reshape(b * g, cg, h, w), s.stride, pad, cg)
    off = _conv(sd, f"{p}.conv_offset.3", F.gelu(_ln(sd, f"{p}.conv_offset.1.norm", off)))
    hk, wk = off.shape[2:]
    less = 0.0 if s.v1 else 1.0
    if s.offset_range_factor >= 0:
        rng = x.new_tensor([1.0 / (hk - less), 1.0 / (wk - less)]).reshape(1, 2, 1, 1)
        off = off.tanh() * rng * s.offset_range_factor
    pos = off.permute(0, 2, 3, 1) + _grid(hk, wk, 0.5, b * g, x.dtype, less)
    if s.offset_range_factor < 0:
        pos = pos.clamp(-1.0, 1.0)
    xs = F.grid_sample(x.reshape(b * g, cg, h, w), pos[..., (1, 0)], align_corners=True)
    xs = xs.reshape(b, c, 1, hk * wk)
    qh = q.reshape(b * s.heads, hc, h * w)
    k = _conv(sd, f"{p}.proj_k", xs).reshape(b * s.heads, hc, hk * wk)
    v = _conv(sd, f"{p}.proj_v", xs).reshape(b * s.heads, hc, hk * wk)
    attn = torch.einsum("bcm,bcn->bmn", qh, k) * hc**-0.5
    q_start = 0.5 if s.v1 else 0.0
    q_grid = _grid(h, w, q_start, b * g, x.dtype, less).reshape(b * g, h * w, 1, 2)
    disp = q_grid - pos.reshape(b * g, 1, hk * wk, 2)
    if s.log_cpb:
        disp = disp * 4.0
        disp = torch.sign(disp) * torch.log2(disp.abs() + 1.0) / math.log2(8.0)
        hid = F.relu(F.linear(disp, sd[f"{p}.rpe_table.0.weight"], sd[f"{p}.rpe_table.0.bias"]))
        bias = F.linear(hid, sd[f"{p}.rpe_table.2.weight"])  # B*g, HW, Ns, heads/g
        bias = bias.permute(0, 3, 1, 2).reshape(b * s.heads, h * w, hk * wk)
    else:
        table = sd[f"{p}.rpe_table"][None].expand(b, -1, -1, -1)
        table = table.reshape(b * g, s.heads // g, *table.shape[-2:])
        bias = F.grid_sample(table, (disp * 0.5)[..., (1, 0)], align_corners=True)
        bias = bias.reshape(b * s.heads, h * w, hk * wk)
    attn = (attn + bias).softmax(dim=2)
    out = torch.einsum("bmn,bcn->bcm", attn, v).reshape(b, c, h, w)
    return _conv(sd, f"{p}.proj_out", out)


# -- stages and model ---------------------------------------------------------------------------
def _attention(sd: State, cfg: OfficialPP, i: int, d: int, x: torch.Tensor) -> torch.Tensor:
    p = f"stages.{i}.attns.{d}"
    if cfg.stage_spec[i][d] == "N":
        return neighborhood(sd, p, x, cfg.heads[i], cfg.nat_ksizes[i])
    spec = DSpec(cfg.heads[i], cfg.groups[i], cfg.strides[i], cfg.ksizes[i],
                 cfg.offset_range_factor[i], cfg.log_cpb[i])  # fmt: skip
    return deformable(sd, p, x, spec)


def _scaled(sd: State, cfg: OfficialPP, i: int, j: int, x: torch.Tensor) -> torch.Tensor:
    """``layer_scales[j]``: a per-channel weight, or Identity when the value is <= 0."""
    if cfg.layer_scale_values[i] <= 0:
        return x
    return x * sd[f"stages.{i}.layer_scales.{j}.weight"].view(-1, 1, 1)


def stage(sd: State, cfg: OfficialPP, i: int, x: torch.Tensor) -> torch.Tensor:
    """``TransformerStage.forward`` (no ``proj``: the DAT++ widths double stage to stage)."""
    p = f"stages.{i}"
    for d in range(cfg.depths[i]):
        x = x + _conv(sd, f"{p}.local_perception_units.{d}", x, padding=1, groups=x.shape[1])
        y = _attention(sd, cfg, i, d, _ln(sd, f"{p}.layer_norms.{2 * d}.norm", x))
        x = x + _scaled(sd, cfg, i, 2 * d, y)
        y = conv_ffn(sd, f"{p}.mlps.{d}", _ln(sd, f"{p}.layer_norms.{2 * d + 1}.norm", x))
        x = x + _scaled(sd, cfg, i, 2 * d + 1, y)
    return x


def official_pp_forward(sd: State, cfg: OfficialPP, x: torch.Tensor) -> torch.Tensor:
    """``DAT.forward`` (eval mode) with ``use_conv_patches``: the logits ``(B, num_classes)``."""
    half = cfg.patch_size // 2  # both stem convs have stride patch_size // 2
    x = _conv(sd, "patch_proj.0", x, half, 1)
    x = F.gelu(_ln(sd, "patch_proj.1.norm", x))
    x = _ln(sd, "patch_proj.4.norm", _conv(sd, "patch_proj.3", x, half, 1))
    for i in range(len(cfg.dims)):
        x = stage(sd, cfg, i, x)
        if i < len(cfg.dims) - 1:
            x = _ln(sd, f"down_projs.{i}.1.norm", _conv(sd, f"down_projs.{i}.0", x, 2, 1))
    x = _ln(sd, "cls_norm.norm", x).mean(dim=(2, 3))
    return F.linear(x, sd["cls_head.weight"], sd["cls_head.bias"])
