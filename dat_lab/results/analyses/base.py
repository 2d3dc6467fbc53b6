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

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dat_lab.results import paper, power
from dat_lab.results.aggregate import summarize
from dat_lab.results.claims import ClaimVerdict, evaluate
from dat_lab.results.compare import compare_to_baseline, seed_values
from dat_lab.results.knobs import KNOBS, knobs_of_row
from dat_lab.results.tables import (
    PaperLookup,
    Table,
    difference_range,
    is_accuracy,
    variant_table,
)

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
        design: the experiment file's design (``ExperimentFile.design``: baseline, claims),
            if known.
        effect: the difference that the seed figures assume (``--effect``; percentage points
            for accuracy metrics), None: the observed difference of each row or claim.
        ci: how comparisons get their CI: ``t`` (the test's own) or ``bootstrap``.
    """

    name: str
    runs: pd.DataFrame
    metric: str = DEFAULT_METRIC
    study: Any = None
    design: dict[str, Any] | None = None
    effect: float | None = None
    ci: str = "t"
    _comparisons: dict[tuple, pd.DataFrame] = field(default_factory=dict, repr=False)

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

    @cached_property
    def values(self) -> dict[str, pd.Series]:
        """Per variant, the metric of each finished seed (what comparisons test)."""
        return seed_values(self.runs, self.metric)

    @cached_property
    def baseline(self) -> str | None:
        """The file's ``baseline``, else the variant in DAT's own setting (the paper's
        reference row), else the first variant."""
        order = list(self.summary["variant"]) if len(self.summary) else []
        named = (self.design or {}).get("baseline")
        if named in order:
            return named
        default = [v for v in order if paper.is_dat_default(self.knobs_of(v))]
        return (default or order or [None])[0]

    def comparison(self, order: list[str], lookup: PaperLookup | None = None) -> pd.DataFrame:
        """Each variant of ``order`` against the baseline (``compare_to_baseline``, the CI
        clipped to the metric's range) with the seeds to a decision and the fixed design's
        seeds at the observed difference of its row, or ``effect``. ``lookup`` (the paper's
        rows) keys the cache only: the tables that have one share it with their figures."""
        key = (tuple(order), lookup)
        if key not in self._comparisons:  # a table and its figure share one computation
            comp = compare_to_baseline(self.values, order, str(self.baseline), self.ci)
            low, high = difference_range(self.metric)
            comp["ci_low"], comp["ci_high"] = (
                comp["ci_low"].clip(low),
                comp["ci_high"].clip(upper=high),
            )
            comp = power.add_seeds_needed(comp, self.values, self._effects(order))
            self._comparisons[key] = comp
        return self._comparisons[key]

    def _effects(self, order: list[str]) -> dict[str, tuple]:
        """``--effect`` for every row (metric units); none: each row's observed difference."""
        if self.effect is None:
            return {}
        scale = 100.0 if is_accuracy(self.metric) else 1.0
        return {v: (self.effect / scale, "--effect") for v in order}

    @cached_property
    def verdicts(self) -> list[ClaimVerdict]:
        """The file's claims judged on the runs (none when no design is known)."""
        claims = (self.design or {}).get("claims") or []
        return evaluate(claims, self.values, self.metric, self.effect)

    def knobs_of(self, variant: str) -> dict[str, Any]:
        return self._knobs[variant]

    @cached_property
    def _knobs(self) -> dict[str, dict[str, Any]]:
        """Knobs by variant, read once (a sweep's table asks for hundreds of variants)."""
        return {str(row["variant"]): knobs_of_row(row) for _, row in self.summary.iterrows()}

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
        f"(1 multiply-add = 1) at batch 1; train s: wall-clock seconds of training, mean over "
        f"those seeds, on the machines they ran on. † marks variants with runs that are not "
        f"finished (listed below); they are not in the statistics."
    )
    text += (
        " Δ: difference from the baseline (variant - baseline) with its 95% CI, paired t by "
        "seed when both have the same finished seeds, else Welch t; p adjusted across the "
        "table (Holm); * marks a difference significant after adjustment (p < 0.05). Seeds to "
        "a decision: the expected seeds until the sequential rule decides (docs/decisions.md; "
        "seeded simulation, up to 30 seeds), at the observed spread and the observed difference "
        "of that row (or --effect); Fixed design: seeds per variant of a fixed-n t-test with "
        "80% power at 0.05 at that same difference and spread."
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


def compared_table(
    group: Group, summary: pd.DataFrame, lookup: PaperLookup | None = None, **kwargs: Any
) -> Table:
    """:func:`variant_table` of ``summary`` (rows in its order) with the comparison against
    the baseline and, in the notes, how many seeds the rows' differences need."""
    order = list(summary["variant"])
    comp = group.comparison(order, lookup) if group.baseline is not None else None
    table = variant_table(summary, metric=group.metric, paper_lookup=lookup, comparison=comp,
                          **kwargs)  # fmt: skip
    if comp is not None:
        table.notes += seeds_notes(group, comp)
    return table


def seeds_notes(group: Group, comp: pd.DataFrame) -> list[str]:
    """One line per row that the rule expects to need more seeds than it has."""
    scale, unit = (100.0, " points") if is_accuracy(group.metric) else (1.0, "")
    notes = []
    for row in comp.itertuples(index=False):
        have = min(row.n, row.n_baseline)
        rule = row.seeds_to_decision
        if row.variant == row.baseline or not np.isfinite(rule) or rule <= have:
            continue
        fixed = (f"{int(row.seeds_needed)}" if np.isfinite(row.seeds_needed)
                 else f"more than {power.MAX_SEEDS}")  # fmt: skip
        source = "--effect" if row.effect_source == "--effect" else "the observed difference"
        notes.append(
            f"Seeds: {row.variant} vs {row.baseline}: the rule expects {rule:.1f} seeds to a "
            f"decision at {source} of {row.effect * scale:+.2f}{unit} (spread "
            f"{row.sd * scale:.2f}{unit}; a fixed design: {fixed} per variant); it has {have}."
        )
    return notes
