"""Paper-shaped tables of an experiment's variants, rendered as Markdown, LaTeX and CSV.

A :class:`Table` holds both the numbers (``data``, full precision, what the CSV holds) and the
display cells (what Markdown and LaTeX show), built from the same summary so that they cannot
disagree. Rows are variants; columns are the knobs that matter for the ablation, FLOPs,
#Param, top-1 mean +- std, its 95% CI, n (finished seeds), the state of the runs, and the
paper's ImageNet numbers where there are any (labelled as such).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from dat_lab.results import paper
from dat_lab.results.knobs import KNOB_LABELS, knobs_of_row
from dat_lab.results.power import seeds_needed_text, seeds_to_decision_text
from dat_lab.text import DASH, markdown_table, si

FORMATS = ("md", "latex", "csv")
SUFFIX = {"md": ".md", "latex": ".tex", "csv": ".csv"}

PaperLookup = Callable[[dict[str, Any]], "paper.PaperRow | None"]


@dataclass(frozen=True)
class Column:
    """A column computed from a summary row: its header, display cell and CSV fields."""

    header: str
    cell: Callable[[pd.Series], str]
    record: Callable[[pd.Series], dict[str, Any]]


@dataclass
class Table:
    """One table: ``header`` and ``cells`` for display, ``data`` for CSV, and the text."""

    name: str
    title: str
    caption: str
    header: list[str]
    cells: list[list[str]]
    data: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def is_accuracy(metric: str) -> bool:
    """Accuracy metrics are stored as fractions and shown in percent."""
    return "acc" in metric.rsplit("/", 1)[-1]


def points_scale(metric: str) -> float:
    """What a value of the metric is multiplied by to be shown: 100 for an accuracy (a
    fraction shown in percent points), else 1."""
    return 100.0 if is_accuracy(metric) else 1.0


def value_range(metric: str) -> tuple[float, float]:
    """The values a metric can take: [0, 1] for an accuracy (a fraction), else unbounded.
    Intervals are clipped to it (a t interval of seeds near 100% would run past it)."""
    return (0.0, 1.0) if is_accuracy(metric) else (-math.inf, math.inf)


def difference_range(metric: str) -> tuple[float, float]:
    """The values a difference of two of the metric's values can take."""
    low, high = value_range(metric)
    return low - high, high - low


def knob_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def runs_text(row: pd.Series) -> str:
    """``"2/2 finished"``, ``"1/3 finished, 1 failed, 1 running"``."""
    parts = [f"{row['n']}/{row['n_runs']} finished"]
    for key in ("failed", "running", "interrupted", "pending", "no_metric"):
        count = int(row[f"n_{key}"])
        if count:
            parts.append(f"{count} {key.replace('_', ' ')}")
    return ", ".join(parts)


def _stat_cells(row: pd.Series, scale: float) -> tuple[str, str]:
    n = int(row["n"])
    if n == 0:
        return DASH, DASH
    mean = row["mean"] * scale
    if n == 1:
        return f"{mean:.2f} (1 seed)", DASH
    ci = f"[{row['ci_low'] * scale:.2f}, {row['ci_high'] * scale:.2f}]"
    return f"{mean:.2f} ± {row['std'] * scale:.2f}", ci


def variant_table(
    summary: pd.DataFrame,
    *,
    name: str,
    title: str,
    caption: str,
    metric: str,
    knobs: Sequence[str] = (),
    paper_lookup: PaperLookup | None = None,
    paper_cost: bool = False,
    comparison: pd.DataFrame | None = None,
) -> Table:
    """The table of one experiment from :func:`dat_lab.results.summarize`'s frame.

    Args:
        knobs: knob names (``knob.<name>`` columns) shown after the variant.
        paper_lookup: maps a variant's knobs to the paper's row (None: no paper column).
        paper_cost: also show the paper's FLOPs and #Param (the paper's Table 4 has them).
        comparison: rows of ``Group.comparison`` (difference from the baseline, CI, Holm p,
            seeds to a decision, fixed design), shown after n; the table's rows follow
            ``summary``'s order.
    """
    extra = comparison_columns(comparison, metric)
    if comparison is not None:
        by_variant = comparison.set_index("variant").add_prefix("cmp.")
        summary = summary.join(by_variant, on="variant")
    scale = points_scale(metric)
    unit = " (%)" if scale == 100.0 else ""
    metric_name = metric.removeprefix("final.")
    header = ["Variant", *(KNOB_LABELS.get(k, k) for k in knobs), "FLOPs", "#Param", "Train s",
              f"{metric_name}{unit} mean ± std", "95% CI", "n", "Runs",
              *(c.header for c in extra)]  # fmt: skip
    if paper_lookup is not None:
        if paper_cost:
            header += ["Paper FLOPs", "Paper #Param"]
        header.append("Paper top-1 (%)")
    cells, records, notes = [], [], []
    for _, row in summary.iterrows():
        knob_values = knobs_of_row(row)
        top1, ci = _stat_cells(row, scale)
        marker = " †" if row["problems"] else ""
        line = [f"{row['variant']}{marker}", *(knob_text(knob_values.get(k)) for k in knobs),
                si(row["flops"]), si(row["params"]), _seconds(row.get("train_s")), top1, ci,
                str(int(row["n"])), runs_text(row), *(c.cell(row) for c in extra)]  # fmt: skip
        found = paper_lookup(knob_values) if paper_lookup is not None else None
        if paper_lookup is not None:
            if paper_cost:
                line += [_paper_num(found, "gflops", "G"), _paper_num(found, "mparams", "M")]
            line.append(_paper_num(found, "top1", ""))
        cells.append(line)
        record = _record(row, knobs, metric, found)
        for column in extra:
            record.update(column.record(row))
        records.append(record)
        notes += [f"† {row['variant']}: {problem}" for problem in row["problems"]]
    data = pd.DataFrame.from_records(records)
    return Table(name, title, caption, header, cells, data, notes)


def _seconds(value: float | None) -> str:
    return DASH if value is None or not math.isfinite(value) else f"{value:.0f}"


def _paper_num(row: paper.PaperRow | None, attr: str, unit: str) -> str:
    value = getattr(row, attr) if row is not None else None
    if row is None or value is None:
        return DASH
    text = f"{value:.2f}{unit}"
    return f"{text} ({row.note})" if attr == "top1" and row.note else text


def _record(
    row: pd.Series, knobs: Sequence[str], metric: str, found: paper.PaperRow | None
) -> dict:
    record = {"variant": row["variant"], **{k: knobs_of_row(row)[k] for k in knobs}}
    record.update({
        "flops": row["flops"], "params": row["params"], "train_s": row.get("train_s"),
        "metric": metric,
        "mean": row["mean"], "std": row["std"], "ci95_low": row["ci_low"],
        "ci95_high": row["ci_high"], "n": int(row["n"]), "n_runs": int(row["n_runs"]),
        "n_failed": int(row["n_failed"]), "n_running": int(row["n_running"]),
        "n_interrupted": int(row["n_interrupted"]), "n_pending": int(row["n_pending"]),
        "n_no_metric": int(row["n_no_metric"]),
        "seeds": " ".join(str(s) for s in row["seeds"]),
        "paper_top1_pct": found.top1 if found else None,
        "paper_gflops": found.gflops if found else None,
        "paper_mparams": found.mparams if found else None,
        "problems": " | ".join(row["problems"]),
    })  # fmt: skip
    return record


def comparison_columns(comparison: pd.DataFrame | None, metric: str) -> list[Column]:
    """Difference from the baseline with its CI (``*``: significant after Holm), the test
    and adjusted p, the seeds to a decision under the sequential rule and the fixed design's
    seeds; none without a comparison."""
    if comparison is None or comparison.empty:
        return []

    scale = points_scale(metric)
    base = str(comparison["baseline"].iloc[0])

    def delta(row: pd.Series) -> str:
        if row["variant"] == base:
            return "baseline"
        diff, low = row["cmp.diff"], row["cmp.ci_low"]
        if not math.isfinite(diff):
            return DASH
        text = f"{diff * scale:+.2f}"
        if math.isfinite(low):
            text += f" [{low * scale:+.2f}, {row['cmp.ci_high'] * scale:+.2f}]"
        return text + (" *" if row["cmp.significant"] else "")

    def p_cell(row: pd.Series) -> str:
        if not math.isfinite(row["cmp.p"]):
            return DASH
        n = f"n {int(row['cmp.n'])}/{int(row['cmp.n_baseline'])}"
        return f"{row['cmp.p_holm']:.3g} ({row['cmp.test']}, {n})"

    def record(row: pd.Series) -> dict[str, Any]:
        keys = ("baseline", "test", "n", "n_baseline", "diff", "ci_low", "ci_high", "p",
                "p_holm", "significant", "effect", "effect_source", "sd", "seeds_to_decision",
                "decided_share", "seeds_needed")  # fmt: skip
        return {f"vs_baseline_{k}": row[f"cmp.{k}"] for k in keys}

    return [
        Column(f"Δ vs {base} [95% CI]", delta, record),
        Column("Holm p (test, n / n baseline)", p_cell, lambda row: {}),
        Column(
            "Seeds to a decision",
            lambda row: seeds_to_decision_text(_power_fields(row)),
            lambda row: {},
        ),  # fmt: skip
        Column("Fixed design", lambda row: seeds_needed_text(_power_fields(row)), lambda row: {}),
    ]


def _power_fields(row: pd.Series) -> dict[str, Any]:
    """The fields the seed cells read, without ``cmp.`` (a dict: renaming the whole row's
    Series per cell cost more than the rest of the table)."""
    keys = ("seeds_needed", "sd", "effect", "seeds_to_decision", "decided_share")
    return {k: row.get(f"cmp.{k}") for k in keys}


# -- rendering ------------------------------------------------------------------------------


def to_markdown(table: Table) -> str:
    out = io.StringIO()
    out.write(f"### {table.title}\n\n")
    out.write(markdown_table(table.header, table.cells))
    out.write(f"\n{table.caption}\n")
    if table.notes:
        out.write("\n" + "".join(f"- {note}\n" for note in table.notes))
    return out.getvalue()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}  # fmt: skip


def latex_escape(text: str) -> str:
    out = "".join(_LATEX_SPECIAL.get(c, c) for c in text)
    return (
        out.replace("±", r"$\pm$")
        .replace(DASH, "--")
        .replace("†", r"$^\dagger$")
        .replace("‡", r"$^\ddagger$")
    )


def to_latex(table: Table) -> str:
    """A ``table`` float with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``)."""
    spec = "l" * (1 + _leading_text_columns(table)) + "r" * (
        len(table.header) - 1 - _leading_text_columns(table)
    )
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        f"\\caption{{{latex_escape(table.title)}. {latex_escape(table.caption)}}}",
        f"\\label{{tab:{table.name}}}",
        f"\\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in table.header) + r" \\",
        r"\midrule",
        *(" & ".join(latex_escape(c) for c in line) + r" \\" for line in table.cells),
        r"\bottomrule",
        r"\end{tabular}",
    ]
    if table.notes:
        lines += [r"\par\smallskip\footnotesize"] + [latex_escape(n) + r"\\" for n in table.notes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _leading_text_columns(table: Table) -> int:
    """Knob columns after the variant are left-aligned text (they end where FLOPs begins)."""
    return table.header.index("FLOPs") - 1 if "FLOPs" in table.header else 0


def to_csv(table: Table) -> str:
    return table.data.to_csv(index=False, lineterminator="\n")


RENDERERS = {"md": to_markdown, "latex": to_latex, "csv": to_csv}


def render(table: Table, fmt: str) -> str:
    return RENDERERS[fmt](table)
