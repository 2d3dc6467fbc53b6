"""The ``pathfinder`` task: are the two markers the ends of one snake of dashes?"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dat_lab.data.shapes.drawing import (
    DASH,
    GAP,
    MARKER,
    MAX_TRIES,
    MAX_TURN,
    PLACE_TRIES,
    SAMPLE_STEP,
    SEPARATION,
    STROKE,
    LayoutError,
    stamp,
)


@dataclass
class _Snake:
    """Dashes of one snake: start points (L, 2) and unit directions (L, 2), as x, y."""

    starts: np.ndarray
    directions: np.ndarray
    dash: float

    @property
    def ends(self) -> tuple[np.ndarray, np.ndarray]:
        return self.starts[0], self.starts[-1] + self.dash * self.directions[-1]

    def points(self) -> np.ndarray:
        """Points along the dashes, SAMPLE_STEP or less apart, (L * n, 2)."""
        n = int(self.dash / SAMPLE_STEP) + 2
        t = (np.arange(n) * (self.dash / (n - 1)))[None, :, None]
        return (self.starts[:, None, :] + t * self.directions[:, None, :]).reshape(-1, 2)


def _walk(rng: np.random.Generator, start: np.ndarray, length: int, size: int) -> _Snake | None:
    """A snake of ``length`` dashes from ``start``, turning at most MAX_TURN per dash.

    Each dash tries a few turns and takes the first whose end stays inside the image;
    ``None`` if the walk gets stuck (the caller draws again). Plain floats: this is the
    generator's inner loop.
    """
    dash, step = DASH, DASH + GAP
    low, high = MARKER, size - 1 - MARKER
    x, y = float(start[0]), float(start[1])
    centre = (size - 1) / 2
    angle = math.atan2(centre - y, centre - x)  # the first dash leaves roughly inwards
    spread = math.pi
    turns = rng.uniform(-0.5, 0.5, size=(length, 8))
    starts, directions = [], []
    for i in range(length):
        # Prefer a turn that could go straight on for one more dash: looking ahead keeps the
        # walk from running into a wall it can no longer turn away from.
        reach = (step + dash, dash) if i < length - 1 else (dash,)
        for ahead in reach:
            for turn in turns[i]:
                heading = angle + turn * spread
                dx, dy = math.cos(heading), math.sin(heading)
                if low <= x + ahead * dx <= high and low <= y + ahead * dy <= high:
                    break
            else:
                continue
            break
        else:
            return None
        starts.append((x, y))
        directions.append((dx, dy))
        angle, spread = heading, 2 * MAX_TURN
        x, y = x + step * dx, y + step * dy
    return _Snake(np.array(starts), np.array(directions), dash)


def _random_point(rng: np.random.Generator, size: int) -> np.ndarray:
    return rng.uniform(MARKER, size - 1 - MARKER, size=2)


class _Occupancy:
    """Where a new snake may not go: a half-pixel grid of cells near what is already drawn.

    Cheaper than point-to-point distances (the generator's hot spot); a cell is marked when
    its centre is within the clearance, so the true clearance is kept to within 0.35 px.
    """

    FINE = 2  # cells per pixel

    def __init__(self, size: int):
        self.grid = np.zeros((size * self.FINE,) * 2, dtype=bool)

    def _cells(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cells = np.clip(np.rint(points * self.FINE).astype(np.int64), 0, len(self.grid) - 1)
        return cells[:, 1], cells[:, 0]

    def mark(self, points: np.ndarray, clearance: float) -> None:
        reach = int(math.ceil(clearance * self.FINE))
        offsets = np.arange(-reach, reach + 1)
        ox, oy = np.meshgrid(offsets, offsets)
        near = np.hypot(ox, oy) <= clearance * self.FINE
        ox, oy = ox[near], oy[near]
        iy, ix = self._cells(points)
        iy, ix = iy[:, None] + oy[None, :], ix[:, None] + ox[None, :]
        keep = (iy >= 0) & (iy < len(self.grid)) & (ix >= 0) & (ix < len(self.grid))
        self.grid[iy[keep], ix[keep]] = True

    def is_free(self, points: np.ndarray) -> bool:
        return not self.grid[self._cells(points)].any()


def _place_snake(
    rng: np.random.Generator,
    start: np.ndarray | None,
    taken: _Occupancy,
    size: int,
    path_length: int,
) -> _Snake | None:
    """A snake (from ``start``, or from a random point) that avoids the ``taken`` cells."""
    for _ in range(PLACE_TRIES):
        origin = _random_point(rng, size) if start is None else start
        snake = _walk(rng, origin, path_length, size)
        if snake is not None and taken.is_free(snake.points()):
            return snake
    return None


def pathfinder_layout(
    rng: np.random.Generator, label: int, size: int, path_length: int, distractors: int
) -> tuple[list[_Snake], tuple[np.ndarray, np.ndarray]] | None:
    """Snakes and marker centres of one image, or ``None`` to draw again.

    Label 1: the first snake runs from marker 1 to marker 2. Label 0: the markers are where a
    first snake would have ended (so their distance has the positive's distribution), but one
    snake starts at each marker instead. Then a second main snake (label 1 only) and the
    distractors go anywhere clear of the others.
    """
    gap, marker_gap = SEPARATION, MARKER + SEPARATION
    joining = _place_snake(rng, None, _Occupancy(size), size, path_length)
    if joining is None:
        return None
    e1, e2 = joining.ends
    if np.linalg.norm(e1 - e2) < 2 * marker_gap:  # both classes: markers clearly apart
        return None
    taken = _Occupancy(size)
    if label == 1:
        starts: list[np.ndarray | None] = [None]
        snakes = [joining]
        taken.mark(np.stack([e1, e2]), marker_gap)
    else:
        taken.mark(e2[None, :], marker_gap)
        from_e1 = _place_snake(rng, e1, taken, size, path_length)
        if from_e1 is None:
            return None
        snakes, starts = [from_e1], [e2]
        taken = _Occupancy(size)
        taken.mark(e1[None, :], marker_gap)
    taken.mark(snakes[0].points(), gap)
    for start in starts + [None] * distractors:
        snake = _place_snake(rng, start, taken, size, path_length)
        if snake is None:
            return None
        snakes.append(snake)
        taken.mark(snake.points(), gap)
        if start is not None:  # the marker this snake starts at is now an obstacle too
            taken.mark(start[None, :], marker_gap)
    return snakes, (e1, e2)


def pathfinder_image(
    rng: np.random.Generator, label: int, size: int, path_length: int, distractors: int
) -> np.ndarray:
    for _ in range(MAX_TRIES):
        layout = pathfinder_layout(rng, label, size, path_length, distractors)
        if layout is not None:
            break
    else:
        raise LayoutError(
            f"pathfinder: no layout with path_length={path_length}, distractors={distractors} "
            f"fits a {size} px image after {MAX_TRIES} tries; use shorter or fewer snakes, "
            "or a larger img_size"
        )
    snakes, markers = layout
    canvas = np.zeros((size, size), dtype=np.float32)
    stamp(canvas, np.concatenate([s.points() for s in snakes]), STROKE)
    stamp(canvas, np.stack(markers), MARKER)
    return canvas
