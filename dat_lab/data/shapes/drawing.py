"""Geometry shared by the shapes tasks, and antialiased strokes on a float canvas."""

from __future__ import annotations

import math

import numpy as np

# Geometry in pixels, the same at every img_size: a larger image holds longer and more snakes,
# as Pathfinder-128 (LRA Path-X) keeps the paddles of Pathfinder-32.
DASH = 2.6  # length of one dash ("paddle")
GAP = 1.4  # gap between dashes
STROKE = 0.55  # half-width of a stroke (plus 0.5 px of antialiasing)
MARKER = 1.6  # radius of a Pathfinder endpoint circle
SEPARATION = 2.0  # least distance between two snakes, or a snake and a marker's edge
MAX_TURN = math.radians(35)  # largest change of direction from one dash to the next
SVRT_RADIUS = 0.19  # polygon radius as a fraction of the image side
ALIGN_RADIUS = 0.1  # aligned: smaller shapes than svrt, so a row has room for both far apart
SAMPLE_STEP = 0.3  # spacing of the points a stroke is drawn from
PLACE_TRIES = 20  # tries to place one snake clear of the others
MAX_TRIES = 1000  # redraws of one image before giving up (only impossible settings get there)


class LayoutError(RuntimeError):
    """The requested snakes or shapes do not fit in the image."""


def stamp(canvas: np.ndarray, points: np.ndarray, radius: float) -> None:
    """Draw antialiased discs of ``radius`` at ``points`` ((M, 2) as x, y), keeping the max."""
    if len(points) == 0:
        return
    size = canvas.shape[0]
    reach = int(math.ceil(radius + 1))
    offsets = np.arange(-reach, reach + 2)
    ox, oy = np.meshgrid(offsets, offsets)
    base = np.floor(points).astype(np.int64)
    ix = base[:, :1] + ox.reshape(1, -1)  # (M, K)
    iy = base[:, 1:] + oy.reshape(1, -1)
    dist = np.hypot(ix - points[:, :1], iy - points[:, 1:])
    value = np.clip(radius + 0.5 - dist, 0.0, 1.0)
    keep = (value > 0) & (ix >= 0) & (ix < size) & (iy >= 0) & (iy < size)
    np.maximum.at(canvas, (iy[keep], ix[keep]), value[keep])


def segment_points(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Evenly spaced points from ``start`` to ``end`` (both included)."""
    n = max(2, int(np.linalg.norm(end - start) / SAMPLE_STEP) + 1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return start[None, :] * (1 - t) + end[None, :] * t
