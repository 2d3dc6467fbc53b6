"""The report as one self-contained HTML page (``OUT/report.html``): open it anywhere, offline.

Nothing is fetched: the style sheet is inline, there is no script, and every figure is the
report's SVG file embedded as a ``data:`` URI in an ``<img>`` (so a browser decodes it like
any image). The page holds a table of contents over the experiments and studies; per group
its tables (comparisons against the baseline, claims) and figures; and its runs with their
provenance (commit, dirty flag, code fingerprint, versions, host, times) and the reasons of
failed runs. Each table row links to its variant's runs.

Groups are rendered (possibly in worker processes, possibly reused from the last report) to
HTML fragments whose figures are placeholders naming the SVG file; :func:`page` assembles
the fragments and :func:`inline_figures` embeds the SVGs.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from dat_lab.experiments.records import RunState
from dat_lab.results.tables import Table

_FIGURE = re.compile(r'<img data-figure="([^"]*)" alt="([^"]*)">')
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;
color:#222}
h1{font-size:1.6em}h2{border-bottom:2px solid #ccd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:12.5px}
th,td{border:1px solid #ccd;padding:.25em .5em;text-align:right;white-space:nowrap}
th{background:#eef}td:first-child,th:first-child{text-align:left}
tr:target{background:#ffa}caption{caption-side:bottom;text-align:left;color:#555;
white-space:normal;padding-top:.4em;font-size:12px}
.scroll{overflow-x:auto}.sig{font-weight:bold;color:#063}
.supported{color:#063;font-weight:bold}.contradicted{color:#a00;font-weight:bold}
.undecided{color:#886}.equivalent{color:#036;font-weight:bold}.failed{color:#a00}
figure{margin:1em 0}
figure img{max-width:100%;height:auto;border:1px solid #eee}
ul.notes{color:#444;font-size:12.5px}nav ul{columns:2}
"""
RUN_COLUMNS = (
    ("prov.dat_lab.commit", "commit"),
    ("prov.dat_lab.dirty", "dirty"),
    ("prov.code.fingerprint", "code"),  # of the model, training and data code
    ("prov.dat_lab.version", "dat-lab"),
    ("prov.python.version", "python"),
    ("prov.torch.version", "torch"),
    ("prov.packages.lightning", "lightning"),
    ("prov.machine.host", "host"),
    ("created", "created"),
    ("prov.started", "started"),
    ("prov.ended", "ended"),
)


def anchor(*parts: object) -> str:
    """An HTML id from names (experiment, variant, run id): letters, digits, ``-`` and ``_``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", "-".join(str(p) for p in parts))


def _cell(text: str) -> str:
    escaped = html.escape(text)
    if text.endswith(" *"):
        return f'<span class="sig">{escaped}</span>'
    if text in ("supported", "contradicted", "equivalent", "undecided"):
        return f'<span class="{text}">{escaped}</span>'
    return escaped


def table_html(table: Table, group: str) -> str:
    """A table; its rows link to the runs of their variant (when it names variants)."""
    variants = list(table.data["variant"]) if "variant" in table.data else []
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    rows = []
    for i, line in enumerate(table.cells):
        cells = [_cell(c) for c in line]
        if i < len(variants):
            cells[0] = f'<a href="#{anchor("runs", group, variants[i])}">{cells[0]}</a>'
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in table.notes)
    return (
        f'<h3 id="{anchor(group, table.name)}">{html.escape(table.title)}</h3>'
        f'<div class="scroll"><table><caption>{html.escape(table.caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        + (f'<ul class="notes">{notes}</ul>' if notes else "")
    )


def figure_html(stem: str, svg: Path) -> str:
    """A placeholder for the figure ``svg``, embedded by :func:`inline_figures`."""
    alt = html.escape(stem)
    return (
        f'<figure><img data-figure="{html.escape(str(svg))}" alt="{alt}">'
        f"<figcaption>{alt}</figcaption></figure>"
    )


def inline_figures(text: str) -> str:
    """Replace every figure placeholder by its SVG file as a ``data:`` URI."""

    def embed(match: re.Match) -> str:
        path, alt = Path(html.unescape(match.group(1))), match.group(2)
        try:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
        except OSError:
            return f'<p class="failed">figure {alt} is missing ({html.escape(str(path))})</p>'
        return f'<img src="data:image/svg+xml;base64,{data}" alt="{alt}">'

    return _FIGURE.sub(embed, text)


def _text(value: object, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return str(value)[:10] if column.endswith((".commit", ".fingerprint")) else str(value)


def runs_html(group: str, runs: pd.DataFrame) -> str:
    """The group's runs by variant (each an anchor): state, provenance, and failures' reasons."""
    if runs.empty:
        return ""
    head = "".join(
        f"<th>{h}</th>" for h in ("variant", "seed", "run", "state", *(n for _, n in RUN_COLUMNS))
    )
    columns = [c for c, _ in RUN_COLUMNS]
    frame = runs.reindex(columns=["variant", "seed", "run_id", "state", "reason", *columns])
    frame = frame.sort_values(["variant", "seed"], kind="stable")
    rows, failed, seen = [], [], set()
    finished = RunState.FINISHED.value
    stopped = (RunState.FAILED.value, RunState.INTERRUPTED.value)
    for variant, seed, run_id, state, reason, *prov in frame.itertuples(index=False):
        variant = str(variant)
        ident = "" if variant in seen else f' id="{anchor("runs", group, variant)}"'
        seen.add(variant)
        shown = html.escape(str(state))
        if state != finished:
            shown = f'<span class="failed">{shown}</span>'
        cells = [html.escape(variant), str(seed), html.escape(str(run_id)), shown]
        cells += [html.escape(_text(v, c)) for v, c in zip(prov, columns, strict=True)]
        rows.append(f"<tr{ident}><td>" + "</td><td>".join(cells) + "</td></tr>")
        if state in stopped:
            why = reason if isinstance(reason, str) else "(no reason recorded)"
            failed.append(
                f"<li>{html.escape(f'{variant} seed {seed} ({run_id}): {state}: {why}')}</li>"
            )
    out = (
        f'<h3 id="{anchor("runs", group)}">{html.escape(group)}: runs and provenance</h3>'
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    if failed:
        out += f"<h4>Runs that did not finish</h4><ul>{''.join(failed)}</ul>"
    return out


def page(title: str, sections: Sequence[tuple[str, str]], runs: dict[str, pd.DataFrame]) -> str:
    """The whole document: contents, then per group its fragment and its runs."""
    toc = "".join(
        f'<li><a href="#{anchor("group", name)}">{html.escape(name)}</a></li>'
        for name, _ in sections
    )
    body = "".join(
        f'<section id="{anchor("group", name)}"><h2>{html.escape(name)}</h2>{fragment}'
        f"{runs_html(name, runs.get(name, pd.DataFrame()))}</section>"
        for name, fragment in sections
    )
    return inline_figures(
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><nav><h2>Contents</h2><ul>{toc}</ul></nav>"
        f"{body}</body></html>"
    )
