"""The seeds a fixed design would have needed: what ``--until-decided`` is measured against.

A fixed design picks its seeds per variant before any run and tests once. For a difference
claim that is the paired t-test of :mod:`dat_lab.results.power` (80% power); for an
equivalence claim, the two one-sided tests (TOST) on paired differences, with the sample size
of Chow, Shao & Wang, *Sample Size Calculations in Clinical Research* (2nd ed., 2008), §3.2.3:
the smallest n with ``sqrt(n) (delta - |mean|) / sd >= t(1 - alpha, n - 1) + t(power, n - 1)``
(a normal-theory approximation; ``t(1 - (1 - power) / 2, ...)`` when the mean is 0). Several
claims share one alpha by Bonferroni (a fixed design has one look, so no sequential cost).
Both use the observed difference and spread: a guide, not a guarantee.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from dat_lab.results.compare import ALPHA
from dat_lab.results.power import MAX_SEEDS, POWER, seeds_needed


def fixed_seeds(
    diffs: Sequence[float], margin: float = 0.0, delta: float = 0.0, claims: int = 1
) -> int | None:
    """Seeds per variant a fixed design needs for one claim, at the spread and mean of the
    paired ``diffs``; None when unknown (fewer than 2, no spread, no difference)."""
    x = np.asarray(diffs, dtype=float)
    if len(x) < 2:
        return None
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    alpha = ALPHA / max(1, claims)
    if delta > 0 and abs(mean - margin) < delta:
        return _tost_seeds(mean - margin, sd, delta, alpha)
    return seeds_needed(mean - margin, sd, paired=True, alpha=alpha)


def _tost_seeds(mean: float, sd: float, delta: float, alpha: float) -> int | None:
    if not (math.isfinite(sd) and sd > 0):
        return None
    beta_q = 1 - (1 - POWER) / 2 if mean == 0 else POWER
    for n in range(2, MAX_SEEDS + 1):
        need = stats.t.ppf(1 - alpha, n - 1) + stats.t.ppf(beta_q, n - 1)
        if math.sqrt(n) * (delta - abs(mean)) / sd >= need:
            return n
    return None
