"""Seeds -> one row per variant: mean, sample std, Student-t 95% CI and n, with run states.

The CI is clipped to the values the metric can take (``tables.value_range``: [0, 1] for an
accuracy), since a t interval of spread-out seeds near 100% would run past it.

Only finished runs with a finite value of the metric count towards the statistics (``n``);
every other run is counted by state (``n_failed``, ``n_running``, ``n_interrupted``,
``n_pending``, and ``n_no_metric`` for finished runs without the metric), so a table can say
what is missing instead of silently dropping it. Variants keep the order in which their
first run was created (the experiment file's order, for ``dat-lab run``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from dat_lab.experiments.records import RunState
from dat_lab.results.knobs import KNOBS
from dat_lab.results.tables import value_range

CONFIDENCE = 0.95
COUNTED_STATES = (RunState.FAILED, RunState.RUNNING, RunState.INTERRUPTED, RunState.PENDING)


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """``n``, ``mean``, sample ``std`` (ddof 1) and the Student-t CI of the mean.

    With one value the std and the interval are NaN (one seed says nothing about spread);
    with none everything but ``n`` is NaN.
    """
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    nan = float("nan")
    if n == 0:
        return {"n": 0, "mean": nan, "std": nan, "ci_low": nan, "ci_high": nan}
    mean = float(x.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": nan, "ci_low": nan, "ci_high": nan}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def _problems(bad: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """Per variant, one line per run that does not count: seed, run id, state and reason."""
    out: dict[str, list[str]] = {}
    for run in bad.sort_values("seed").itertuples(index=False):
        what = run.state if run.state != RunState.FINISHED.value else "finished, no metric"
        reason = f": {run.reason}" if isinstance(run.reason, str) else ""
        out.setdefault(str(run.variant), []).append(
            f"seed {run.seed} (run {run.run_id}) {what}{reason}"
        )
    return {k: tuple(v) for k, v in out.items()}


def _intervals(n: np.ndarray, mean: np.ndarray, std: np.ndarray, confidence: float) -> tuple:
    """Vectorised :func:`t_interval`: NaN std and CI where n < 2."""
    n = n.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(n >= 2, stats.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1)), np.nan)
        std = np.where(n >= 2, std, np.nan)
        half = t * std / np.sqrt(n)
    return std, mean - half, mean + half


def summarize(runs: pd.DataFrame, metric: str = "final.val/acc1") -> pd.DataFrame:
    """One row per variant of ``runs`` (rows of one experiment, see ``memberships``).

    Columns: ``variant``, ``n``, ``mean``, ``std``, ``ci_low``, ``ci_high``, ``n_runs``,
    ``seeds`` (finished), ``n_failed``, ``n_running``, ``n_interrupted``, ``n_pending``,
    ``n_no_metric``, ``params``, ``flops`` (first known; ``*_varies`` if seeds disagree),
    ``train_s`` (mean training seconds of the seeds that count), ``knob.*``, ``problems``
    (one line per run that does not count), ``first_created``.
    Vectorised with groupby: thousands of variants (a sweep's trials) take milliseconds.
    """
    if runs.empty:
        return pd.DataFrame()
    runs = runs.assign(variant=runs["variant"].astype(str))
    values = (
        pd.to_numeric(runs[metric], errors="coerce")
        if metric in runs
        else pd.Series(np.nan, index=runs.index)
    )
    values = values.astype(float)
    finished = runs["state"] == RunState.FINISHED.value
    good = finished & np.isfinite(values)
    by = runs.groupby("variant", sort=False)
    out = pd.DataFrame({"first_created": by["created"].min(), "n_runs": by.size()})
    stats_ = values[good].groupby(runs.loc[good, "variant"]).agg(["count", "mean", "std"])
    stats_ = stats_.reindex(out.index)
    out["n"] = stats_["count"].fillna(0).astype(int)
    out["mean"] = stats_["mean"]
    out["std"], low, high = _intervals(
        out["n"].to_numpy(), out["mean"].to_numpy(), stats_["std"].to_numpy(), CONFIDENCE
    )
    out["ci_low"], out["ci_high"] = (
        np.clip(low, *value_range(metric)),
        np.clip(high, *value_range(metric)),
    )  # an accuracy's interval stays in [0, 1]
    seeds = (
        runs.loc[good]
        .groupby("variant", sort=False)["seed"]
        .agg(lambda s: tuple(sorted(int(x) for x in s)))
    )
    out["seeds"] = seeds.reindex(out.index).map(lambda v: v if isinstance(v, tuple) else ())
    for state in COUNTED_STATES:
        out[f"n_{state.value}"] = (
            (runs["state"] == state.value)
            .groupby(runs["variant"])
            .sum()
            .reindex(out.index)
            .astype(int)
        )
    out["n_no_metric"] = (
        (finished & ~good).groupby(runs["variant"]).sum().reindex(out.index).astype(int)
    )
    for key in ("params", "flops"):
        known = (
            pd.to_numeric(runs[key], errors="coerce")
            if key in runs
            else pd.Series(np.nan, index=runs.index)
        )
        grouped = known.astype(float).groupby(runs["variant"])
        out[key] = grouped.first().reindex(out.index)
        out[f"{key}_varies"] = (grouped.nunique() > 1).reindex(out.index)
    # Wall-clock seconds of training, mean over the seeds that count: a measured cost, of the
    # machine each run had (its host is in provenance.json).
    seconds = (
        pd.to_numeric(runs["train_time_s"], errors="coerce")
        if "train_time_s" in runs
        else pd.Series(np.nan, index=runs.index)
    )
    out["train_s"] = seconds[good].astype(float).groupby(runs.loc[good, "variant"]).mean()
    out["train_s"] = out["train_s"].reindex(out.index)
    for knob in KNOBS:
        column = f"knob.{knob}"
        out[column] = by[column].first().reindex(out.index) if column in runs else None
    problems = _problems(runs.loc[~good, ["variant", "seed", "run_id", "state", "reason"]])
    out["problems"] = [problems.get(v, ()) for v in out.index]
    out = out.rename_axis("variant").reset_index()
    out = out.sort_values(["first_created", "variant"], kind="stable").reset_index(drop=True)
    return out
