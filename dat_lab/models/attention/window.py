"""L: local window attention (Swin W-MSA) with a learned relative position bias."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from dat_lab.models.attention._core import attend

MASKED = -100.0  # the official code's mask value; exp(-100) is 0 in float32 sums
MASK_CACHE_SIZE = 8  # attention masks kept per block (one per input size and device)


def relative_position_index(wh: int, ww: int, table_w: int) -> torch.Tensor:
    """Index into a ``(2*table_h-1) x (2*table_w-1)`` bias table for a ``wh x ww`` window.

    Returns a ``(wh*ww, wh*ww)`` long tensor; windows smaller than the table (a feature map
    smaller than the window) index the table's centre part.
    """
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij"))
    coords = coords.flatten(1)  # 2, N
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # N, N, 2
    return (rel[..., 0] + table_w - 1) * (2 * table_w - 1) + (rel[..., 1] + table_w - 1)


def window_regions(
    h: int, w: int, hp: int, wp: int, win: tuple[int, int], shift: tuple[int, int]
) -> torch.Tensor:
    """Region id per pixel of the padded, shifted map: tokens attend within one region only.

    Padding pixels get their own ids, so real queries never see padding; a shifted map is cut
    into the usual Swin regions so wrapped-around pixels do not mix.
    """
    ids = torch.zeros(hp, wp, dtype=torch.long)
    cnt = 0
    for hs in _slices(hp, win[0], shift[0]):
        for ws in _slices(wp, win[1], shift[1]):
            ids[hs, ws] = cnt
            cnt += 1
    pad = torch.zeros(hp, wp, dtype=torch.bool)
    pad[h:, :] = True
    pad[:, w:] = True
    # The roll moves padding too: apply the same shift as the features.
    pad = torch.roll(pad, shifts=(-shift[0], -shift[1]), dims=(0, 1))
    return ids * 2 + pad.long()


def _slices(size: int, win: int, shift: int) -> list[slice]:
    if shift == 0:
        return [slice(0, size)]
    return [slice(0, size - win), slice(size - win, size - shift), slice(size - shift, size)]


def partition(x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
    """``(B, H, W, C) -> (B, nW, wh*ww, C)`` (H, W multiples of the window)."""
    b, h, w, c = x.shape
    x = x.view(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // wh) * (w // ww), wh * ww, c)


def merge(x: torch.Tensor, h: int, w: int, wh: int, ww: int) -> torch.Tensor:
    """Inverse of :func:`partition`: ``(B, nW, wh*ww, C) -> (B, H, W, C)``."""
    b, _, _, c = x.shape
    x = x.view(b, h // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


class WindowAttention(nn.Module):
    """L: multi-head self-attention inside non-overlapping ``w x w`` windows.

    Swin eq. (4): ``Attention(Q, K, V) = SoftMax(Q K^T / sqrt(d) + B) V`` with ``B`` read from a
    learned ``(2w-1)^2 x heads`` relative position bias table. Any input size works: a map not
    divisible by the window is padded (padding is masked out), a map smaller than the window
    uses one window of the map's size.

    Args:
        dim: channels.
        heads: attention heads.
        window: window side ``w``.

    Shapes: ``(B, H, W, dim) -> (B, H, W, dim)``.
    """

    shift: int = 0
    relative_position_index: torch.Tensor

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads = heads
        self.window = window
        self.fused_attn = True
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        trunc_normal_(self.relative_position_bias_table, std=0.02)
        # Not persistent, as timm's Swin: derived from the window, never stored in checkpoints.
        self.register_buffer(
            "relative_position_index",
            relative_position_index(window, window, window),
            persistent=False,
        )
        # A few masks, most recently used last: input sizes vary (a sweep over img_size,
        # visualising images of another size), and a dict per size would grow without bound.
        self._mask_cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def _geometry(self, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """Window and shift actually used on an ``h x w`` map (Swin: no shift if it fits)."""
        wh, ww = min(self.window, h), min(self.window, w)
        sh = self.shift if h > self.window else 0
        sw = self.shift if w > self.window else 0
        return (wh, ww), (sh, sw)

    def _bias(self, win: tuple[int, int]) -> torch.Tensor:
        """Relative position bias ``(heads, N, N)`` for a window of size ``win``."""
        if win == (self.window, self.window):
            idx = self.relative_position_index
        else:  # a map smaller than the window: the table's centre part
            idx = relative_position_index(*win, self.window).to(
                self.relative_position_index.device
            )
        n = win[0] * win[1]
        return self.relative_position_bias_table[idx.view(-1)].view(n, n, -1).permute(2, 0, 1)

    def _mask(self, h, w, hp, wp, win, shift, device) -> torch.Tensor | None:
        """``(nW, 1, N, N)`` additive mask, or None when no window needs one."""
        if shift == (0, 0) and (hp, wp) == (h, w):
            return None
        key = (h, w, win, shift, device)
        if key in self._mask_cache:
            self._mask_cache.move_to_end(key)
            return self._mask_cache[key]
        ids = window_regions(h, w, hp, wp, win, shift)
        ids = partition(ids[None, :, :, None], *win)[0, :, :, 0]  # nW, N
        same = ids[:, :, None] == ids[:, None, :]
        mask = torch.zeros(same.shape).masked_fill(~same, MASKED)[:, None].to(device)
        self._mask_cache[key] = mask
        if len(self._mask_cache) > MASK_CACHE_SIZE:
            self._mask_cache.popitem(last=False)
        return mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        (wh, ww), (sh, sw) = self._geometry(h, w)
        pad_h, pad_w = (-h) % wh, (-w) % ww
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        if sh or sw:
            x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
        windows = partition(x, wh, ww)  # B, nW, N, C
        nw, n = windows.shape[1], windows.shape[2]
        qkv = self.qkv(windows).view(b, nw, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each B, nW, heads, N, d
        bias = self._bias((wh, ww))
        mask = self._mask(h, w, hp, wp, (wh, ww), (sh, sw), x.device)
        if mask is not None:
            bias = bias + mask  # nW, heads, N, N
        out, _ = attend(q, k, v, bias.to(q.dtype), fused=self.fused_attn)
        out = out.transpose(2, 3).reshape(b, nw, n, c)
        x = merge(self.proj(out), hp, wp, wh, ww)
        if sh or sw:
            x = torch.roll(x, shifts=(sh, sw), dims=(1, 2))
        return x[:, :h, :w].contiguous() if (pad_h or pad_w) else x
