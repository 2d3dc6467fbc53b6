"""Reduction r against maximum offset s: table and top-1 vs s per r.

The paper publishes no table for r (its released models use r = 1), so there is
no paper column; the accuracy-vs-FLOPs trade-off is the Pareto figure (``sweep_pareto``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

from dat_lab.results import plots
from dat_lab.results.analyses.base import Group, Output, caption, compared_table

NAME = "reduction"


def applies(group: Group) -> bool:
    return "r" in group.varying_knobs and group.varying_knobs <= {"r", "s"}


def build(group: Group) -> Output:
    table = compared_table(
        group, group.summary, name=NAME, title=f"{group.name}: reduction r and maximum offset s",
        caption=caption(group, with_paper=False) + " The paper publishes no r table.",
        knobs=("r", "s"),
    )  # fmt: skip
    return Output(tables=[table], figures={"reduction": figure(group)})


def figure(group: Group):
    data = plots.finished_values(group.runs, group.metric)
    data = data[data["knob.s"].map(lambda v: isinstance(v, float))]
    data = data.assign(s=data["knob.s"].astype(float), r=data["knob.r"].map(str))
    with sns.axes_style(plots.STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        if len(data):
            sns.lineplot(data=data, x="s", y="value", hue="r", errorbar="sd", err_style="bars",
                         marker="o", ax=ax)  # fmt: skip
        ax.set_xlabel("maximum offset s")
        ax.set_ylabel(plots.metric_label(group.metric, group.setting.split(",")[0]))
        ax.set_title(f"{group.name}: top-1 vs s for each reduction r")
        fig.tight_layout()
    return fig
