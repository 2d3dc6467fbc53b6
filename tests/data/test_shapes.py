"""shapes: seeded, balanced, long-range, cached once and atomically."""

from __future__ import annotations

import numpy as np
import pytest

from dat_lab.data import shapes
from dat_lab.data.shapes import ShapesSpec, generate, load_or_generate, pathfinder, polygons

PATHFINDER = (("distractors", 0), ("path_length", 5))
SVRT = (("min_distance", 0.5), ("vertices", 6))
ALIGNED = (("distractors", 2), ("min_distance", 0.3), ("misalign", 0.28), ("vertices", 6))
TASKS = [("pathfinder", PATHFINDER), ("svrt", SVRT), ("aligned", ALIGNED)]


def spec(task="pathfinder", params=PATHFINDER, size=64, seed=0, split="train", img_size=32):
    return ShapesSpec(task, params, img_size, split, size, seed)


@pytest.mark.parametrize("task, params", TASKS)
def test_same_seed_gives_identical_bytes_and_another_seed_does_not(task, params):
    a_images, a_labels = generate(spec(task, params, seed=7))
    b_images, b_labels = generate(spec(task, params, seed=7))
    assert a_images.tobytes() == b_images.tobytes()
    assert np.array_equal(a_labels, b_labels)
    other, _ = generate(spec(task, params, seed=8))
    assert not np.array_equal(a_images, other)
    val, _ = generate(spec(task, params, seed=7, split="val"))
    assert not np.array_equal(a_images, val)


@pytest.mark.parametrize("task, params", TASKS)
def test_arrays_are_grey_uint8_with_exactly_balanced_labels(task, params):
    images, labels = generate(spec(task, params, size=101))
    assert images.shape == (101, 1, 32, 32) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [51, 50]
    assert images.max() == 255 and images.min() == 0
    ink = (images > 0).reshape(101, -1).mean(1)
    assert (ink > 0.03).all()  # every image has been drawn on


def test_a_larger_set_starts_with_the_smaller_one():
    small, _ = generate(spec(size=10))
    large, _ = generate(spec(size=30))
    assert np.array_equal(small, large[:10])


def test_pathfinder_marker_distance_does_not_give_the_label_away():
    """Negatives put the second marker where a joining snake would end, so the distance
    between the markers has the same distribution in both classes."""
    rng = np.random.default_rng(0)
    distances: dict[int, list[float]] = {0: [], 1: []}
    for i in range(600):
        label = i % 2
        layout = None
        while layout is None:
            layout = pathfinder.pathfinder_layout(rng, label, 32, 5, 0)
        e1, e2 = layout[1]
        distances[label].append(float(np.linalg.norm(e1 - e2)))
    pos, neg = np.array(distances[1]), np.array(distances[0])
    assert abs(pos.mean() - neg.mean()) < 0.5  # px, on means of ~15 px
    assert abs(np.median(pos) - np.median(neg)) < 0.75


def test_svrt_shapes_are_at_least_min_distance_apart():
    """Two shapes, never touching: the ink splits into two blobs far apart."""
    images, _ = generate(spec("svrt", (("min_distance", 0.55), ("vertices", 5)), size=20))
    for image in images[:, 0]:
        ys, xs = np.nonzero(image)
        spread = max(xs.max() - xs.min(), ys.max() - ys.min())
        assert spread >= 0.55 * 32


def aligned_pairs(label, count=400, size=32, apart=0.3, misalign=0.28):
    """Centres of the two filled shapes of ``count`` aligned layouts, (count, 2, 2) as x, y."""
    rng = np.random.default_rng(label)
    return np.stack([
        polygons.aligned_pair(rng, label, 4.0, size - 6.0, apart * size, misalign * size)
        for _ in range(count)
    ])  # fmt: skip


@pytest.mark.parametrize("label, along", [(1, 0), (0, 1)])  # row: along x; column: along y
def test_aligned_pair_shares_a_row_or_a_column_by_label(label, along):
    pairs = aligned_pairs(label)
    delta = np.abs(pairs[:, 0] - pairs[:, 1])
    assert (delta[:, along] >= 0.3 * 32 - 1e-9).all()
    assert (delta[:, 1 - along] <= 0.28 * 32 + 1e-9).all()
    assert (delta[:, 1 - along] < delta[:, along]).all()  # never ambiguous


def test_aligned_one_shape_position_does_not_give_the_label_away():
    """A row drawn uniformly would put row pairs at the left and right edges: the distance of
    one shape from the vertical mid-line would then tell rows from columns."""
    rows, columns = aligned_pairs(1, 4000), aligned_pairs(0, 4000)
    for shape in (0, 1):
        for axis in (0, 1):
            from_mid_rows = np.abs(rows[:, shape, axis] - 16.0)
            from_mid_columns = np.abs(columns[:, shape, axis] - 16.0)
            # Means of ~8 px, standard error of the difference ~0.1 px; a uniform row: ~0.5.
            assert abs(from_mid_rows.mean() - from_mid_columns.mean()) < 0.3


@pytest.mark.parametrize("distractors", [0, 3])
def test_aligned_draws_two_filled_shapes_and_the_distractors_apart(distractors):
    from scipy import ndimage

    params = (("distractors", distractors), ("min_distance", 0.3), ("misalign", 0.1),
              ("vertices", 6))  # fmt: skip
    images, _ = generate(spec("aligned", params, size=40))
    two_filled = 0
    for image in images[:, 0]:
        blobs, count = ndimage.label(image > 0)
        assert count == 2 + distractors  # no two shapes touch
        # An outline has a dark hole that filling adds; a filled shape has none.
        holes = [ndimage.binary_fill_holes(blobs == b).sum() - (blobs == b).sum()
                 for b in range(1, count + 1)]  # fmt: skip
        two_filled += sum(h == 0 for h in holes) == 2
    # At 32 px a thin outline is sometimes inked through (no hole left): ~1 in 10 distractors.
    assert two_filled >= (0.6 if distractors else 1.0) * len(images)


def test_second_load_reads_the_cache_instead_of_generating(tmp_path):
    s = spec(size=20)
    first_images, first_labels = load_or_generate(s, tmp_path)
    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == [s.file_name()]
    # Overwrite the cache with different (valid) arrays: a regeneration would not return them.
    planted = np.full_like(first_images, 7)
    np.savez(files[0], images=planted, labels=first_labels)
    images, labels = load_or_generate(s, tmp_path)
    assert (images == 7).all() and np.array_equal(labels, first_labels)


def test_cache_key_changes_with_every_generation_parameter():
    base = spec()
    variants = [
        spec(seed=1),
        spec(size=65),
        spec(split="val"),
        spec(img_size=48),
        spec(params=(("distractors", 1), ("path_length", 5))),
        spec("svrt", SVRT),
        spec("aligned", ALIGNED),
        spec(
            "aligned",
            (("distractors", 2), ("min_distance", 0.3), ("misalign", 0.2), ("vertices", 6)),
        ),
    ]
    names = {base.file_name()} | {v.file_name() for v in variants}
    assert len(names) == 1 + len(variants)


def test_unreadable_or_wrong_shape_cache_is_regenerated(tmp_path):
    s = spec(size=12)
    expected, _ = generate(s)
    file = tmp_path / s.file_name()
    file.write_bytes(b"not a zip file")
    images, _ = load_or_generate(s, tmp_path)
    assert np.array_equal(images, expected)
    np.savez(file, images=np.zeros((3, 1, 32, 32), np.uint8), labels=np.zeros(3, np.int64))
    images, _ = load_or_generate(s, tmp_path)
    assert np.array_equal(images, expected)


def test_cache_write_is_atomic_and_leaves_no_temp_file(tmp_path, monkeypatch):
    s = spec(size=6)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        load_or_generate(s, tmp_path)
    assert list(tmp_path.iterdir()) == []  # no partial .npz under the final name, no .tmp
    monkeypatch.undo()
    load_or_generate(s, tmp_path)
    assert [f.suffix for f in tmp_path.iterdir()] == [".npz"]


@pytest.mark.parametrize(
    "task, params, img_size",
    [
        ("pathfinder", {"path_length": 12, "distractors": 6}, 32),
        ("svrt", {"vertices": 6, "min_distance": 0.6}, 16),
        ("aligned", {"vertices": 6, "min_distance": 0.6, "misalign": 0.0, "distractors": 0}, 16),
        ("aligned", {"vertices": 6, "min_distance": 0.3, "misalign": 0.1, "distractors": 32}, 32),
    ],
)
def test_settings_that_cannot_be_drawn_raise_layout_error(task, params, img_size):
    with pytest.raises(shapes.LayoutError, match="img_size"):
        shapes.check_drawable(task, params, img_size)


@pytest.mark.parametrize(
    "knobs, key, words",
    [
        ({"task": "aligned", "misalign": 0.3}, "misalign", "got misalign 0.3, min_distance 0.3"),
        (
            {"task": "aligned", "min_distance": 0.5, "misalign": 0.5},
            "misalign",
            "[0, min_distance)",
        ),
        ({"task": "aligned", "misalign": -0.1}, "misalign", "[0, min_distance)"),
        ({"task": "aligned", "min_distance": 0.2}, "min_distance", "got misalign 0.28"),
        ({"task": "pathfinder", "misalign": 0.1}, "misalign", "aligned knob"),
        ({"task": "svrt", "misalign": 0.1}, "misalign", "aligned knob"),
        ({"task": "aligned", "path_length": 3}, "path_length", "pathfinder knob"),
        ({"task": "aligned", "distractors": 33}, "distractors", "0..32"),
    ],
)
def test_bad_aligned_knobs_are_refused_by_key(knobs, key, words):
    from dat_lab.data.config import ShapesConfig
    from dat_lab.schema import ConfigError

    with pytest.raises(ConfigError) as info:
        ShapesConfig(**knobs)
    assert info.value.key == key and words in info.value.message


def test_aligned_knobs_shared_with_other_tasks_are_accepted_and_resolved():
    from dat_lab.data.config import ShapesConfig

    cfg = ShapesConfig(task="aligned", vertices=5, distractors=4, misalign=0.28, min_distance=0.3)
    assert cfg.params() == {"vertices": 5, "min_distance": 0.3, "misalign": 0.28, "distractors": 4}
    defaults = ShapesConfig(task="aligned").params()
    assert defaults == {"vertices": 6, "min_distance": 0.3, "misalign": 0.28, "distractors": 4}
