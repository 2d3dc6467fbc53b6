"""How many seeds does a claim need? Under the sequential rule, and under a fixed design.

*Seeds to a decision* (:func:`dat_lab.results.sequential.simulate`): the expected seeds
until the anytime-valid rule reaches a verdict, by seeded simulation. *Fixed design* (here):
from the observed seed-to-seed spread, the smallest number of seeds per variant at which a
two-sided t-test at ``ALPHA`` detects a true difference ``effect`` with probability ``POWER``
(for an equivalence claim: two one-sided tests, :func:`tost_power`).
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
from scipy import integrate, stats

from dat_lab.results import sequential
from dat_lab.results.compare import ALPHA

POWER = 0.8
MAX_SEEDS = 1000
QUADRATURE_NODES = 256
MAX_RULE_SEEDS = 30  # the simulated studies of the rule stop here (simulate's default)


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


def tost_power(n: int, effect: float, sd: float, within: float, alpha: float = ALPHA) -> float:
    """Probability that two one-sided paired t-tests at ``alpha`` find the mean difference
    within ``+-within`` when it is ``effect``: ``-within + t se < mean < within - t se`` with
    ``se = s / sqrt(n)``; exact under normal noise, integrating over the chi-square law of
    ``s^2`` (``(n - 1) s^2 / sd^2 ~ chi2(n - 1)``)."""
    if n < 2 or not sd > 0 or not within > 0:
        return float("nan")
    df, t_crit = n - 1, float(stats.t.ppf(1 - alpha, n - 1))
    root_n = math.sqrt(n)

    def given(u: np.ndarray) -> np.ndarray:  # u: the chi-square quantile of (n-1) s^2 / sd^2
        margin = within - t_crit * sd * np.sqrt(stats.chi2.ppf(u, df) / df) / root_n
        upper = stats.norm.cdf((margin - effect) * root_n / sd)
        lower = stats.norm.cdf((-margin - effect) * root_n / sd)
        return np.where(margin > 0, upper - lower, 0.0)

    v_max = df * (within * root_n / (t_crit * sd)) ** 2  # beyond it, the interval is empty
    # Over the quantile (the chi-square's mass, not its long support), where the integrand is
    # smooth: Gauss-Legendre with QUADRATURE_NODES nodes.
    u_max = float(stats.chi2.cdf(v_max, df))
    return float(integrate.fixed_quad(given, 0.0, u_max, n=QUADRATURE_NODES)[0])


def seeds_needed(
    effect: float,
    sd: float,
    paired: bool,
    target: float = POWER,
    alpha: float = ALPHA,
    within: float = 0.0,
) -> int | None:
    """The smallest n >= 2 with ``power >= target`` (``tost_power`` when ``within`` > 0);
    None when unknown (no spread, no effect) or above ``MAX_SEEDS``. Bisection: power grows
    with n."""
    if within > 0:
        if not (math.isfinite(effect) and abs(effect) < within and math.isfinite(sd) and sd > 0):
            return None

        def power_at(n: int) -> float:
            return tost_power(n, effect, sd, within, alpha)
    else:
        if not (math.isfinite(effect) and effect != 0 and math.isfinite(sd) and sd > 0):
            return None

        def power_at(n: int) -> float:
            return power(n, effect, sd, paired, alpha)

    if power_at(MAX_SEEDS) < target:
        return None
    low, high = 2, MAX_SEEDS
    if power_at(low) >= target:
        return low
    while high - low > 1:
        mid = (low + high) // 2
        if power_at(mid) >= target:
            high = mid
        else:
            low = mid
    return high


def fixed_seeds(
    effect: float,
    sd: float,
    paired: bool = True,
    alpha: float = ALPHA,
    margin: float = 0.0,
    within: float = 0.0,
) -> int | None:
    """Seeds per variant a fixed design needs for a claim with ``margin`` (``by``) and
    equivalence margin ``within``, at a true difference ``effect`` (None: unknown or above
    ``MAX_SEEDS``). Within the equivalence margin it would test equivalence (TOST), else a
    difference (as a fixed design that decides either way would)."""
    tost = within if abs(effect - margin) < within else 0.0
    return seeds_needed(effect - margin, sd, paired, alpha=alpha, within=tost)


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
    """``comparison`` (rows of ``compare_to_baseline``) plus ``effect`` (the difference
    assumed, metric units: ``effects``' for the row (``--effect``), else the observed
    difference), ``effect_source`` (``--effect`` or ``observed``), ``sd`` (the spread it is
    judged against, see :func:`spread`), ``seeds_needed`` (fixed design, per variant; NaN when
    unknown or > MAX_SEEDS, see ``seeds_needed_text``), ``seeds_to_decision`` (the rule's
    expected seeds, seeded simulation up to ``sequential`` 30) and ``decided_share`` (the
    share of simulated studies decided by then)."""
    empty = pd.Series(dtype=float)
    out = comparison.copy()
    cols: dict[str, list] = {k: [] for k in ("effect", "effect_source", "sd", "seeds_needed",
                                             "seeds_to_decision", "decided_share")}  # fmt: skip
    for row in comparison.itertuples(index=False):
        effect, source = effects.get(row.variant, (row.diff, "observed"))
        a, b = values.get(row.variant, empty), values.get(row.baseline, empty)
        sd, paired = spread(a, b) if row.variant != row.baseline else (math.nan, True)
        figures = fixed_and_sequential(effect, sd, paired)
        cols["effect"].append(effect)
        cols["effect_source"].append(source)
        cols["sd"].append(sd)
        for key, value in zip(("seeds_needed", "seeds_to_decision", "decided_share"), figures,
                              strict=True):  # fmt: skip
            cols[key].append(value)
    for key, column in cols.items():
        out[key] = column
    return out


def fixed_and_sequential(
    effect: float,
    sd: float,
    paired: bool,
    alpha: float = ALPHA,
    margin: float = 0.0,
    within: float = 0.0,
) -> tuple[float, float, float]:
    """(fixed-design seeds, the rule's expected seeds, the share it decides by its last seed)
    for a true difference ``effect`` at spread ``sd`` (NaN where unknown), for a claim with
    ``margin`` (``by``) and equivalence margin ``within``. Unpaired seeds: the rule pairs its
    next seeds, whose difference has ``sqrt(2)`` times the per-variant sd."""
    nan = float("nan")
    if not (math.isfinite(effect) and math.isfinite(sd) and sd > 0):
        return nan, nan, nan
    needed = fixed_seeds(effect, sd, paired, alpha, margin, within)
    diff_sd = sd if paired else sd * math.sqrt(2.0)
    sim = sequential.simulate(effect, diff_sd, within, alpha, MAX_RULE_SEEDS, margin=margin)
    return (float(needed) if needed is not None else nan), sim.expected_seeds, sim.decided


def seeds_needed_text(row: Mapping[str, Any]) -> str:
    """A table cell: ``"12"``, ``"> 1000"``, or a dash when there is no effect or spread."""
    needed, sd, effect = row.get("seeds_needed"), row.get("sd"), row.get("effect", math.nan)
    if needed is not None and math.isfinite(needed):
        return str(int(needed))
    if sd is not None and math.isfinite(sd) and sd > 0 and math.isfinite(effect):
        return f"> {MAX_SEEDS}"
    return "—"


def seeds_to_decision_text(row: Mapping[str, Any]) -> str:
    """A table cell: ``"9.1"``, ``"25.5 (36% by 30)"`` when some simulated studies end
    undecided at the rule's last seed, or a dash when unknown."""
    mean, share = row.get("seeds_to_decision"), row.get("decided_share")
    if mean is None or not math.isfinite(mean) or share is None:
        return "—"
    text = f"{mean:.1f}"
    if share < 0.995:
        text += f" ({share:.0%} by {MAX_RULE_SEEDS})"
    return text
