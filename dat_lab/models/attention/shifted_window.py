"""S: shifted-window attention (Swin SW-MSA)."""

from __future__ import annotations

from dat_lab.models.attention.window import WindowAttention


class ShiftedWindowAttention(WindowAttention):
    """S: window attention on a map cyclically shifted by ``shift`` (Swin eq. 3, SW-MSA).

    Windows then straddle the previous block's window borders; a mask keeps the regions that
    the cyclic shift brought together apart. With the window covering the whole map there is
    nothing to shift (Swin's rule), and S equals L. The official DAT code shifts by
    ``ceil(w / 2)``; Swin by ``w // 2``.

    Args:
        dim, heads, window: as :class:`WindowAttention`.
        shift: cyclic shift in pixels, ``0 < shift < window``.
    """

    def __init__(self, dim: int, heads: int, window: int, shift: int) -> None:
        super().__init__(dim, heads, window)
        if not 0 < shift < window:
            raise ValueError(f"shift must be in 1..{window - 1}, got {shift}")
        self.shift = shift
