"""The table of any experiment or study: one row per variant, the knobs that vary.

Used when no paper ablation fits the group (a sweep, a custom experiment); no paper column,
since the paper has no row for an arbitrary variant.
"""

from __future__ import annotations

from dat_lab.results.analyses.base import Group, Output, caption, compared_table
from dat_lab.results.knobs import KNOBS

NAME = "variants"


def applies(group: Group) -> bool:
    return True


def build(group: Group) -> Output:
    knobs = tuple(k for k in KNOBS if k in group.varying_knobs)
    table = compared_table(
        group, group.summary, name=NAME, title=f"{group.name}: variants",
        caption=caption(group, with_paper=False), knobs=knobs,
    )  # fmt: skip
    return Output(tables=[table])
