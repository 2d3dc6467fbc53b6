"""Seaborn figures of results, built from frames only: no file is read or written here.

Every function takes rows of :func:`dat_lab.results.memberships` (one per run) and/or the
summary of :func:`dat_lab.results.summarize`, and returns a matplotlib ``Figure`` whose axes
carry labels and a title. Our numbers come from the runs: means with their 95% t-interval
(the table's CI) or the min-max range over seeds, which stays inside the metric's range
(a +-std band does not: a loss band below zero); stars mark differences from the baseline
that are significant after Holm's adjustment (the table's ``*``). Legends sit inside the
figure (below the axes, constrained layout), never cut off. The paper's
ImageNet-1K numbers are drawn on a second y axis, labelled as the paper's, because the two
scales are not comparable. Call with ``MPLBACKEND=Agg`` (the report command sets it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg", force=False)  # no display needed; a no-op if a backend is already in use

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from dat_lab.experiments.records import RunState
from dat_lab.results.tables import is_accuracy

PAPER_COLOR = "0.25"
PAPER_LABEL = "paper, ImageNet-1K (right axis)"
SIGNIFICANT_COLOR = "C3"
STYLE = "whitegrid"


def metric_label(metric: str, setting: str = "") -> str:
    """``"final.val/acc1"`` -> ``"val/acc1 (%)"`` (+ the setting, e.g. the data set)."""
    name = metric.removeprefix("final.")
    unit = " (%)" if is_accuracy(metric) else ""
    return f"{name}{unit}" + (f"\n{setting}" if setting else "")  # two lines: fits the axis


def finished_values(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Finished runs with a finite ``metric``, plus a ``value`` column (percent for accuracy)."""
    if metric not in runs.columns:
        return runs.iloc[0:0].assign(value=pd.Series(dtype=float))
    values = pd.to_numeric(runs[metric], errors="coerce").astype(float)
    keep = (runs["state"] == RunState.FINISHED.value) & np.isfinite(values)
    scale = 100.0 if is_accuracy(metric) else 1.0
    return runs[keep].assign(value=values[keep] * scale)


def _paper_axis(ax, xs: Sequence[float], ys: Sequence[float], style: str, label: str):
    twin = ax.twinx()
    twin.plot(xs, ys, style, color=PAPER_COLOR, label=label)
    twin.set_ylabel("paper top-1 (%), ImageNet-1K DAT-T")
    twin.grid(False)
    return twin


def _legend(fig: Figure, ax, twin=None) -> None:
    """One legend for both axes, below the plot and inside the figure (the figure's
    constrained layout makes room for it): it hides no data and is never cut off."""
    handles, labels = ax.get_legend_handles_labels()
    if twin is not None:
        more = twin.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    seen = dict(zip(labels, handles, strict=True))  # one entry per label
    if ax.get_legend() is not None:  # seaborn's own, inside the axes over the data
        ax.get_legend().remove()
    if seen:
        fig.legend(seen.values(), seen.keys(), loc="outside lower center",
                   ncol=min(2, len(seen)), fontsize="small")  # fmt: skip


def _significance(ax, xs: Sequence[float], tops: Sequence[float], comparison) -> None:
    """A star above each point whose difference from the baseline is significant after
    Holm's adjustment, and a legend entry saying so (``comparison``: rows in ``xs`` order)."""
    if comparison is None or not bool(comparison["significant"].any()):
        return
    base = str(comparison["baseline"].iloc[0])
    for x, top, sig in zip(xs, tops, comparison["significant"], strict=True):
        if sig:
            ax.annotate("*", (x, top), textcoords="offset points", xytext=(0, 3), ha="center",
                        fontsize="x-large", color=SIGNIFICANT_COLOR)  # fmt: skip
    ax.plot([], [], "*", color=SIGNIFICANT_COLOR,
            label=f"differs from {base} (paired/Welch t, Holm p < 0.05)")  # fmt: skip


def _metric_limits(ax, low: float, high: float, metric: str) -> None:
    """Y limits around the data, never outside what the metric can take (0-100% accuracy)."""
    pad = max(0.5, 0.08 * (high - low))
    low, high = low - pad, high + pad
    if is_accuracy(metric):
        low, high = max(0.0, low), min(100.0, high)
    ax.set_ylim(low, high)


def offset_range_figure(
    runs: pd.DataFrame,
    metric: str,
    paper: Mapping[float, float],
    setting: str = "",
    title: str = "Top-1 vs maximum offset s",
    comparison: pd.DataFrame | None = None,
) -> Figure:
    """Ours: mean and min-max over seeds at each s (stars: significant vs the baseline); the
    paper's curve on the right axis. ``comparison`` rows carry ``variant`` and are matched
    to s through the runs."""
    data = finished_values(runs, metric)
    data = data[data["knob.s"].map(lambda v: isinstance(v, float))].copy()
    data["s"] = data["knob.s"].astype(float)
    with sns.axes_style(STYLE):
        fig, ax = plt.subplots(figsize=(8.4, 4.6), layout="constrained")
        if len(data):
            sns.lineplot(data=data, x="s", y="value", errorbar=("pi", 100), err_style="bars",
                         marker="o", ax=ax, label="ours (mean, min-max over seeds)")  # fmt: skip
            ax.plot(data["s"], data["value"], ".", color="C0", alpha=0.35, label="ours, each seed")
            if comparison is not None:
                s_of = data.groupby("variant")["s"].first()
                top = data.groupby("variant")["value"].max()
                comp = comparison[comparison["variant"].isin(s_of.index)]
                _significance(ax, list(s_of[comp["variant"]]), list(top[comp["variant"]]), comp)
        twin = None
        if paper:
            xs = sorted(paper)
            twin = _paper_axis(ax, xs, [paper[x] for x in xs], "s--", PAPER_LABEL)
        ax.set_xlabel("maximum offset s")
        ax.set_ylabel(metric_label(metric, setting))
        ax.set_title(title)
        _legend(fig, ax, twin)
    return fig


def variant_points_figure(
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    metric: str,
    paper: Mapping[str, float],
    labels: Mapping[str, str] | None = None,
    setting: str = "",
    title: str = "",
    xlabel: str = "variant",
    comparison: pd.DataFrame | None = None,
) -> Figure:
    """Per variant in ``summary``'s order: the mean with its 95% t-interval (points, not bars:
    a bar from a truncated axis exaggerates differences), each seed as a dot, a star where the
    difference from the baseline is significant; the paper's values as diamonds on the right
    axis. Variants without a finished run keep their place, marked in the tick label."""
    order = list(summary["variant"])
    scale = 100.0 if is_accuracy(metric) else 1.0
    data = finished_values(runs, metric)
    data = data[data["variant"].isin(order)]
    ticks = [_tick(row, (labels or {}).get(row["variant"])) for _, row in summary.iterrows()]
    xs = np.arange(len(order), dtype=float)
    mean, low, high = (summary[k].to_numpy(dtype=float) * scale
                       for k in ("mean", "ci_low", "ci_high"))  # fmt: skip
    with sns.axes_style(STYLE):
        fig, ax = plt.subplots(figsize=(max(7.0, 0.9 * len(order) + 4), 5.0), layout="constrained")
        if len(data):
            has_ci = np.isfinite(low)
            yerr = [(mean - low)[has_ci], (high - mean)[has_ci]]
            ax.errorbar(xs[has_ci], mean[has_ci], yerr=yerr, fmt="none", ecolor="C0", capsize=4,
                        label="ours: 95% CI of the mean (t)")  # fmt: skip
            ax.plot(xs, mean, "o", color="C0", markersize=8, label="ours: mean over seeds")
            pos = {v: i for i, v in enumerate(order)}
            jitter = (data["seed"].astype(int) % 5 - 2) * 0.04
            ax.plot(data["variant"].map(pos) + jitter, data["value"], ".", color="black",
                    alpha=0.6, label="ours, each seed")  # fmt: skip
            tops = np.fmax(np.where(np.isfinite(high), high, mean), mean)
            _significance(ax, list(xs), list(tops), comparison)
            values = np.concatenate([data["value"].to_numpy(), low[has_ci], high[has_ci]])
            _metric_limits(ax, float(np.nanmin(values)), float(np.nanmax(values)), metric)
        twin = None
        known = [(i, paper[v]) for i, v in enumerate(order) if v in paper]
        if known:
            px, py = zip(*known, strict=True)
            twin = _paper_axis(ax, px, py, "D", PAPER_LABEL)
        ax.set_xticks(
            range(len(order)),
            ticks,
            rotation=30 if len(order) > 4 else 0,
            ha="right" if len(order) > 4 else "center",
        )
        ax.set_xlim(-0.6, len(order) - 0.4)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric_label(metric, setting))
        ax.set_title(title)
        _legend(fig, ax, twin)
    return fig


def _tick(row: pd.Series, label: str | None) -> str:
    text = label or str(row["variant"])
    missing = int(row["n_runs"]) - int(row["n"])
    return f"{text}\n({missing} of {int(row['n_runs'])} not finished)" if missing else text


def pareto_front(points: pd.DataFrame, cost: str = "flops", value: str = "mean") -> pd.DataFrame:
    """Rows not dominated by another (lower-or-equal cost and strictly higher value, or lower
    cost and equal value), sorted by cost."""
    pts = points.dropna(subset=[cost, value]).sort_values([cost, value], ascending=[True, False])
    front, best = [], -np.inf
    for idx, row in pts.iterrows():
        if row[value] > best:
            front.append(idx)
            best = row[value]
    return pts.loc[front]


def pareto_figure(
    summary: pd.DataFrame, metric: str, setting: str = "", title: str = ""
) -> Figure:
    """Mean metric (+- std) against FLOPs per variant, the Pareto front as a step line."""
    scale = 100.0 if is_accuracy(metric) else 1.0
    pts = summary[summary["n"] > 0].assign(
        mean=lambda d: d["mean"] * scale, std=lambda d: d["std"].fillna(0) * scale,
        mflops=lambda d: d["flops"] / 1e6,
    )  # fmt: skip
    front = pareto_front(pts, "mflops", "mean")
    with sns.axes_style(STYLE):
        fig, ax = plt.subplots(figsize=(8.0, 4.8), layout="constrained")
        if len(pts):
            ax.errorbar(pts["mflops"], pts["mean"], yerr=pts["std"], fmt="o", color="C0",
                        alpha=0.7, label="variants (mean ± std)")  # fmt: skip
            ax.step(front["mflops"], front["mean"], where="post", color="C3", label="Pareto front")
            ax.plot(front["mflops"], front["mean"], "o", color="C3")
            if len(pts) <= 30:
                for _, row in pts.iterrows():
                    ax.annotate(str(row["variant"]), (row["mflops"], row["mean"]),
                                textcoords="offset points", xytext=(4, 4),
                                fontsize="x-small")  # fmt: skip
        ax.set_xlabel("FLOPs (M, fvcore, 1 multiply-add = 1)")
        ax.set_ylabel(metric_label(metric, setting))
        ax.set_title(title or "Accuracy vs FLOPs")
        _legend(fig, ax)
    return fig


def curves_figure(
    curves: pd.DataFrame,
    order: Sequence[str],
    panels: Sequence[tuple[str, str]] = (("val/acc1", "epoch"), ("train/loss", "step")),
    title: str = "",
) -> Figure:
    """One panel per (metric, x) of the CSV logs: a line per variant (the mean over seeds),
    band = min-max over seeds (inside the metric's range, unlike +-std). Panels whose metric
    was never logged say so instead of being left blank."""
    with sns.axes_style(STYLE):
        fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0), squeeze=False)
        palette = dict(zip(order, sns.color_palette("husl", len(order)), strict=True))
        for i, (ax, (metric, x)) in enumerate(zip(axes[0], panels, strict=True)):
            data = curves[curves["metric"] == metric].dropna(subset=[x])
            if is_accuracy(metric):
                data = data.assign(value=data["value"] * 100)
            if len(data):
                hue_order = [v for v in order if v in set(data["variant"])]
                # One legend (the first panel's): the colours are the same in every panel.
                sns.lineplot(data=data, x=x, y="value", hue="variant", hue_order=hue_order,
                             palette=palette, errorbar=("pi", 100), ax=ax, legend=i == 0,
                             marker="o" if x == "epoch" else None)  # fmt: skip
                if i == 0:
                    ax.legend(fontsize="x-small", ncol=2 if len(hue_order) > 8 else 1)
            else:
                ax.text(0.5, 0.5, f"no {metric} logged", ha="center", transform=ax.transAxes)
            ax.set_xlabel(x)
            ax.set_ylabel(metric_label(metric))
            ax.set_title(f"{metric} per {x}")
        fig.suptitle(f"{title or 'Training curves'}\nline: mean over seeds, band: min-max")
        fig.tight_layout()
    return fig
