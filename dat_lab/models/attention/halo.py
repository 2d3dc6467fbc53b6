"""Blocked ("halo") layout of neighborhood attention: query tiles, their key halos, the bias.

Neighborhood attention (natten's semantics, see :mod:`.neighborhood`) gives every query its own
``k x k`` window, so a plain-PyTorch gather makes ``k^2`` copies of every key and value. The
blocked form (HaloNet's blocked local attention, Vaswani et al. 2021, section 3.1, with
natten's window rule) avoids that:

- the map is cut into ``T x T`` query tiles (the last row/column of tiles is padded; padded
  queries get the last window, are computed and cropped);
- the keys and values of a tile are the ``(T + k - 1)^2`` halo covering every window in it,
  starting at the window start of the tile's first query, clamped to the map as natten clamps
  window starts, and gathered once per tile (``((T + k - 1) / T)^2`` copies instead of ``k^2``);
- each tile runs dense attention of its queries over its halo with an additive bias: natten's
  relative position bias ``rpb[(key - query) + k - 1]`` where the key lies in the query's
  window, ``-inf`` elsewhere.

The result equals the per-query gather exactly (the same scores, the same softmax support);
only the masked ``-inf`` terms, which contribute exact zeros, are added. The bias of a tile
(a gather from the flattened table plus one ``-inf`` slot) is the same for every interior
tile: it is built for the few distinct tile patterns and copied to the tiles, so the backward
sums into the small table over those patterns only. The layout depends only on the map
size, the kernel and the tile, so :func:`halo_layout` is cached and shared by all blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import torch

LAYOUT_CACHE_SIZE = 16  # (map size, kernel, tile, device) layouts kept, shared by all N blocks


def window_starts(length: int, kernel: int, device=None) -> torch.Tensor:
    """First key index of each query's window along one axis (``length >= kernel``).

    natten's ``get_window_start`` (dilation 1): ``clamp(i - k // 2, 0, length - k)``. Indices
    past the map (padded queries of the last tile) get the last window.
    """
    i = torch.arange(length, device=device)
    return (i - kernel // 2).clamp(0, length - kernel)


@dataclass(frozen=True)
class AxisLayout:
    """Tiling of one axis: ``n`` tiles of ``tile`` queries, each with a ``halo`` of keys.

    Attributes:
        tile: queries per tile (``min(T, length)``).
        n: number of tiles (``ceil(length / tile)``).
        halo: keys per tile (``min(tile + k - 1, length)``).
        keys: ``(n * halo,)`` key index of every tile's halo, tile by tile.
        rel: ``(n, tile, halo)`` ``key - query + k - 1``, clamped into the table.
        inside: ``(n, tile, halo)`` whether the key lies in the query's window.
    """

    tile: int
    n: int
    halo: int
    keys: torch.Tensor
    rel: torch.Tensor
    inside: torch.Tensor


def axis_layout(length: int, kernel: int, tile: int, device=None) -> AxisLayout:
    """The tiles, halos and window membership along one axis of ``length >= kernel``."""
    tile = min(tile, length)
    n = -(-length // tile)
    halo = min(tile + kernel - 1, length)
    queries = torch.arange(n * tile, device=device).view(n, tile)
    starts = window_starts(n * tile, kernel, device).clamp(max=length - kernel).view(n, tile)
    # The first query's window start, clamped so that the halo stays inside the map; every
    # window of the tile then lies in the halo (starts rise by at most 1 per query).
    first = starts[:, 0].clamp(max=length - halo)
    keys = first[:, None] + torch.arange(halo, device=device)  # n, halo
    inside = (keys[:, None, :] >= starts[..., None]) & (
        keys[:, None, :] < starts[..., None] + kernel
    )
    rel = (keys[:, None, :] - queries[..., None] + kernel - 1).clamp(0, 2 * kernel - 2)
    return AxisLayout(tile, n, halo, keys.flatten(), rel, inside)


@dataclass(frozen=True)
class HaloLayout:
    """Both axes of one map, and the bias index of its distinct tile patterns.

    Interior tiles share one pattern of (query, key) offsets; only tiles at a border differ.
    ``bias_index``: ``(patterns, T_h T_w, halo_h halo_w)`` index into the flattened
    ``(2k - 1)^2`` table followed by one ``-inf`` slot (index ``(2k - 1)^2``);
    ``tile_pattern``: ``(tiles,)`` the pattern of every tile.
    """

    rows: AxisLayout
    cols: AxisLayout
    bias_index: torch.Tensor
    tile_pattern: torch.Tensor


def _patterns(axis: AxisLayout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distinct (rel, inside) tiles of one axis: their rel, inside and each tile's pattern."""
    flat = torch.cat((axis.rel, axis.inside.long()), dim=-1).flatten(1)
    unique, inverse = torch.unique(flat, dim=0, return_inverse=True)
    unique = unique.view(-1, axis.tile, 2 * axis.halo)
    return unique[..., : axis.halo], unique[..., axis.halo :].bool(), inverse


@lru_cache(maxsize=LAYOUT_CACHE_SIZE)
def halo_layout(h: int, w: int, kernel: int, tile: int, device: torch.device) -> HaloLayout:
    """The blocked layout of an ``h x w`` map (``h, w >= kernel``), cached per size.

    Built on the CPU and then moved to ``device``: these are small integer tables, and
    ``torch.unique`` has no meta kernel (timm builds models on the meta device)."""
    rows = axis_layout(h, kernel, tile)
    cols = axis_layout(w, kernel, tile)
    rel_y, in_y, pat_y = _patterns(rows)
    rel_x, in_x, pat_x = _patterns(cols)
    side = 2 * kernel - 1
    # (Py, 1, Ty, 1, Ly, 1) with (1, Px, 1, Tx, 1, Lx): patterns, queries, halo keys
    index = rel_y[:, None, :, None, :, None] * side + rel_x[None, :, None, :, None, :]
    inside = in_y[:, None, :, None, :, None] & in_x[None, :, None, :, None, :]
    index = index.masked_fill(~inside, side * side)
    shape = (rel_y.shape[0] * rel_x.shape[0], rows.tile * cols.tile, rows.halo * cols.halo)
    tile_pattern = (pat_y[:, None] * rel_x.shape[0] + pat_x[None, :]).flatten()
    return HaloLayout(
        _axis_to(rows, device), _axis_to(cols, device), index.reshape(shape).to(device),
        tile_pattern.to(device),
    )  # fmt: skip


def _axis_to(axis: AxisLayout, device: torch.device) -> AxisLayout:
    return replace(
        axis, keys=axis.keys.to(device), rel=axis.rel.to(device), inside=axis.inside.to(device)
    )
