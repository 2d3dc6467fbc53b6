"""How many seeds an experiment needs, from the runs already stored (``dat-lab run --dry-run``).

The same computation as the report's "Seeds to a decision" and "Fixed design" columns
(:meth:`Group.comparison`): for each variant against the baseline, the seeds the sequential
rule expects to need for a verdict, and the seeds per variant of a fixed-n t-test with 80%
power at 0.05, both at the difference (or ``effect``) and spread its finished seeds show.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dat_lab.results import analyses
from dat_lab.results.analyses.base import DEFAULT_METRIC, Group
from dat_lab.results.load import load_runs, memberships
from dat_lab.results.power import MAX_SEEDS
from dat_lab.results.tables import is_accuracy


def seeds_needed_lines(
    root: str | Path,
    experiment: str,
    design: dict[str, Any],
    metric: str = DEFAULT_METRIC,
    effect: float | None = None,
) -> list[str]:
    """Lines for the plan (``--dry-run``) when the experiment has fewer seeds than its rows
    need ([] if it has enough); one line saying the spread is unknown when too few runs have
    finished."""
    have = len(design.get("seeds") or ())
    root = Path(root)
    runs = load_runs(root) if (root / "runs").is_dir() else None
    members = memberships(runs) if runs is not None and len(runs) else None
    if members is None or not (members["experiment"] == experiment).any():
        return [
            f"seeds needed: unknown until seeds of {experiment!r} have finished (the "
            "seed-to-seed spread decides it; `dat-lab report` gives it then)"
        ]
    group = Group(
        experiment,
        members[members["experiment"] == experiment].reset_index(drop=True),
        metric,
        design=design,
        effect=effect,
    )
    table = next(a for a in analyses.TABLES if a.applies(group))
    comp = group.comparison(list(group.summary["variant"]), getattr(table, "LOOKUP", None))
    rows = comp[comp["variant"] != comp["baseline"]]
    rows = rows[rows["effect"].map(math.isfinite) & rows["sd"].map(math.isfinite)]
    if rows.empty:
        return [
            f"seeds needed: unknown: no variant of {experiment!r} has a known difference "
            "to detect and >= 2 finished seeds beside the baseline's"
        ]
    scale, unit = (100.0, " points") if is_accuracy(metric) else (1.0, "")
    short = []
    for row in rows.itertuples(index=False):
        rule = row.seeds_to_decision
        if math.isfinite(rule) and rule > have:
            fixed = (
                str(int(row.seeds_needed)) if math.isfinite(row.seeds_needed) else f"> {MAX_SEEDS}"
            )
            short.append(
                f"{row.variant} {rule:.1f} (Δ {row.effect * scale:+.2f}{unit}; "
                f"fixed design {fixed})"
            )
    if not short:
        return []
    source = "--effect" if effect is not None else "observed difference"
    return [
        f"seeds to a decision (sequential rule vs {group.baseline}, {source} and spread): "
        f"{', '.join(short)}; the experiment has {have} seed{'s' if have != 1 else ''}"
    ]
