"""The report's "damaged runs" section: runs left out because they cannot be trusted.

A run with an unreadable document (``dat_lab.experiments.documents``) is not loaded, and a
finished sweep trial whose run directory is missing has no result to show; the report still
covers everything else and lists these, each with its file and error, so that one bad file
never hides a whole study. ``dat-lab store check --repair`` sets them aside; the next
``dat-lab run`` or ``sweep`` trains them again.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dat_lab.results.load import DamagedRun
from dat_lab.results.studies import missing_trial_runs

TITLE = "damaged runs"
HINT = (
    "Left out of every table above. `dat-lab store check --repair` moves them to the store's "
    "quarantine; the next `dat-lab run` (or `sweep`) trains them again."
)


def damaged_runs(runs: pd.DataFrame, root: str | Path, found: dict[str, Any]) -> list[DamagedRun]:
    """The damaged runs of a loaded store, then the runs its sweeps' journals name but it
    lacks (``found``: the studies by name)."""
    out = list(runs.attrs.get("damaged", []))
    for study, number, run_id in missing_trial_runs(root, found):
        out.append(
            DamagedRun(run_id, "runs/" + run_id, f"missing: trial {number} of study {study!r}")
        )
    return out


def markdown(rows: Sequence[DamagedRun]) -> str:
    if not rows:
        return ""
    lines = [f"## {TITLE}", "", HINT, "", "| run id | file | error |", "|---|---|---|"]
    lines += [f"| {r.run_id} | {r.file} | {r.error.replace('|', '/')} |" for r in rows]
    return "\n".join(lines) + "\n"


def html_fragment(rows: Sequence[DamagedRun]) -> str:
    cells = "".join(
        f"<tr><td>{html.escape(r.run_id)}</td><td>{html.escape(r.file)}</td>"
        f"<td>{html.escape(r.error)}</td></tr>"
        for r in rows
    )
    return (
        f"<p>{html.escape(HINT)}</p><table><thead><tr><th>run id</th><th>file</th>"
        f"<th>error</th></tr></thead><tbody>{cells}</tbody></table>"
    )
