"""Top-1 against the maximum offset s (the paper's Fig. 5): table and plot.

Applies to a group whose variants differ only in s. The paper's curve (ImageNet-1K, DAT-T)
is drawn on a second axis and listed beside ours where the paper has that s.
"""

from __future__ import annotations

import pandas as pd

from dat_lab.results import paper, plots
from dat_lab.results.analyses.base import Group, Output, caption, compared_table

NAME = "offset_range"
LOOKUP = paper.offset_range  # a variant's paper row (default effects)


def applies(group: Group) -> bool:
    return group.varying_knobs == {"s"}


def _s_values(value: object) -> tuple[float, ...]:
    """``2.0`` -> (2.0,), ``"2/4"`` -> (2.0, 4.0): one sort key for both kinds of cell."""
    return tuple(float(part) for part in str(value).split("/"))


def _by_s_values(column: pd.Series) -> pd.Series:
    return column.map(_s_values)


def build(group: Group) -> Output:
    # Rows by s, as in the paper's figure, whatever order the runs were made in. A variant whose
    # stages differ in s reads "2/4" (a string) beside plain floats: sort by the numbers.
    summary = group.summary.sort_values("knob.s", kind="stable", key=_by_s_values)
    summary = summary.reset_index(drop=True)
    table = compared_table(
        group, summary, name=NAME, title=f"{group.name}: top-1 vs maximum offset s",
        caption=caption(group, with_paper=True), knobs=("s",),
        lookup=LOOKUP,
    )  # fmt: skip
    curve = {s: row.top1 for s, row in paper.OFFSET_RANGE.items()}
    comparison = group.comparison(list(summary["variant"]), LOOKUP) if group.baseline else None
    figure = plots.offset_range_figure(
        group.runs, group.metric, curve, setting=group.setting.split(",")[0],
        title=f"{group.name}: top-1 vs maximum offset s", comparison=comparison,
    )  # fmt: skip
    return Output(tables=[table], figures={"offset_range": figure})
