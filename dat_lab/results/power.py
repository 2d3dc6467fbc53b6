"""How many seeds does a claim need? Power of the t-tests that ``compare`` runs.

From the observed seed-to-seed spread, the smallest number of seeds per variant at which a
two-sided t-test at ``ALPHA`` detects a true difference ``effect`` with probability ``POWER``.
The power is exact for the t statistic under normal noise: with noncentrality
``delta = effect / standard error``, ``P(|T| > t_crit) = nct.sf(t_crit, df, delta) +
nct.cdf(-t_crit, df, delta)`` (``scipy.stats.nct``):

- paired (same seeds on both sides): ``sd`` is the spread of the seed-wise differences,
  ``df = n - 1``, ``delta = effect / (sd / sqrt(n))``;
- independent: ``sd`` is the pooled per-variant spread, ``df = 2n - 2``,
  ``delta = effect / (sd * sqrt(2 / n))`` (Student's test; Welch's with equal n is close).

The spread is an estimate from few seeds, so the answer is a guide, not a guarantee.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from dat_lab.results.compare import ALPHA

POWER = 0.8
MAX_SEEDS = 1000


def power(n: int, effect: float, sd: float, paired: bool, alpha: float = ALPHA) -> float:
    """Probability that the t-test on ``n`` seeds per side rejects when the truth is ``effect``."""
    if n < 2 or not sd > 0:
        return float("nan")
    if paired:
        df, se = n - 1, sd / math.sqrt(n)
    else:
        df, se = 2 * n - 2, sd * math.sqrt(2.0 / n)
    delta = abs(effect) / se
    t_crit = stats.t.ppf(1 - alpha / 2, df)
    upper = stats.nct.sf(t_crit, df, delta)
    lower = stats.nct.cdf(-t_crit, df, delta)  # below alpha / 2, as delta >= 0
    if not math.isfinite(upper):  # nct's series fail far in the tails; a normal T is close
        upper = stats.norm.sf(t_crit - delta)
    # The lower tail underflows to NaN for large delta, where it is 0 to double precision.
    return float(upper + (lower if math.isfinite(lower) else 0.0))


def seeds_needed(
    effect: float, sd: float, paired: bool, target: float = POWER, alpha: float = ALPHA
) -> int | None:
    """The smallest n >= 2 with ``power >= target``; None when unknown (no spread, no effect)
    or above ``MAX_SEEDS``. Bisection: power grows with n."""
    if not (math.isfinite(effect) and effect != 0 and math.isfinite(sd) and sd > 0):
        return None
    if power(MAX_SEEDS, effect, sd, paired, alpha) < target:
        return None
    low, high = 2, MAX_SEEDS
    if power(low, effect, sd, paired, alpha) >= target:
        return low
    while high - low > 1:
        mid = (low + high) // 2
        if power(mid, effect, sd, paired, alpha) >= target:
            high = mid
        else:
            low = mid
    return high


def spread(a: pd.Series, b: pd.Series) -> tuple[float, bool]:
    """(sd, paired) of the comparison of the seed-indexed values ``a`` and ``b``: the sd of
    seed-wise differences when the seeds are the same, else the pooled sd (NaN if unknown)."""
    if len(a) >= 2 and set(a.index) == set(b.index):
        return float((a.sort_index() - b.sort_index()).std(ddof=1)), True
    parts = [s.var(ddof=1) for s in (a, b) if len(s) >= 2]
    return (float(np.sqrt(np.mean(parts))) if parts else float("nan")), False


def add_seeds_needed(
    comparison: pd.DataFrame,
    values: dict[str, pd.Series],
    effects: dict[str, tuple[float, str]],
) -> pd.DataFrame:
    """``comparison`` (rows of ``compare_to_baseline``) plus ``effect`` (the difference to
    detect, metric units), ``effect_source`` (``paper`` or ``--effect``), ``sd`` (the spread
    it is judged against) and ``seeds_needed`` (per variant; NaN when unknown or > MAX_SEEDS,
    see ``seeds_needed_text``)."""
    empty = pd.Series(dtype=float)
    out = comparison.copy()
    cols: dict[str, list] = {"effect": [], "effect_source": [], "sd": [], "seeds_needed": []}
    for row in comparison.itertuples(index=False):
        effect, source = effects.get(row.variant, (float("nan"), ""))
        if row.variant == row.baseline or not math.isfinite(effect):
            sd, needed = float("nan"), None
        else:
            sd, paired = spread(values.get(row.variant, empty), values.get(row.baseline, empty))
            needed = seeds_needed(effect, sd, paired)
        cols["effect"].append(effect)
        cols["effect_source"].append(source)
        cols["sd"].append(sd)
        cols["seeds_needed"].append(float(needed) if needed is not None else float("nan"))
    for key, column in cols.items():
        out[key] = column
    return out


def seeds_needed_text(row: Mapping[str, Any]) -> str:
    """A table cell: ``"12"``, ``"> 1000"``, or a dash when there is no effect or spread."""
    needed, sd, effect = row.get("seeds_needed"), row.get("sd"), row.get("effect", math.nan)
    if needed is not None and math.isfinite(needed):
        return str(int(needed))
    if sd is not None and math.isfinite(sd) and sd > 0 and math.isfinite(effect):
        return f"> {MAX_SEEDS}"
    return "—"
