"""Which stages use deformable attention (the paper's Table 5): table and bars.

Applies to a group whose variants differ in the stages that hold a D block.
"""

from __future__ import annotations

import pandas as pd

from dat_lab.results import paper, plots
from dat_lab.results.analyses.base import Group, Output, caption, compared_table

NAME = "stage_placement"
LOOKUP = paper.stage_placement  # a variant's paper row (default effects)


def applies(group: Group) -> bool:
    return "d_stages" in group.varying_knobs and group.varying_knobs <= {"d_stages", "attn12"}


def paper_order(group: Group) -> pd.DataFrame:
    """The summary in Table 5's order (D in stages 1-4, 2-4, 3-4, 4, none), others last."""
    rank = {stages: i for i, stages in enumerate(paper.STAGE_ORDER)}
    key = [
        rank.get(str(group.knobs_of(v)["d_stages"]), len(rank)) for v in group.summary["variant"]
    ]
    return (
        group.summary.assign(_rank=key)
        .sort_values("_rank", kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def build(group: Group) -> Output:
    summary = paper_order(group)
    table = compared_table(
        group, summary, name=NAME, title=f"{group.name}: deformable attention by stage",
        caption=caption(group, with_paper=True), knobs=("d_stages",),
        lookup=LOOKUP,
    )  # fmt: skip
    found = {v: paper.stage_placement(group.knobs_of(v)) for v in summary["variant"]}
    labels = {v: f"{v}\nD in {group.knobs_of(v)['d_stages']}" for v in found}
    comparison = group.comparison(list(summary["variant"]), LOOKUP) if group.baseline else None
    figure = plots.variant_points_figure(
        group.runs, summary, group.metric, {v: r.top1 for v, r in found.items() if r},
        labels=labels, setting=group.setting.split(",")[0], xlabel="stages with D blocks",
        title=f"{group.name}: deformable attention by stage", comparison=comparison,
    )  # fmt: skip
    return Output(tables=[table], figures={"stage_placement": figure})
