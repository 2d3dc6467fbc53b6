"""D: deformable attention (DAT, Xia et al. CVPR 2022, section 3.2, eq. 6-9)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dat_lab.models.attention._core import attend
from dat_lab.models.enums import OffsetMode, PosEnc, Sampling
from dat_lab.models.layers import LayerNorm2d
from dat_lab.models.pos_embed import (
    DWConvPositionEncoding,
    FixedPositionBias,
    LogCPB,
    RelativePositionBias,
    cell_centres,
    corner_grid,
)
from dat_lab.models.stage import DeformableSpec


@dataclass(frozen=True)
class DeformableMaps:
    """What one D block looked at, for visualisation (normalised (y, x) in [-1, 1]).

    Attributes:
        reference: ``(B, G, Hk, Wk, 2)`` reference points p.
        sampled: ``(B, G, Hk, Wk, 2)`` deformed points p + dp.
        attention: ``(B, heads, HW, Ns)`` attention weights.
        size: ``(H, W)`` of the block's feature map.
        align_corners: the coordinates are ``align_corners=True`` normalised (both official
            conventions, see ``Sampling``).
    """

    reference: torch.Tensor
    sampled: torch.Tensor
    attention: torch.Tensor
    size: tuple[int, int]
    align_corners: bool

    def to_pixels(self, points: torch.Tensor, stride: int) -> torch.Tensor:
        """Normalised (y, x) -> input-image pixel (y, x), for a map ``stride`` px per cell."""
        size = points.new_tensor(self.size)
        if self.align_corners:
            cells = (points + 1) / 2 * (size - 1)
        else:
            cells = (points + 1) / 2 * size - 0.5  # align_corners=False
        return (cells + 0.5) * stride - 0.5


class OffsetNetwork(nn.Module):
    """theta_offset: depthwise k x k conv (stride r) -> LayerNorm -> GELU -> 1x1 conv to 2.

    The last conv has no bias (the paper: a bias would push every point the same way).
    Shapes: ``(B*G, C/G, H, W) -> (B*G, 2, Hk, Wk)`` (dy, dx).
    """

    def __init__(self, channels: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, kernel, stride, kernel // 2, groups=channels)
        # eps 1e-5 as the official code's norm (nn.LayerNorm's default); timm's LayerNorm2d
        # defaults to 1e-6, which moves official DAT/DAT++ logits by ~1e-5.
        self.norm = LayerNorm2d(channels, eps=1e-5)
        self.act = nn.GELU()
        self.proj = nn.Conv2d(channels, 2, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.norm(self.dwconv(x))))


class DeformableAttention(nn.Module):
    """D: attention over keys/values sampled at learned, query-dependent deformed points.

    DAT eq. (6)-(9): ``q = x W_q``; ``dp = theta_offset(q)`` (per offset group, bounded as
    ``s tanh(dp)`` in units of key-grid cells / 2); ``x~ = phi(x; p + dp)`` by bilinear sampling;
    ``k = x~ W_k``, ``v = x~ W_v``; ``z = SoftMax(q k^T / sqrt(d) + phi(B^; R)) v`` per head, then
    ``W_o``. ``Omega = 2 HW Ns C + 2 HW C^2 + 2 Ns C^2 + (k^2 + 2) Ns C`` with ``Ns = HW / r^2``.

    Args:
        dim: channels C.
        heads: heads M (``heads % groups == 0``).
        spec: the resolved D knobs (s, r, G, k, offsets, mode, position encoding).
        size: ``(H, W)`` the block is built for (sizes relative/fixed tables); may be None
            for pos_enc none/dwconv.
        sampling: the coordinate convention (see ``Sampling``).

    Shapes: ``(B, H, W, dim) -> (B, H, W, dim)``.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        spec: DeformableSpec,
        size: tuple[int, int] | None,
        sampling: Sampling = Sampling.CONSISTENT,
    ) -> None:
        super().__init__()
        self.heads, self.spec, self.sampling = heads, spec, sampling
        self.groups = spec.offset_groups
        self.fused_attn = True
        self.record = False  # set by DAT.forward_deformable_maps
        self.last_maps: DeformableMaps | None = None
        self.proj_q = nn.Linear(dim, dim)
        self.proj_k = nn.Linear(dim, dim)
        self.proj_v = nn.Linear(dim, dim)
        self.proj_out = nn.Linear(dim, dim)
        if spec.offsets:
            self.conv_offset = OffsetNetwork(
                dim // self.groups, spec.offset_kernel, spec.reduction
            )
        self.pos_bias = self._build_position_encoding(dim, size)

    def _build_position_encoding(self, dim: int, size: tuple[int, int] | None) -> nn.Module | None:
        pe = self.spec.pos_enc
        if pe == PosEnc.NONE:
            return None
        if pe == PosEnc.DWCONV:
            return DWConvPositionEncoding(dim)
        if pe == PosEnc.LOG_CPB:
            return LogCPB(self.heads, self.groups)
        if size is None:
            raise ValueError(f"pos_enc {pe.value!r} needs the feature-map size at build time")
        if pe == PosEnc.FIXED:
            return FixedPositionBias(self.heads, size, self.key_grid(*size))
        return RelativePositionBias(
            self.heads, self.groups, size, self.align_corners, self._keys_on_pixels()
        )

    @property
    def align_corners(self) -> bool:
        """``grid_sample``'s convention (both official conventions: ``True``)."""
        return self.sampling.align_corners

    @property
    def pp_grids(self) -> bool:
        """The DAT++ code's grids: reference and query points normalised by ``n - 1``."""
        return self.sampling == Sampling.OFFICIAL_PP

    def _position_encoding(self) -> nn.Module:
        """The position module; only pos_enc none has none, and it is never asked for."""
        if self.pos_bias is None:
            raise RuntimeError("pos_enc none has no position module")  # a bug
        return self.pos_bias

    def key_grid(self, h: int, w: int) -> tuple[int, int]:
        """Key grid of an ``h x w`` map: the output size of a stride-r, pad k//2 conv."""
        r = self.spec.reduction
        return (h - 1) // r + 1, (w - 1) // r + 1

    def sample_points(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference and deformed points of queries ``q`` ``(B, H, W, C)``.

        Returns two ``(B*G, Hk, Wk, 2)`` tensors of normalised (y, x).
        """
        b, h, w, c = q.shape
        bg = b * self.groups
        hk, wk = self.key_grid(h, w)
        ref = self.reference_points(hk, wk, q).expand(bg, -1, -1, -1)
        if not self.spec.offsets:
            return ref, ref
        # Each group's channels as one image, kept channels-last: the depthwise conv's
        # backward is ~30% faster in that layout on CPU.
        q_groups = q.reshape(b, h, w, self.groups, c // self.groups).permute(0, 3, 1, 2, 4)
        q_groups = q_groups.reshape(bg, h, w, c // self.groups).permute(0, 3, 1, 2)
        offset = self.conv_offset(q_groups).permute(0, 2, 3, 1)  # B*G, Hk, Wk, 2
        if self.spec.offset_mode == OffsetMode.BOUNDED:
            # s * tanh(dp), one key-grid cell is 2 / Hk in normalised units: s = 2 -> 1 cell.
            cells = (max(hk - 1, 1), max(wk - 1, 1)) if self.pp_grids else (hk, wk)
            cell = offset.new_tensor([1.0 / cells[0], 1.0 / cells[1]])
            return ref, ref + offset.tanh() * cell * self.spec.offset_range
        return ref, (ref + offset).clamp(-1.0, 1.0)

    def reference_points(self, hk: int, wk: int, like: torch.Tensor) -> torch.Tensor:
        """``(1, Hk, Wk, 2)`` reference points p (normalised (y, x)).

        Key-cell centres ``(i + 0.5) / Hk``; the DAT++ code divides by ``Hk - 1`` instead
        (``official_pp``), which puts the last row and column past 1 (clamped in ``clamped``
        mode). A 1-cell grid keeps the divisor 1 (the official code would divide by 0).
        """
        if not self.pp_grids:
            return cell_centres(hk, wk, like.device, like.dtype)[None]
        ys = (torch.arange(hk, device=like.device, dtype=like.dtype) + 0.5) / max(hk - 1, 1)
        xs = (torch.arange(wk, device=like.device, dtype=like.dtype) + 0.5) / max(wk - 1, 1)
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)
        return (grid * 2 - 1)[None]

    def query_points(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """``(HW, 2)`` query positions for the position term (DAT++ code: the pixel grid)."""
        if self.pp_grids:
            return corner_grid(h, w, like.device, like.dtype).view(h * w, 2)
        return cell_centres(h, w, like.device, like.dtype).view(h * w, 2)

    def _keys_on_pixels(self) -> bool:
        """No offsets, r = 1, consistent convention: the keys sit exactly on the pixels."""
        return not self.spec.offsets and self.spec.reduction == 1 and not self.align_corners

    def sample_keys(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Bilinear features at ``pos``: ``(B, H, W, C) -> (B, Ns, C)``, each group its points."""
        b, h, w, c = x.shape
        if self._keys_on_pixels():
            return x.reshape(b, h * w, c)  # reference points are the pixels exactly
        x_cf = x.permute(0, 3, 1, 2)
        sampled = F.grid_sample(
            x_cf.reshape(b * self.groups, c // self.groups, h, w),
            pos.flip(-1),  # (y, x) -> (x, y)
            mode="bilinear",
            align_corners=self.align_corners,
        )  # B*G, C/G, Hk, Wk
        return sampled.reshape(b, c, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        d = c // self.heads
        q = self.proj_q(x)
        ref, pos = self.sample_points(q)
        hk, wk = ref.shape[1:3]
        x_s = self.sample_keys(x, pos)  # B, Ns, C
        k = self.proj_k(x_s).view(b, hk * wk, self.heads, d).transpose(1, 2)
        v = self.proj_v(x_s).view(b, hk * wk, self.heads, d).transpose(1, 2)
        q_h = q.view(b, h * w, self.heads, d).transpose(1, 2)  # B, heads, HW, d
        bias = self.attention_bias(pos, h, w, hk, wk)
        out, weights = attend(q_h, k, v, bias, fused=self.fused_attn, return_weights=self.record)
        out = out.transpose(1, 2).reshape(b, h, w, c)
        if self.spec.pos_enc == PosEnc.DWCONV:
            out = out + self._position_encoding()(q.permute(0, 3, 1, 2))
        if self.record:
            assert weights is not None  # attend returns them when asked
            shape = (b, self.groups, hk, wk, 2)
            self.last_maps = DeformableMaps(
                ref.reshape(shape), pos.reshape(shape), weights, (h, w), self.align_corners
            )
        return self.proj_out(out)

    def attention_bias(
        self, pos: torch.Tensor, h: int, w: int, hk: int, wk: int
    ) -> torch.Tensor | None:
        """The position term added to the logits (relative or fixed), or None.

        ``pos``: ``(B*G, Hk, Wk, 2)`` deformed points; the bias is ``(B, heads, HW, Ns)`` (or
        ``(1, heads, HW, HW)`` when the keys sit on the pixels).
        """
        pe = self.spec.pos_enc
        if pe == PosEnc.RELATIVE:
            if self._keys_on_pixels():
                return self._position_encoding()(None, None, h, w)
            queries = self.query_points(h, w, pos)
            return self._position_encoding()(queries, pos.reshape(pos.shape[0], -1, 2), h, w)
        if pe == PosEnc.LOG_CPB:
            return self._position_encoding()(
                self.query_points(h, w, pos), pos.reshape(pos.shape[0], -1, 2)
            )
        if pe == PosEnc.FIXED:
            return self._position_encoding()(h, w, hk, wk)
        return None
