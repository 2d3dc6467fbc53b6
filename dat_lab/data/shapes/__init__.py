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
  ``polygons.aligned_pair``), so only relating the two filled shapes gives the label. The defaults
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
generation parameter, :data:`GENERATOR_VERSION` and the text of this package's modules, and
written atomically (temp file, then rename), so concurrent workers never read a half-written
file.

Modules: :mod:`.drawing` (geometry and antialiased strokes), :mod:`.pathfinder`,
:mod:`.polygons` (svrt and aligned), :mod:`.dataset` (specs, generation and the cache).
"""

from dat_lab.data.shapes.dataset import (
    CLASS_NAMES,
    GENERATOR_VERSION,
    SPLITS,
    ShapesSpec,
    check_drawable,
    default_cache_dir,
    generate,
    load_or_generate,
)
from dat_lab.data.shapes.drawing import LayoutError

__all__ = [
    "CLASS_NAMES",
    "GENERATOR_VERSION",
    "SPLITS",
    "LayoutError",
    "ShapesSpec",
    "check_drawable",
    "default_cache_dir",
    "generate",
    "load_or_generate",
]
