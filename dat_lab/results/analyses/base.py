"""What every analysis gets (a :class:`Group`) and returns (an :class:`Output`).

An analysis is a module with ``NAME``, ``applies(group) -> bool`` and
``build(group) -> Output``; it reads only the group's frames and never writes files (the
report does). A group is one experiment or study: the rows of
:func:`dat_lab.results.memberships` whose ``experiment`` is its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from dat_lab.results import paper
from dat_lab.results.aggregate import summarize
from dat_lab.results.knobs import KNOBS, knobs_of_row
from dat_lab.results.tables import Table, is_accuracy

DEFAULT_METRIC = "final.val/acc1"
# Config keys that differ between the seeds of one variant, not between variants.
SEED_KEYS = ("config.train.seed",)


@dataclass
class Group:
    """The runs of one experiment or study, and what the analyses need to know about them.

    Attributes:
        name: the experiment (or study) name, as stored in the runs' identities.
        runs: one row per (run, identity) of this group (see ``memberships``).
        metric: the column the tables and plots report (``final.val/acc1`` by default).
        study: an Optuna study whose trials are this group's runs, when one was found.
    """

    name: str
    runs: pd.DataFrame
    metric: str = DEFAULT_METRIC
    study: Any = None

    @cached_property
    def summary(self) -> pd.DataFrame:
        return summarize(self.runs, self.metric)

    @cached_property
    def varying_knobs(self) -> set[str]:
        """Knobs that take more than one value among the group's runs (None ignored)."""
        return {
            k for k in KNOBS
            if f"knob.{k}" in self.runs and self.runs[f"knob.{k}"].dropna().map(str).nunique() > 1
        }  # fmt: skip

    @cached_property
    def varying_config(self) -> list[str]:
        """Config keys (without ``config.``) that differ between runs, seeds excluded."""
        cols = [c for c in self.runs.columns if c.startswith("config.") and c not in SEED_KEYS]
        return [c.removeprefix("config.") for c in cols
                if self.runs[c].map(repr).nunique() > 1]  # fmt: skip

    def knobs_of(self, variant: str) -> dict[str, Any]:
        return knobs_of_row(self.summary.set_index("variant").loc[variant])

    @cached_property
    def setting(self) -> str:
        """Our data set, image size, epochs and model widths, e.g. for captions."""
        return setting_text(self.runs)


@dataclass
class Output:
    """What an analysis produced: tables, figures by file stem, and notes to print."""

    tables: list[Table] = field(default_factory=list)
    figures: dict[str, Figure] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _values(runs: pd.DataFrame, column: str) -> str:
    if column not in runs:
        return "?"
    values = sorted({str(v) for v in runs[column].dropna()})
    return "/".join(values) if values else "?"


def setting_text(runs: pd.DataFrame) -> str:
    """``"shapes (pathfinder, path_length 3), 32 px, 8 epochs, widths 16-32-64-96"``."""
    data = _values(runs, "config.data.name")
    if data == "shapes":
        task = (
            _values(runs, "config.data.shapes.task")
            if "config.data.shapes.task" in runs
            else "pathfinder"
        )
        knobs = [f"{c.rsplit('.', 1)[-1]} {_values(runs, c)}" for c in runs.columns
                 if c.startswith("config.data.shapes.") and not c.endswith(".task")
                 and runs[c].notna().any()]  # fmt: skip
        data += f" ({', '.join([task, *knobs])})"
    dims = [c for c in runs.columns if c.startswith("config.model.stages.") and c.endswith(".dim")]
    widths = "-".join(_values(runs, c) for c in sorted(dims))
    return (f"{data}, {_values(runs, 'config.data.img_size')} px, "
            f"{_values(runs, 'config.train.epochs')} epochs, widths {widths}")  # fmt: skip


def caption(group: Group, with_paper: bool) -> str:
    """The table caption: our setting, what the statistics are, and the paper's setting."""
    metric = group.metric.removeprefix("final.")
    unit = " in %" if is_accuracy(group.metric) else ""
    text = (
        f"Ours: {group.setting}. {metric}{unit} at the end of training: mean ± sample std over "
        f"n finished seeds, 95% CI from Student's t (n-1 dof); FLOPs by fvcore "
        f"(1 multiply-add = 1) at batch 1. † marks variants with runs that are not finished "
        f"(listed below); they are not in the statistics."
    )
    if with_paper:
        text += (f" Paper columns: {paper.SETTING}, {paper.SOURCE}; not comparable in absolute "
                 f"terms with ours.")  # fmt: skip
    others = [k for k in group.varying_config if not _explained_by_knobs(k)]
    if others:
        text += (
            " Config keys that also vary: "
            + ", ".join(others[:8])
            + ("..." if len(others) > 8 else "")
            + "."
        )
    return text


def _explained_by_knobs(key: str) -> bool:
    """Config keys the knob columns already show (attn letters and D knobs)."""
    last = key.rsplit(".", 1)[-1]
    return key.startswith("model.stages.") and last in (
        "attn", "offsets", "offset_range", "offset_mode", "reduction", "pos_enc", "sr_ratio",
    )  # fmt: skip
