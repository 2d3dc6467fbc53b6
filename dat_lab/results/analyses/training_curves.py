"""Training curves per variant from each run's ``logs/.../metrics.csv`` (mean +- std band).

Skipped, with a note, for groups of more than ``MAX_VARIANTS`` variants (a sweep's hundreds
of trials make an unreadable plot; plot a selection with :func:`build` on a filtered group).
"""

from __future__ import annotations

from dat_lab.results import plots
from dat_lab.results.analyses.base import Group, Output
from dat_lab.results.load import load_curves

NAME = "training_curves"
MAX_VARIANTS = 20


def applies(group: Group) -> bool:
    return 0 < len(group.summary) <= MAX_VARIANTS


def build(group: Group) -> Output:
    curves = load_curves(group.runs)
    if curves.empty:
        return Output(notes=[f"{group.name}: no metrics.csv in any run; no training curves"])
    figure = plots.curves_figure(
        curves,
        list(group.summary["variant"]),
        title=f"{group.name}: training curves ({group.setting})",
    )
    return Output(figures={"curves": figure})
