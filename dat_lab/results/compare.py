"""Is a variant's difference from the baseline real? Tests, CIs and Holm across a table.

For each variant, the difference of its metric from the baseline's (variant - baseline) with
a 95% CI and a p-value from scipy:

- *paired t* (``scipy.stats.ttest_rel``) when both sides finished exactly the same seeds (at
  least 2): a seed fixes the data order and the initialisation's random stream, so seed-wise
  differences remove the seed's share of the noise;
- *Welch t* (``scipy.stats.ttest_ind(equal_var=False)``) otherwise, when each side has at
  least 2 seeds;
- no test when a side has fewer than 2 finished seeds (the row says why).

The CI is the test's own (``confidence_interval``) or, with ``ci="bootstrap"``, a percentile
bootstrap (``scipy.stats.bootstrap``) of the same difference of means. The p-values of a
table are adjusted together with Holm's step-down method (a table tests every variant against
one baseline: without adjustment, one of 13 null rows is marked at 5% half the time), and a
difference is *significant* when its adjusted p is below ``ALPHA``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from dat_lab.experiments.records import RunState
from dat_lab.schema import ConfigError

ALPHA = 0.05
CONFIDENCE = 0.95
CI_METHODS = ("t", "bootstrap")
PAIRED = "paired t"
WELCH = "Welch t"
BOOTSTRAP_RESAMPLES = 2000


def seed_values(runs: pd.DataFrame, metric: str) -> dict[str, pd.Series]:
    """Per variant, the metric of its finished runs with a finite value, indexed by seed."""
    if runs.empty or metric not in runs:
        return {}
    values = pd.to_numeric(runs[metric], errors="coerce").astype(float)
    good = (runs["state"] == RunState.FINISHED.value) & np.isfinite(values)
    frame = pd.DataFrame(
        {"variant": runs["variant"].astype(str), "seed": runs["seed"], "value": values}
    )[good]
    # One identity per (variant, seed) in an experiment; a mean guards against duplicates.
    means = frame.groupby(["variant", "seed"], sort=True)["value"].mean()
    return {str(v): s.droplevel(0) for v, s in means.groupby(level=0, sort=False)}


@dataclass(frozen=True)
class Difference:
    """One comparison ``a - b``: the test used, the difference, its CI and p (NaN if none)."""

    test: str
    n_a: int
    n_b: int
    diff: float
    ci_low: float
    ci_high: float
    p: float
    why: str = ""  # why there is no test, when there is none


def _bootstrap_ci(samples: tuple[np.ndarray, ...], rng: np.random.Generator) -> tuple:
    def diff(*xs: np.ndarray, axis: int = -1) -> np.ndarray:
        return xs[0].mean(axis) - (xs[1].mean(axis) if len(xs) > 1 else 0.0)

    res = stats.bootstrap(
        samples,
        diff,
        confidence_level=CONFIDENCE,
        vectorized=True,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=rng,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def difference(
    a: pd.Series, b: pd.Series, ci: str = "t", rng: np.random.Generator | None = None
) -> Difference:
    """Compare the seed-indexed values ``a`` and ``b`` (see the module docstring)."""
    n_a, n_b = len(a), len(b)
    nan = float("nan")
    diff = float(a.mean() - b.mean()) if n_a and n_b else nan
    if n_a < 2 or n_b < 2:
        why = f"needs >= 2 finished seeds on each side (has {n_a} and {n_b})"
        return Difference("", n_a, n_b, diff, nan, nan, nan, why)
    paired = set(a.index) == set(b.index)
    if paired:
        x, y = a.sort_index().to_numpy(), b.sort_index().to_numpy()
        samples: tuple[np.ndarray, ...] = (x - y,)
    else:
        x, y = a.to_numpy(), b.to_numpy()
        samples = (x, y)
    test = PAIRED if paired else WELCH
    if all(_no_spread(s) for s in samples):  # t is undefined (or rounding noise)
        why = "no seed-to-seed spread: the difference cannot be tested"
        return Difference(test, n_a, n_b, diff, nan, nan, nan, why)
    res = stats.ttest_rel(x, y) if paired else stats.ttest_ind(x, y, equal_var=False)
    if ci == "bootstrap":
        low, high = _bootstrap_ci(samples, rng or np.random.default_rng(0))
    else:
        interval = res.confidence_interval(CONFIDENCE)
        low, high = float(interval.low), float(interval.high)
    return Difference(test, n_a, n_b, diff, low, high, float(res.pvalue))


def _no_spread(x: np.ndarray) -> bool:
    """Values equal up to floating-point rounding (metrics are stored as doubles)."""
    return bool(np.ptp(x) <= 1e-9 * max(1.0, float(np.abs(x).max())))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values; NaN entries stay NaN and do not count in m.

    The k-th smallest of m p-values is multiplied by (m - k + 1), then made non-decreasing in
    that order and capped at 1; rejecting adjusted p < alpha controls the family-wise error.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def compare_to_baseline(
    values: Mapping[str, pd.Series],
    order: Sequence[str],
    baseline: str,
    ci: str = "t",
) -> pd.DataFrame:
    """One row per variant of ``order`` (the baseline's own row has no test).

    Columns: ``variant``, ``baseline``, ``test``, ``n``, ``n_baseline``, ``diff``,
    ``ci_low``, ``ci_high``, ``p``, ``p_holm`` (adjusted over the table's tests),
    ``significant`` (``p_holm < ALPHA``), ``why`` (no test: the reason).
    """
    empty = pd.Series(dtype=float)
    base = values.get(baseline, empty)
    rng = np.random.default_rng(0)  # the same bootstrap CIs on every report of the same runs
    rows = []
    for variant in order:
        if variant == baseline:
            rows.append(
                {
                    "variant": variant,
                    "baseline": baseline,
                    "test": "",
                    "n": len(base),
                    "n_baseline": len(base),
                    "diff": 0.0,
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                    "p": np.nan,
                    "why": "baseline",
                }
            )
            continue
        d = difference(values.get(variant, empty), base, ci, rng)
        rows.append(
            {
                "variant": variant,
                "baseline": baseline,
                "test": d.test,
                "n": d.n_a,
                "n_baseline": d.n_b,
                "diff": d.diff,
                "ci_low": d.ci_low,
                "ci_high": d.ci_high,
                "p": d.p,
                "why": d.why,
            }
        )
    out = pd.DataFrame.from_records(
        rows,
        columns=[
            "variant",
            "baseline",
            "test",
            "n",
            "n_baseline",
            "diff",
            "ci_low",
            "ci_high",
            "p",
            "why",
        ],
    )
    out["p_holm"] = holm(out["p"].to_numpy())
    out["significant"] = out["p_holm"] < ALPHA
    return out


def parse_ci(text: str) -> str:
    """``--ci``: one of :data:`CI_METHODS`, else a ConfigError naming the flag."""
    if text not in CI_METHODS:
        raise ConfigError(f"unknown CI method {text!r}; allowed: {', '.join(CI_METHODS)}", "--ci")
    return text
