"""Attention in stages 1-2, offsets and position encoding (the paper's Table 4).

Applies to a group whose variants differ in the stage 1-2 attention (S or P), offsets on/off
or the D blocks' position encoding. The paper's FLOPs, #Param and top-1 sit beside ours.
"""

from __future__ import annotations

from dat_lab.results import paper, plots
from dat_lab.results.analyses.base import Group, Output, caption, compared_table
from dat_lab.results.tables import knob_text

NAME = "attention_ablation"
LOOKUP = paper.attention_ablation  # a variant's paper row (default effects)
KNOBS = ("attn12", "offsets", "pos_enc")


def applies(group: Group) -> bool:
    varying = group.varying_knobs
    return bool(varying & set(KNOBS)) and varying <= {*KNOBS, "s", "offset_mode"}


def build(group: Group) -> Output:
    table = compared_table(
        group, group.summary, name=NAME,
        title=f"{group.name}: attention, offsets, position encoding",
        caption=caption(group, with_paper=True), knobs=KNOBS,
        lookup=LOOKUP, paper_cost=True,
    )  # fmt: skip
    found = {v: paper.attention_ablation(group.knobs_of(v)) for v in group.summary["variant"]}
    labels = {}
    for v in found:
        k = group.knobs_of(v)
        attn, offsets, pe = (knob_text(k[key]) for key in ("attn12", "offsets", "pos_enc"))
        labels[v] = f"{v}\n{attn}, off {offsets}, {pe}"
    order = list(group.summary["variant"])
    comparison = group.comparison(order, LOOKUP) if group.baseline else None
    figure = plots.variant_points_figure(
        group.runs, group.summary, group.metric, {v: r.top1 for v, r in found.items() if r},
        labels=labels, setting=group.setting.split(",")[0],
        xlabel="Attn (S1-2), offsets, Pos. Embed",
        title=f"{group.name}: attention, offsets, position encoding", comparison=comparison,
    )  # fmt: skip
    return Output(tables=[table], figures={"attention_ablation": figure})
