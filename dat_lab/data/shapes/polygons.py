"""The polygon tasks: ``svrt`` (same shape twice?) and ``aligned`` (in a row or a column?)."""

from __future__ import annotations

import math

import numpy as np

from dat_lab.data.shapes.drawing import (
    ALIGN_RADIUS,
    MAX_TRIES,
    PLACE_TRIES,
    SEPARATION,
    STROKE,
    SVRT_RADIUS,
    LayoutError,
    segment_points,
    stamp,
)


def _polygon(rng: np.random.Generator, vertices: int) -> np.ndarray:
    """Corners of a random star-shaped polygon of radius <= 1 around the origin, (V, 2)."""
    base = 2 * math.pi * np.arange(vertices) / vertices
    angles = base + rng.uniform(-0.35, 0.35, vertices) * 2 * math.pi / vertices
    angles += rng.uniform(0, 2 * math.pi)
    radii = rng.uniform(0.4, 1.0, vertices)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _outline(corners: np.ndarray) -> np.ndarray:
    closed = np.concatenate([corners, corners[:1]])
    return np.concatenate(
        [segment_points(a, b) for a, b in zip(closed[:-1], closed[1:], strict=True)]
    )


def svrt_image(
    rng: np.random.Generator, label: int, size: int, vertices: int, min_distance: float
) -> np.ndarray:
    largest = SVRT_RADIUS * size * 1.15
    if min_distance * size > 0.9 * math.sqrt(2) * (size - 3.0 - 2 * largest):  # ~corner to corner
        raise LayoutError(
            f"svrt: two shapes of radius up to {largest:.1f} px cannot be {min_distance} x "
            f"{size} px apart; lower min_distance or raise img_size"
        )
    radius = SVRT_RADIUS * size * rng.uniform(0.85, 1.15)
    low, high = radius + 1.0, size - 2.0 - radius
    for _ in range(MAX_TRIES):
        centres = rng.uniform(low, high, size=(2, 2))
        if np.linalg.norm(centres[0] - centres[1]) >= min_distance * size:
            break
    else:
        raise LayoutError(f"svrt: could not place two shapes {min_distance} x {size} px apart")
    first = _polygon(rng, vertices)
    second = first if label == 1 else _polygon(rng, vertices)
    canvas = np.zeros((size, size), dtype=np.float32)
    for shape, centre in zip((first, second), centres, strict=True):
        stamp(canvas, _outline(shape * radius + centre), STROKE)
    return canvas


def _spaced_pair(rng: np.random.Generator, low: float, high: float, apart: float) -> np.ndarray:
    """Two coordinates in [low, high] at least ``apart`` from each other, in random order."""
    gap = rng.uniform(apart, high - low)
    first = rng.uniform(low, high - gap)
    return np.array([first, first + gap])[rng.permutation(2)]


def aligned_image(
    rng: np.random.Generator,
    label: int,
    size: int,
    vertices: int,
    min_distance: float,
    misalign: float,
    distractors: int,
) -> np.ndarray:
    """Two filled polygons far apart in one row (label 1) or one column (label 0), among
    ``distractors`` outlined polygons placed anywhere clear of them.

    Each shape's position has the same distribution in both classes; only the direction
    from one filled shape to the other tells the classes apart.
    """
    radius = ALIGN_RADIUS * size * rng.uniform(0.85, 1.15)
    low, high = radius + 1.0, size - 2.0 - radius
    largest = ALIGN_RADIUS * size * 1.15
    if min_distance * size > size - 3.0 - 2 * largest:
        raise LayoutError(
            f"aligned: two shapes of radius up to {largest:.1f} px cannot be {min_distance} x "
            f"{size} px apart in one row; lower min_distance or raise img_size"
        )
    for _ in range(MAX_TRIES):
        keys = aligned_pair(rng, label, low, high, min_distance * size, misalign * size)
        others = _scatter(rng, keys, distractors, low, high, 2 * radius + SEPARATION)
        if others is not None:
            break
    else:
        raise LayoutError(
            f"aligned: no room for {distractors} distractors beside the pair in {size} px; "
            "use fewer or a larger img_size"
        )
    canvas = np.zeros((size, size), dtype=np.float32)
    for centre in keys:  # star-shaped around its centre: nested outlines fill it
        corners = _polygon(rng, vertices) * radius
        rings = np.linspace(1.0, 0.0, int(radius / STROKE) + 1, endpoint=False)
        stamp(canvas, np.concatenate([_outline(corners * t + centre) for t in rings]), STROKE)
    for centre in others:
        stamp(canvas, _outline(_polygon(rng, vertices) * radius + centre), STROKE)
    return canvas


def aligned_pair(
    rng: np.random.Generator, label: int, low: float, high: float, apart: float, misalign: float
) -> np.ndarray:
    """Centres (2, 2) as x, y: ``apart`` or more apart along a row (label 1) or a column, and
    at most ``misalign`` apart across it.

    One centre's x and y have the same distribution in both classes, so its position alone
    says nothing: a pair spans the image, and a row drawn uniformly would put row pairs at the
    left and right edges, column pairs at top and bottom. So the shared row is drawn like one
    end of a pair, and the second shape's offset from it by a Metropolis step whose stationary
    law is that same end-of-a-pair density (so both shapes' across coordinates keep it).
    """
    along = _spaced_pair(rng, low, high, apart)
    first = _spaced_pair(rng, low, high, apart)[0]
    proposal = first + rng.uniform(-misalign, misalign)
    here = _pair_end_density(first - low, high - low, apart)
    there = _pair_end_density(proposal - low, high - low, apart)
    second = proposal if here > 0 and rng.uniform() * here < there else first
    across = np.array([first, second])
    return np.stack([along, across], axis=1) if label == 1 else np.stack([across, along], axis=1)


def _pair_end_density(t: float, span: float, apart: float) -> float:
    """Density (times ``span - apart``) of one end of :func:`_spaced_pair` at ``low + t``.

    The lower end is ``t ~ U[0, span - gap]`` with ``gap ~ U[apart, span]``, so its density
    is ``ln((span - apart) / t)`` for ``0 < t < span - apart``; the upper end mirrors it.
    """

    def lower(u: float) -> float:
        return math.log((span - apart) / u) if 0 < u < span - apart else 0.0

    return 0.5 * (lower(t) + lower(span - t))


def _scatter(
    rng: np.random.Generator, fixed: np.ndarray, count: int, low: float, high: float, gap: float
) -> np.ndarray | None:
    """``count`` random points in [low, high]^2, each ``gap`` or more from all others (and
    from ``fixed``); ``None`` when one does not fit in PLACE_TRIES draws."""
    points = list(fixed)
    for _ in range(count):
        for _ in range(PLACE_TRIES):
            point = rng.uniform(low, high, size=2)
            if min(np.linalg.norm(point - p) for p in points) >= gap:
                points.append(point)
                break
        else:
            return None
    return np.array(points[len(fixed) :]).reshape(-1, 2)
