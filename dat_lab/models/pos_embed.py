"""Position encodings of the deformable block (the paper's "Pos. Embed" ablation).

- :class:`RelativePositionBias` (DAT's choice): a learned ``heads x (2H-1) x (2W-1)`` table,
  read by bilinear interpolation at the continuous displacement between each query and each
  deformed key. At another feature-map size the table is resampled (bicubic) to that size, as
  the official code does when fine-tuning at a new resolution.
- :class:`FixedPositionBias`: a learned ``heads x HW x Ns`` bias tied to one input size.
- :class:`DWConvPositionEncoding`: a 3x3 depthwise conv of q added to the attention output
  (LePE, CSWin).
- :class:`LogCPB` (DAT++ option): a small MLP of the log-spaced displacement (Swin-V2's
  log-spaced continuous position bias), free of any map size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn


def cell_centres(h: int, w: int, device=None, dtype=None) -> torch.Tensor:
    """``(h, w, 2)`` (y, x) centres of an ``h x w`` grid, normalised to [-1, 1].

    This is ``align_corners=False`` normalisation: with it, centre ``i`` of an ``h``-cell grid
    over an ``h``-pixel map is exactly pixel ``i``.
    """
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w * 2 - 1
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)


def corner_grid(h: int, w: int, device=None, dtype=None) -> torch.Tensor:
    """``(h, w, 2)`` (y, x) pixel positions ``i / (h - 1)`` mapped to [-1, 1] (DAT++'s queries).

    ``align_corners=True`` normalisation: the first and last pixel sit at -1 and 1. A side of
    one pixel sits at -1 (the official code would divide by 0).
    """
    ys = torch.arange(h, device=device, dtype=dtype) / max(h - 1, 1) * 2 - 1
    xs = torch.arange(w, device=device, dtype=dtype) / max(w - 1, 1) * 2 - 1
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)


class RelativePositionBias(nn.Module):
    """Relative position bias for deformed keys (DAT section 3.2, "relative position offsets").

    Args:
        heads: attention heads.
        groups: offset groups (heads are split evenly; group g's heads use group g's points).
        size: ``(H, W)`` feature map the table is built for.
        official: the official coordinate convention (displacement halved, read with
            ``align_corners=True``); otherwise one table entry is exactly one pixel.
        keys_on_pixels: the block's keys are the pixels (no offsets, r = 1): keep the gather
            index of the built size as a buffer.
    """

    pixel_index: torch.Tensor

    def __init__(
        self,
        heads: int,
        groups: int,
        size: tuple[int, int],
        official: bool,
        keys_on_pixels: bool = False,
    ) -> None:
        super().__init__()
        self.heads, self.groups, self.official = heads, groups, official
        self.size = size
        self.rpe_table = nn.Parameter(torch.zeros(heads, 2 * size[0] - 1, 2 * size[1] - 1))
        trunc_normal_(self.rpe_table, std=0.01)
        if keys_on_pixels:  # the gather index at the built size, as Swin's relative index
            self.register_buffer("pixel_index", pixel_grid_index(*size), persistent=False)

    def table(self, h: int, w: int) -> torch.Tensor:
        """The ``heads x (2h-1) x (2w-1)`` table for an ``h x w`` map (resampled if needed)."""
        t = self.rpe_table
        if t.shape[-2:] == (2 * h - 1, 2 * w - 1):
            return t
        return F.interpolate(t[None], size=(2 * h - 1, 2 * w - 1), mode="bicubic")[0]

    def forward(
        self,
        queries: torch.Tensor | None,
        pos: torch.Tensor | None,
        h: int,
        w: int,
    ) -> torch.Tensor:
        """Bias ``(B, heads, HW, Ns)``; ``(1, heads, HW, HW)`` when the keys are the pixels.

        Args:
            queries: ``(HW, 2)`` normalised (y, x) query positions.
            pos: ``(B*groups, Ns, 2)`` normalised (y, x) deformed key positions; ``None``
                when the keys sit exactly on the pixels (no offsets, r = 1).
        """
        if pos is None:
            return self.on_pixel_grid(h, w)
        if queries is None:
            raise ValueError("deformed keys need the query positions")
        bg = pos.shape[0]
        if self.official:
            scale = pos.new_tensor([0.5, 0.5])
        else:
            # Normalised displacement -> pixels (x h/2), then -> table coordinates with
            # align_corners=True, where the table's half-width (h - 1) maps to 1.
            scale = pos.new_tensor([h / (2 * max(h - 1, 1)), w / (2 * max(w - 1, 1))])
        # Scale and reorder (y, x) -> (x, y) on the small tensors; one broadcast makes the grid.
        q_xy, p_xy = (queries * scale).flip(-1), (pos * scale).flip(-1)
        n_q, n_k = q_xy.shape[0], p_xy.shape[1]
        # Broadcast over rows of n_k (x, y) pairs rather than over pairs: with an innermost
        # dimension of 2 the subtraction does not vectorise (4x slower forward on CPU).
        q_rows = q_xy[:, None, :].expand(n_q, n_k, 2).reshape(1, n_q, n_k * 2)
        grid = (q_rows - p_xy.reshape(bg, 1, n_k * 2)).view(bg, n_q, n_k, 2)  # x, y
        table = self.table(h, w)
        table = table.view(self.groups, self.heads // self.groups, *table.shape[-2:])
        table = table.expand(bg // self.groups, -1, -1, -1, -1).reshape(bg, -1, *table.shape[-2:])
        bias = F.grid_sample(table, grid, mode="bilinear", align_corners=True)
        return bias.reshape(bg // self.groups, self.heads, *bias.shape[-2:])

    def on_pixel_grid(self, h: int, w: int) -> torch.Tensor:  # called by forward
        """Bias ``(1, heads, HW, HW)`` for keys exactly at the pixels (no offsets, r = 1).

        Every displacement is then a whole number of pixels, where the bilinear read equals the
        table entry itself: an integer-index gather (Swin's lookup), exact and much cheaper.
        """
        if (h, w) == self.size and hasattr(self, "pixel_index"):
            dy, dx = self.pixel_index.unbind(0)
        else:
            dy, dx = pixel_grid_index(h, w, self.rpe_table.device).unbind(0)
        return self.table(h, w)[:, dy, dx][None]


def pixel_grid_index(h: int, w: int, device=None) -> torch.Tensor:
    """``(2, HW, HW)`` table (row, column) of every query-key pair on an ``h x w`` grid."""
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
    )
    dy = ys.reshape(-1, 1) - ys.reshape(1, -1) + (h - 1)  # query - key, as table rows
    dx = xs.reshape(-1, 1) - xs.reshape(1, -1) + (w - 1)
    return torch.stack((dy, dx))


class FixedPositionBias(nn.Module):
    """A learned bias per head, query and key: ``heads x HW x Ns`` for one input size."""

    def __init__(self, heads: int, size: tuple[int, int], key_size: tuple[int, int]) -> None:
        super().__init__()
        self.size, self.key_size = size, key_size
        n_q, n_k = size[0] * size[1], key_size[0] * key_size[1]
        self.rpe_table = nn.Parameter(torch.zeros(heads, n_q, n_k))
        trunc_normal_(self.rpe_table, std=0.01)

    def forward(self, h: int, w: int, hk: int, wk: int) -> torch.Tensor:
        if (h, w) != self.size or (hk, wk) != self.key_size:
            raise ValueError(
                f"fixed position bias was built for a {self.size[0]}x{self.size[1]} feature map "
                f"({self.key_size[0]}x{self.key_size[1]} keys), got {h}x{w} ({hk}x{wk} keys): "
                "fixed PE ties the model to its img_size; use pos_enc relative or dwconv "
                "for other sizes"
            )
        return self.rpe_table[None]


class DWConvPositionEncoding(nn.Module):
    """LePE-like: a 3x3 depthwise conv of q, added to the attention output."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)

    def forward(self, q_cf: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, H, W, C)``."""
        return self.conv(q_cf).permute(0, 2, 3, 1)


class LogCPB(nn.Module):
    """Log-spaced continuous position bias (Swin-V2; DAT++ ``log_cpb``).

    The displacement ``d = 4 (q - p)`` between each query and each deformed key (normalised
    coordinates, so ``|d| <= 8``) is log-spaced, ``sign(d) log2(|d| + 1) / log2(8)``, and an
    MLP ``2 -> 32 -> heads/groups`` (ReLU, no bias at the end) maps it to one bias per head of
    the key's offset group. The MLP is shared by the groups, as in the DAT++ code.
    """

    def __init__(self, heads: int, groups: int, hidden: int = 32) -> None:
        super().__init__()
        self.heads, self.groups = heads, groups
        self.rpe_table = nn.Sequential(
            nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, heads // groups, bias=False)
        )

    def forward(self, queries: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Bias ``(B, heads, HW, Ns)`` from queries ``(HW, 2)`` and keys ``(B*groups, Ns, 2)``."""
        bg, n_k = pos.shape[0], pos.shape[1]
        d = (queries[None, :, None, :] - pos[:, None, :, :]) * 4.0
        d = torch.sign(d) * torch.log2(d.abs() + 1.0) / 3.0  # log2(8) = 3
        bias = self.rpe_table(d)  # B*G, HW, Ns, heads/G
        bias = bias.permute(0, 3, 1, 2).reshape(bg // self.groups, self.heads, -1, n_k)
        return bias
