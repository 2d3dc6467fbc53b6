"""``shapes``: seeded synthetic long-range tasks (Pathfinder, SVRT problem 1 and an SVRT-style
spatial relation), cached on disk.

All three tasks put the evidence for the label in parts of the image that lie far apart, so a
model has to combine distant places in one decision - where attention looks matters
(docs/design.md §8).

- ``pathfinder`` (Linsley et al., NeurIPS 2018; LRA Pathfinder-32, Tay et al., ICLR 2021): two
  main smoothly curving paths of dashes with faint gaps ("snakes") of ``path_length`` dashes plus
  ``distractors`` more snakes of the same length, and two circle markers. Label 1: the markers
  sit on the two ends of the same snake; label 0: each marker ends a different snake. In a
  negative the second marker is placed where a (not drawn) snake from the first would have
  ended, so the distance between the markers has the same distribution in both classes and
  only following the path tells them apart. Snakes never come closer than a gap to each
  other or to a marker, so "connected" is unambiguous.
- ``svrt`` (Fleuret et al., PNAS 2011, problem 1): two random closed polygon outlines of
  ``vertices`` corners whose centres are at least ``min_distance`` x image side apart; both
  share one jittered scale. Label 1: the same shape (a translated copy); label 0: two shapes.
- ``aligned`` (an SVRT-style spatial relation; spatial-relation problems are the ones CNNs and
  transformers learn fast, same/different ones hard: Kim, Ricci & Serre, "Not-so-CLEVR", 2018):
  two filled random polygons at least ``min_distance`` x image side apart along a row (label 1)
  or a column (label 0), off it by up to ``misalign`` x side, among ``distractors`` outlined
  polygons. One shape's position has exactly the same distribution in both classes (see
  ``_aligned_pair``), so only relating the two filled shapes gives the label. The defaults
  (``misalign`` near ``min_distance``, 4 distractors) make the relation one to read
  precisely, across the image, past clutter: dat_nano needs 3-6 of its 8 epochs to get it.

Images are grey, 1 channel, uint8 in [0, 255] (ink bright on black), shape N x 1 x S x S.
Labels are int64 and exactly balanced: sample ``i`` has label ``i % 2``. Sample ``i`` of a
split is drawn from its own random stream ``(seed, split, i)``, so a data set is a function
of its parameters alone (same seed -> byte-identical arrays) and a larger set starts with the
samples of a smaller one. Strokes and dashes have the same size in pixels at every
``img_size``; SVRT and aligned shapes scale with the image.

Generated sets are cached as ``.npz`` files under ``cache_dir`` (default
``~/.cache/dat_lab/shapes``, or ``$XDG_CACHE_HOME/dat_lab/shapes``), named by a hash of every
generation parameter, :data:`GENERATOR_VERSION` and this file's text, and written atomically
(temp file, then rename), so concurrent workers never read a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Bump when the drawing code changes what a given seed produces: old cache files then stop
# matching instead of silently serving images the current code would not make.
GENERATOR_VERSION = 1
# The cache key also covers this file's own text, so that an edit which forgets the bump (or
# a work-in-progress generator) cannot be served stale images: any edit regenerates the set.
_SOURCE_HASH = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
SPLITS = ("train", "val")
CLASS_NAMES = {
    "pathfinder": ("apart", "connected"),
    "svrt": ("different", "same"),
    "aligned": ("column", "row"),
}

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


@dataclass(frozen=True)
class ShapesSpec:
    """Everything that determines one generated split (the cache key)."""

    task: str
    params: tuple[tuple[str, float], ...]  # resolved task knobs, sorted by name
    img_size: int
    split: str
    size: int
    seed: int

    def key(self) -> str:
        """A short hash of the spec and the generator version."""
        text = json.dumps(
            {
                "version": GENERATOR_VERSION,
                "source": _SOURCE_HASH,
                **self.__dict__,
                "params": dict(self.params),
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def file_name(self) -> str:
        size = f"{self.img_size}px-{self.split}-{self.size}"
        return f"{self.task}-{size}-seed{self.seed}-{self.key()}.npz"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dat_lab/shapes``, or ``~/.cache/dat_lab/shapes``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dat_lab" / "shapes"


# ---------------------------------------------------------------------------- drawing


def _stamp(canvas: np.ndarray, points: np.ndarray, radius: float) -> None:
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


def _segment_points(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Evenly spaced points from ``start`` to ``end`` (both included)."""
    n = max(2, int(np.linalg.norm(end - start) / SAMPLE_STEP) + 1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return start[None, :] * (1 - t) + end[None, :] * t


# ---------------------------------------------------------------------------- pathfinder


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


def _pathfinder_layout(
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


def _pathfinder_image(
    rng: np.random.Generator, label: int, size: int, path_length: int, distractors: int
) -> np.ndarray:
    for _ in range(MAX_TRIES):
        layout = _pathfinder_layout(rng, label, size, path_length, distractors)
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
    _stamp(canvas, np.concatenate([s.points() for s in snakes]), STROKE)
    _stamp(canvas, np.stack(markers), MARKER)
    return canvas


# ---------------------------------------------------------------------------- svrt


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
        [_segment_points(a, b) for a, b in zip(closed[:-1], closed[1:], strict=True)]
    )


def _svrt_image(
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
        _stamp(canvas, _outline(shape * radius + centre), STROKE)
    return canvas


def _spaced_pair(rng: np.random.Generator, low: float, high: float, apart: float) -> np.ndarray:
    """Two coordinates in [low, high] at least ``apart`` from each other, in random order."""
    gap = rng.uniform(apart, high - low)
    first = rng.uniform(low, high - gap)
    return np.array([first, first + gap])[rng.permutation(2)]


def _aligned_image(
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
        keys = _aligned_pair(rng, label, low, high, min_distance * size, misalign * size)
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
        _stamp(canvas, np.concatenate([_outline(corners * t + centre) for t in rings]), STROKE)
    for centre in others:
        _stamp(canvas, _outline(_polygon(rng, vertices) * radius + centre), STROKE)
    return canvas


def _aligned_pair(
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


# ---------------------------------------------------------------------------- data sets

_TASKS: dict[str, Callable[..., np.ndarray]] = {
    "pathfinder": _pathfinder_image,
    "svrt": _svrt_image,
    "aligned": _aligned_image,
}


def generate(spec: ShapesSpec) -> tuple[np.ndarray, np.ndarray]:
    """Draw one split: uint8 images (N, 1, S, S) and int64 labels (N,), ``label[i] = i % 2``."""
    draw = _TASKS[spec.task]
    params = dict(spec.params)
    split_code = SPLITS.index(spec.split)
    images = np.empty((spec.size, 1, spec.img_size, spec.img_size), dtype=np.uint8)
    labels = np.arange(spec.size, dtype=np.int64) % 2
    for i in range(spec.size):
        rng = np.random.default_rng([spec.seed, split_code, i])
        canvas = draw(rng, int(labels[i]), spec.img_size, **params)
        images[i, 0] = np.round(canvas * 255).astype(np.uint8)
    return images, labels


def check_drawable(task: str, params: dict[str, int | float], img_size: int) -> None:
    """Draw one image of each label, raising LayoutError if the settings cannot be drawn."""
    rng = np.random.default_rng(0)
    for label in (0, 1):
        _TASKS[task](rng, label, img_size, **params)


def _read_cache(file: Path, spec: ShapesSpec) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached arrays, or ``None`` if the file is missing, unreadable or of the wrong shape."""
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as data:
            images, labels = data["images"], data["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        log.warning("ignoring unreadable shapes cache %s (%s)", file, err)
        return None
    shape = (spec.size, 1, spec.img_size, spec.img_size)
    if images.shape != shape or images.dtype != np.uint8 or labels.shape != (spec.size,):
        log.warning("ignoring shapes cache %s: wrong shape or dtype", file)
        return None
    return images, labels.astype(np.int64)


def _write_atomic(file: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write the .npz beside its final name, then rename (atomic on one file system)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=file.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, images=images, labels=labels)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_or_generate(spec: ShapesSpec, cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The split from ``cache_dir`` if cached there, else generated and cached."""
    file = cache_dir / spec.file_name()
    cached = _read_cache(file, spec)
    if cached is not None:
        return cached
    log.info("generating %s (%d images) into %s", spec.task, spec.size, file)
    images, labels = generate(spec)
    _write_atomic(file, images, labels)
    return images, labels
