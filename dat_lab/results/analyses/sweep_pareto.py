"""Accuracy against FLOPs with the Pareto front (sweeps, r x s, any group whose FLOPs vary).

Each point is a variant (for a sweep: a trial's run); the front is the set of variants that
no other beats on both FLOPs (lower) and mean accuracy (higher).
"""

from __future__ import annotations

from dat_lab.results import plots
from dat_lab.results.analyses.base import Group, Output

NAME = "sweep_pareto"
MIN_VARIANTS = 3


def applies(group: Group) -> bool:
    done = group.summary[group.summary["n"] > 0]
    return len(done) >= MIN_VARIANTS and done["flops"].dropna().nunique() > 1


def build(group: Group) -> Output:
    front = plots.pareto_front(group.summary[group.summary["n"] > 0].assign(), "flops", "mean")
    figure = plots.pareto_figure(
        group.summary, group.metric, setting=group.setting.split(",")[0],
        title=f"{group.name}: accuracy vs FLOPs",
    )  # fmt: skip
    note = "Pareto front: " + ", ".join(front["variant"].astype(str))
    return Output(figures={"pareto": figure}, notes=[note])
