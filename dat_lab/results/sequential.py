"""Decisions that survive peeking: an anytime-valid t confidence sequence for a mean difference.

The paired differences ``x_1, x_2, ...`` (``better - than``, one per seed) are taken as i.i.d.
N(mu, sigma^2) with both unknown. For a hypothesised mean ``m`` write ``y_i = x_i - m``,
``T_n = sum y_i``, ``S_n = sum y_i^2``. The likelihood ratio of the scale-invariant part of the
data (``y / |y|``: what is left once the unknown sigma is integrated out with its right Haar
measure ``dsigma / sigma``) for the standardised effect ``theta = (mu - m) / sigma`` against
``theta = 0``, mixed over ``theta ~ N(0, 1 / c^2)``, has the closed form

    E_n(m) = sqrt(c^2 / (c^2 + n)) * (1 - T_n^2 / ((c^2 + n) S_n)) ** (-n / 2)

(Lai 1976, "On confidence sequences", Ann. Statist. 4(2), with his flat mixture over the mean
replaced by a Gaussian one as in Wang & Ramdas 2023, "Anytime-valid t-tests and confidence
sequences for Gaussian means with unknown variance", arXiv:2310.03722: a test martingale in the
scale-invariant filtration). Under ``mu = m`` it is a nonnegative martingale with ``E_1 = 1``,
so by Ville's inequality ``P(E_n(mu) >= 1/alpha for some n) <= alpha``: the set
``{m : E_n(m) < 1/alpha}`` covers mu at every n at once. Solving ``E_n(m) = 1/alpha`` for
``m`` gives the interval ``mean_n +- half_n`` with, for ``s_n^2 = mean((x - mean_n)^2)``,

    K = sqrt((c^2 + n) / c^2) / alpha,  q = 1 - K ** (-2 / n),
    half_n^2 = q (c^2 + n) s_n^2 / (n - q (c^2 + n))     (infinite when n <= q (c^2 + n)).

The rule intersects these intervals over the looks (every n from 2 on: an intersection of
intervals that each cover mu at all times covers it too), so a verdict, once read, stays. The
anytime p-value of a point ``m`` is ``1 / max_n E_n(m)``; the verdicts and their p-values:

- ``better``: low > margin. p: the smallest alpha at which that holds, ``min 1 / E_n(margin)``
  over the looks whose mean is above the margin (the interval at look n lies above ``margin``
  exactly when its mean does and ``E_n(margin) >= 1/alpha``);
- ``worse``: high < margin, the mirror image;
- ``equivalent`` (``delta > 0``): margin - delta < low and high < margin + delta; it takes
  precedence (it answers an equivalence claim, whose difference may also be resolved);
- ``undecided``: anything else (also an empty intersection, an event of probability <= alpha).

The mixing precision ``c^2`` is :data:`MIXING` (fixed before any data; docs/decisions.md gives
the choice, the earliest possible verdict and the width against a fixed-n t interval).
Several claims: Holm's step-down method over the claims' anytime p-values (:func:`decide_family`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

ALPHA = 0.05
# The prior precision c^2 of theta = mu / sigma (theta ~ N(0, 1/c^2), sd 1/c ~ 1.8 sd units):
# chosen by simulation before any data (docs/decisions.md): with it the first verdict is
# possible at 4 seeds, and the expected seeds to a decision at 1 and 2 sd are near their
# smallest over c^2 in [0.05, 2].
MIXING = 0.3
FIRST_LOOK = 2  # a spread needs two seeds; the rule looks after every seed from the second on

Values = Sequence[float] | np.ndarray  # per-seed differences, in look order


class Verdict(StrEnum):
    BETTER = "better"
    WORSE = "worse"
    EQUIVALENT = "equivalent"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class Decision:
    """One claim at one look.

    ``low``/``high``: the confidence sequence for the mean difference (metric units, not
    shifted by the margin) at ``level``; ``p_value``: the anytime p-value of the verdict's null
    (the smallest alpha at which the rule reaches a verdict, 1 if none); ``p_adjusted``: after
    Holm over a family (= ``p_value`` alone); ``looks``: the seeds beyond the first, each a look
    the rule could have decided at (``n - 1``).
    """

    verdict: Verdict
    low: float
    high: float
    mean: float
    n: int
    p_value: float
    level: float = ALPHA
    p_adjusted: float = math.nan
    margin: float = 0.0
    delta: float = 0.0

    @property
    def looks(self) -> int:
        return max(self.n - 1, 0)

    @property
    def decided(self) -> bool:
        return self.verdict is not Verdict.UNDECIDED


def _log_e(count: np.ndarray, total: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """log E_n at the point the sums were taken about (``T_n``, ``S_n``); no spread: 0."""
    c2 = MIXING
    ratio = np.divide(total**2, (c2 + count) * squares, out=np.zeros_like(squares),
                      where=squares > 0)  # fmt: skip
    return 0.5 * np.log(c2 / (c2 + count)) - 0.5 * count * np.log1p(-ratio)


def _width_factor(count: np.ndarray, alpha: float) -> np.ndarray:
    """``half_n / s_n`` at each look n of ``count`` (inf where the interval is unbounded): it
    depends on n and alpha only (see the module docstring)."""
    c2 = MIXING
    log_k = 0.5 * np.log((c2 + count) / c2) - math.log(alpha)
    q = -np.expm1(-2.0 * log_k / count)
    room = count - q * (c2 + count)
    safe = np.where(room > 0, room, 1.0)
    return np.where(room > 0, np.sqrt(q * (c2 + count) / safe), np.inf)


@dataclass(frozen=True)
class _Path:
    """Running statistics of studies (rows) at every look (columns n = 1..N)."""

    count: np.ndarray
    mean: np.ndarray
    low: np.ndarray  # running max of the looks' lower bounds (from n = FIRST_LOOK)
    high: np.ndarray


def _looks(x: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, mean, half-width) of every look's own interval, for each row of ``x``."""
    count = np.arange(1, x.shape[1] + 1, dtype=float)
    # Centre on the first value: the sums of squares stay exact for large offsets.
    z = x - x[:, :1]
    mean_z = np.cumsum(z, axis=1) / count
    spread = np.sqrt(np.maximum(np.cumsum(z**2, axis=1) / count - mean_z**2, 0.0))
    factor = _width_factor(count, alpha)
    factor[: FIRST_LOOK - 1] = np.inf
    bounded = np.isfinite(factor)
    half = np.where(bounded, spread * np.where(bounded, factor, 0.0), np.inf)
    return np.broadcast_to(count, x.shape), mean_z + x[:, :1], half


def _path(x: np.ndarray, alpha: float) -> _Path:
    count, mean, half = _looks(x, alpha)
    low = np.maximum.accumulate(mean - half, axis=1)
    high = np.minimum.accumulate(mean + half, axis=1)
    return _Path(count, mean, low, high)


def _verdicts(path: _Path, margin: float, delta: float) -> np.ndarray:
    """The verdict code at every look: 0 undecided, 1 better, 2 worse, 3 equivalent."""
    low, high = path.low, path.high
    empty = low > high
    out = np.zeros(low.shape, dtype=np.int8)
    out[(low > margin) & ~empty] = 1
    out[(high < margin) & ~empty] = 2
    if delta > 0:
        out[(low > margin - delta) & (high < margin + delta) & ~empty] = 3
    return out


_CODES = (Verdict.UNDECIDED, Verdict.BETTER, Verdict.WORSE, Verdict.EQUIVALENT)


def _p_beyond(x: np.ndarray, point: float, side: float) -> float:
    """The smallest alpha at which some look's interval lies beyond ``point`` on ``side``
    (+1 above, -1 below): min over those looks of ``1 / E_n(point)``."""
    y = x - point
    count = np.arange(1, len(y) + 1, dtype=float)
    total, squares = np.cumsum(y), np.cumsum(y**2)
    log_e = _log_e(count, total, squares)
    eligible = (side * total > 0) & (count >= FIRST_LOOK)
    if not eligible.any():
        return 1.0
    return float(min(1.0, math.exp(-log_e[eligible].max())))


def _p_value(x: np.ndarray, margin: float, delta: float) -> float:
    """The anytime p-value of reaching any verdict (see the module docstring)."""
    p = min(_p_beyond(x, margin, +1.0), _p_beyond(x, margin, -1.0))
    if delta > 0:
        p_eq = max(_p_beyond(x, margin - delta, +1.0), _p_beyond(x, margin + delta, -1.0))
        p = min(p, p_eq)
    return p


def _checked(diffs: Values, delta: float, alpha: float, margin: float) -> np.ndarray:
    x = np.asarray(diffs, dtype=float).ravel()
    if not np.isfinite(x).all():
        raise ValueError(f"diffs must be finite numbers, got {list(diffs)}")
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not (math.isfinite(delta) and delta >= 0):
        raise ValueError(f"delta must be >= 0, got {delta}")
    if not math.isfinite(margin):
        raise ValueError(f"margin must be finite, got {margin}")
    return x


def decide(
    diffs: Values, delta: float = 0.0, alpha: float = ALPHA, margin: float = 0.0
) -> Decision:
    """The rule's verdict on the per-seed paired differences ``diffs`` (in look order).

    ``delta``: the equivalence margin (0: no equivalence verdict); ``margin``: the difference
    the claim must exceed (``{better: A, than: B, by: m}``: ``better`` when low > m, ``worse``
    when high < m; the same as deciding ``diffs - m``, with the interval left in metric units).
    """
    x = _checked(diffs, delta, alpha, margin)
    n = len(x)
    if n < FIRST_LOOK:
        mean = float(x.mean()) if n else math.nan
        return Decision(Verdict.UNDECIDED, -math.inf, math.inf, mean, n, 1.0, alpha, 1.0,
                        margin, delta)  # fmt: skip
    path = _path(x[None, :], alpha)
    verdict = _CODES[int(_verdicts(path, margin, delta)[0, -1])]
    p = _p_value(x, margin, delta)
    return Decision(verdict, float(path.low[0, -1]), float(path.high[0, -1]),
                    float(path.mean[0, -1]), n, p, alpha, p, margin, delta)  # fmt: skip


def confidence_sequence(diffs: Values, alpha: float = ALPHA) -> tuple[np.ndarray, ...]:
    """(low, high) of each look's own interval, n = 1..N (no intersection; +-inf where
    unbounded): what :func:`decide` intersects."""
    _, mean, half = _looks(_checked(diffs, 0.0, alpha, 0.0)[None, :], alpha)
    return mean[0] - half[0], mean[0] + half[0]


def e_value(diffs: Values, point: float = 0.0) -> np.ndarray:
    """E_n(point) at every look n = 1..N (the mixture likelihood ratio above)."""
    y = _checked(diffs, 0.0, ALPHA, point) - point
    count = np.arange(1, len(y) + 1, dtype=float)
    return np.exp(_log_e(count, np.cumsum(y), np.cumsum(y**2)))


def holm_levels(p_values: Sequence[float], alpha: float = ALPHA) -> tuple[np.ndarray, ...]:
    """Holm's step-down method: (adjusted p, level) per hypothesis. ``level`` is the alpha each
    is judged at: ``alpha / (m - i)`` for the i-th smallest while all before it were rejected,
    and for the rest the level of the first one not rejected."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    thresholds = alpha / (m - np.arange(m))
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    rejected = np.cumprod(p[order] <= thresholds).astype(bool)
    first_kept = int(rejected.sum())
    levels = np.empty(m)
    stop = thresholds[first_kept] if first_kept < m else alpha
    levels[order] = np.where(rejected, thresholds, stop)
    return adjusted, levels


def decide_family(
    diffs_by_claim: Mapping[str, Values],
    deltas: Mapping[str, float] | None = None,
    alpha: float = ALPHA,
    margins: Mapping[str, float] | None = None,
) -> dict[str, Decision]:
    """Every claim of one experiment at this look, Holm-adjusted over the claims.

    Each claim's anytime p-value is Holm-adjusted; a claim is read at the level Holm gives it
    (``alpha / (m - i)`` for the i-th smallest p while the ones before it were decided), so its
    verdict is decided exactly when its adjusted p <= alpha. The p-values only fall as seeds
    come, so the decided set only grows, and the family-wise error holds over all looks.
    """
    deltas, margins = deltas or {}, margins or {}
    names = list(diffs_by_claim)
    single = {
        k: decide(diffs_by_claim[k], deltas.get(k, 0.0), alpha, margins.get(k, 0.0)) for k in names
    }
    if not names:
        return {}
    adjusted, levels = holm_levels([single[k].p_value for k in names], alpha)
    out = {}
    for name, p_adj, level in zip(names, adjusted, levels, strict=True):
        d = decide(diffs_by_claim[name], deltas.get(name, 0.0), float(level),
                   margins.get(name, 0.0))  # fmt: skip
        verdict = d.verdict if p_adj <= alpha else Verdict.UNDECIDED
        out[name] = Decision(verdict, d.low, d.high, d.mean, d.n, d.p_value, float(level),
                             float(p_adj), d.margin, d.delta)  # fmt: skip
    return out


@dataclass(frozen=True)
class Simulation:
    """Seeded studies under the rule: per study the seeds at its first verdict (``max_seeds``
    if none) and that verdict (:class:`Verdict` values)."""

    seeds: np.ndarray
    verdicts: np.ndarray

    @property
    def expected_seeds(self) -> float:
        return float(self.seeds.mean())

    @property
    def decided(self) -> float:
        """The share of studies decided by ``max_seeds``."""
        return float((self.verdicts != Verdict.UNDECIDED.value).mean())


def run_rule(
    x: np.ndarray, delta: float = 0.0, alpha: float = ALPHA, margin: float = 0.0
) -> Simulation:
    """The rule on each row of ``x`` (studies x seeds), stopping at the first verdict."""
    codes = _verdicts(_path(np.asarray(x, dtype=float), alpha), margin, delta)
    hit = codes != 0
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), x.shape[1] - 1)
    verdicts = np.array([c.value for c in _CODES])[codes[np.arange(len(x)), first]]
    return Simulation(first + 1, verdicts)


def simulate(
    effect: float,
    sd: float,
    delta: float = 0.0,
    alpha: float = ALPHA,
    max_seeds: int = 30,
    studies: int = 2000,
    seed: int = 0,
    margin: float = 0.0,
) -> Simulation:
    """``studies`` Gaussian studies (mean ``effect``, spread ``sd``) run under the rule."""
    if not (math.isfinite(effect) and math.isfinite(sd) and sd > 0):
        raise ValueError(f"needs a finite effect and sd > 0, got {effect} and {sd}")
    rng = np.random.default_rng(seed)
    # The rule is scale-invariant: simulate in sd units.
    x = rng.standard_normal((studies, max_seeds)) + effect / sd
    return run_rule(x, delta / sd, alpha, margin / sd)
