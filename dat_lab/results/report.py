"""``dat-lab report``'s engine: stored runs -> tables and figures on disk. Never trains.

For each experiment or study (a *group*): the first analysis of ``analyses.TABLES`` that
applies writes its table (``NAME.md``, ``.tex``, ``.csv``) and figure; every analysis of
``analyses.FIGURES`` that applies adds figures (``.png`` and ``.pdf``). Layout::

    OUT/report.md                  every Markdown table, with links to the figures
    OUT/report.html                the same in one self-contained page (see html.py)
    OUT/runs.csv                   the full run frame (one row per run, see load_runs)
    OUT/<group>/<table>.md|.tex|.csv
    OUT/<group>/<figure>.png|.pdf|.svg
    OUT/<group>/.report-stamp.json  what the group's files were made from

A group whose inputs (runs, logs, options, this code) are unchanged since the last report into
the same folder is not drawn again: its files are reused (see :func:`fingerprint`).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import multiprocessing
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd

from dat_lab.experiments.records import RunState, attempt_metrics_csvs
from dat_lab.experiments.store import DEFAULT_ROOT
from dat_lab.fingerprint import result_code_fingerprint
from dat_lab.results import analyses, code_versions, damaged, html, studies, tables
from dat_lab.results.analyses.base import DEFAULT_METRIC, Group, Output
from dat_lab.results.claims import claims_table
from dat_lab.results.designs import load_designs
from dat_lab.results.load import load_runs, memberships
from dat_lab.schema import ConfigError, load_config_file

DEFAULT_OUT = Path("reports")
FIGURE_FORMATS = ("png", "pdf", "svg")  # svg: embedded in report.html (not drawn without it)
FIGURE_DPI = 150
SWEEP_PREFIX = "sweep/"  # dat_lab.sweeps stores trial runs under experiment "sweep/NAME"
STAMP = ".report-stamp.json"  # per group: fingerprint of the inputs, files written


@dataclass
class Report:
    """What a report wrote, and its Markdown."""

    files: list[Path] = field(default_factory=list)
    markdown: str = ""
    notes: list[str] = field(default_factory=list)


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"md,latex"`` -> ``("md", "latex")``; ConfigError naming ``--format`` otherwise."""
    items = text.split(",") if isinstance(text, str) else list(text)
    items = [i.strip() for i in items if i.strip()]
    for item in items:
        if item not in tables.FORMATS:
            raise ConfigError(
                f"unknown format {item!r}; allowed: {', '.join(tables.FORMATS)}", "--format"
            )
    if not items:
        raise ConfigError(f"needs at least one of {', '.join(tables.FORMATS)}", "--format")
    return tuple(dict.fromkeys(items))


def group_name(target: str) -> str:
    """An experiment/study name, or the group of an experiment or study (sweep) YAML file."""
    path = Path(target)
    if target.endswith((".yaml", ".yml")):
        if not path.is_file():
            raise ConfigError("no such experiment or study file", target)
        data = load_config_file(path)
        name = str(data.get("name") or path.stem)
        return f"{SWEEP_PREFIX}{name}" if "space" in data else name  # a study file's runs
    return target


def attach_studies(experiments: Sequence[str], found: dict) -> tuple[list[str], dict]:
    """Every group name, and the Optuna study of each sweep group.

    A sweep's trial runs are stored under the experiment ``sweep/NAME`` (see
    ``dat_lab.sweeps``) while its Optuna study is ``NAME``: the study joins that group. A
    study with no such runs is a group of its own (its runs found by the trials' run ids).
    """
    studies_by_group = {}
    for name, study in found.items():
        studies_by_group[
            f"{SWEEP_PREFIX}{name}" if f"{SWEEP_PREFIX}{name}" in experiments else name
        ] = study
    known = list(dict.fromkeys([*experiments, *studies_by_group]))
    return known, studies_by_group


def select_groups(names: Iterable[str], known: Sequence[str], root: Path) -> list[str]:
    """The requested names (all known ones if none), each checked against the store; a
    study's own name stands for its ``sweep/NAME`` group."""
    wanted = [group_name(n) for n in names]
    wanted = [f"{SWEEP_PREFIX}{n}" if n not in known and f"{SWEEP_PREFIX}{n}" in known else n
              for n in wanted]  # fmt: skip
    if not wanted:
        return list(known)
    for name in wanted:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"no experiment or study {name!r} in the run store {root}{hint}; "
                f"stored: {', '.join(known) or 'none'}",
                "EXPERIMENT_OR_STUDY",
            )
    return list(dict.fromkeys(wanted))


def build_groups(
    members: pd.DataFrame,
    names: Sequence[str],
    found: dict,
    metric: str,
    designs: dict[str, dict[str, Any]] | None = None,
    effect: float | None = None,
    ci: str = "t",
) -> list[Group]:
    """One :class:`Group` per name: the runs whose identity names it, or for a study whose
    trials' runs carry other identities, the runs its trials name. ``designs``: the experiment
    files' baselines and claims by name; ``effect``, ``ci``: see :class:`Group`."""
    groups = []
    for name in names:
        runs = members[members["experiment"] == name] if len(members) else members
        study = found.get(name)
        if study is not None and runs.empty:
            ids = studies.trial_run_ids(study)
            runs = members[members["run_id"].isin(ids)].drop_duplicates("run_id")
        design = (designs or {}).get(name)
        groups.append(Group(name, runs.reset_index(drop=True), metric, study, design, effect, ci))
    return groups


def analyse(group: Group) -> list[Output]:
    """The table of the first table analysis that applies, then every applicable figure."""
    if group.runs.empty:
        return [Output(notes=[f"{group.name}: no runs in the store yet"])]
    table_analysis = next(a for a in analyses.TABLES if a.applies(group))
    outputs = [table_analysis.build(group)]
    for table in outputs[0].tables:  # rows from other code, or several code versions: marked
        code_versions.mark_table(table, group.runs)
    if group.verdicts:
        outputs[0].tables.append(claims_table(group.verdicts, group.metric, group.name))
    outputs += [a.build(group) for a in analyses.FIGURES if a.applies(group)]
    return outputs


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "_"


def write_outputs(
    folder: Path,
    outputs: Sequence[Output],
    formats: Sequence[str],
    group: str = "",
    figure_formats: Sequence[str] = FIGURE_FORMATS,
) -> tuple[list[Path], str, str]:
    """Write tables and figures of one group; returns the files, the group's Markdown and its
    HTML fragment (see :mod:`dat_lab.results.html`)."""
    folder.mkdir(parents=True, exist_ok=True)
    files, md, page = [], [], []
    for output in outputs:
        for table in output.tables:
            for fmt in formats:
                path = folder / f"{table.name}{tables.SUFFIX[fmt]}"
                path.write_text(tables.render(table, fmt))
                files.append(path)
            md.append(tables.to_markdown(table))
            page.append(html.table_html(table, group))
        for stem, fig in output.figures.items():
            # Lay the figure out once, then drop the layout engine: with any engine set (even
            # "none", a placeholder) savefig draws the whole figure once more before each
            # format's own draw, which would double the drawing time. A figure without an
            # engine (laid out by its own tight_layout call) needs no layout draw at all.
            if fig.get_layout_engine() is not None:
                fig.draw_without_rendering()
                # None removes the engine unless rcParams name a default one: they don't here
                with matplotlib.rc_context(
                    {"figure.autolayout": False, "figure.constrained_layout.use": False}
                ):
                    fig.set_layout_engine(None)
            for fmt in figure_formats:
                path = folder / f"{stem}.{fmt}"
                with matplotlib.rc_context({"svg.fonttype": "none"}):  # SVG text as text
                    fig.savefig(path, dpi=FIGURE_DPI)
                files.append(path)
            plt.close(fig)
            md.append(f"![{stem}]({folder.name}/{stem}.png)\n")
            if "svg" in figure_formats:
                page.append(html.figure_html(stem, folder / f"{stem}.svg"))
        md += [f"- {note}\n" for note in output.notes]
        page += [f"<p>{html.html.escape(note)}</p>" for note in output.notes]
    return files, "\n".join(md), "".join(page)


def state_counts(runs: pd.DataFrame) -> str:
    counts = runs["state"].value_counts() if len(runs) else pd.Series(dtype=int)
    order = [s.value for s in RunState]
    return ", ".join(f"{int(counts[s])} {s}" for s in order if s in counts) or "no runs"


def load_selection(
    root: Path, names: Sequence[str], storage_url: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], list[str]]:
    """The stored runs, their (run, experiment) memberships, the Optuna studies found, and
    the experiment/study names selected from ``names`` (all if empty)."""
    runs = load_runs(root)
    members = memberships(runs)
    experiments = list(dict.fromkeys(members.get("experiment", pd.Series(dtype=str))))
    known, found = attach_studies(experiments, studies.load_studies(root, storage_url))
    return runs, members, found, select_groups(names, known, root)


def build_report(
    root: str | Path = DEFAULT_ROOT,
    names: Sequence[str] = (),
    formats: Sequence[str] = tables.FORMATS,
    out: str | Path = DEFAULT_OUT,
    metric: str = DEFAULT_METRIC,
    storage_url: str | None = None,
    only: Sequence[str] | None = None,
    jobs: int | None = None,
    log: Callable[[str], None] = print,
    effect: float | None = None,
    ci: str = "t",
    write_html: bool = True,
) -> Report:
    """Write the report of ``names`` (every stored experiment and study if empty) to ``out``.

    ``only``: analysis names to run (default: the table that applies plus every figure).
    ``jobs``: processes that render groups (default: one per CPU; 1 = this process only).
    ``effect``: the difference (points for accuracy) that the seed figures assume
    (default: the observed difference of each row or claim); ``ci``: ``t`` or ``bootstrap``;
    ``write_html``: also write ``report.html``.
    """
    root, out = Path(root), Path(out)
    runs, members, found, selected = load_selection(root, names, storage_url)
    log(f"report: {len(runs)} runs in {root} ({state_counts(runs)}); "
        f"{len(selected)} experiment(s)/stud(ies) -> {out}")  # fmt: skip
    if not found:
        log("report: no Optuna storage found under the store (no --optuna-storage): "
            "no importance or history plots")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    designs = load_designs(root, names)
    groups = build_groups(members, selected, found, metric, designs, effect, ci)
    figures = FIGURE_FORMATS if write_html else tuple(f for f in FIGURE_FORMATS if f != "svg")
    rendered = render_groups(groups, out, formats, only, jobs, figures)
    report = Report()
    for files, _, notes, _ in rendered:
        report.files += files
        report.notes += notes
    report.markdown = "\n".join(r[1] for r in rendered)
    bad = damaged.damaged_runs(runs, root, found)
    if bad:
        report.markdown += "\n" + damaged.markdown(bad)
        report.notes.append(f"{len(bad)} damaged run(s) left out: see '{damaged.TITLE}'")
    (out / "report.md").write_text(f"# dat-lab report ({root})\n\n{report.markdown}")
    runs.to_csv(out / "runs.csv", index=False)
    report.files += [out / "report.md", out / "runs.csv"]
    if write_html:
        sections = [(g.name, r[3]) for g, r in zip(groups, rendered, strict=True)]
        if bad:
            sections.append((damaged.TITLE, damaged.html_fragment(bad)))
        text = html.page(f"dat-lab report ({root})", sections, {g.name: g.runs for g in groups})
        (out / "report.html").write_text(text)
        report.files.append(out / "report.html")
    return report


# Groups handed to forked workers by index (a forked child sees the parent's memory, so
# nothing large is pickled; only the files, Markdown and notes come back).
_GROUPS: list[Group] = []


def _render(
    index: int,
    out: Path,
    formats: Sequence[str],
    only: Sequence[str] | None,
    figures: Sequence[str] = FIGURE_FORMATS,
):
    group = _GROUPS[index]
    folder = out / safe_name(group.name)
    key = fingerprint(group, (*formats, *figures), only)
    cached = _cached(folder, key)
    if cached is not None:
        return cached
    outputs = _run_only(group, only) if only else analyse(group)
    files, md, page = write_outputs(folder, outputs, formats, group.name, figures)
    result = (files, f"## {group.name}\n\n{md}", [n for o in outputs for n in o.notes], page)
    stamp = {
        "key": key,
        "files": [str(f) for f in files],
        "markdown": result[1],
        "notes": result[2],
        "html": page,
    }
    (folder / STAMP).write_text(json.dumps(stamp))
    return result


def fingerprint(group: Group, formats: Sequence[str], only: Sequence[str] | None) -> str:
    """A hash of everything a group's outputs depend on: its runs (ids, states, times, final
    metrics, cost, config), their CSV logs (size and mtime), the options, this package's
    source and the installed model/training/data code's fingerprint. Equal fingerprints mean
    the files from last time are still right."""
    digest = hashlib.sha256()
    cols = [c for c in group.runs.columns if c not in ("identities", "path")]
    digest.update(group.runs[cols].to_csv(index=False).encode())
    for path in group.runs["path"]:
        for log in attempt_metrics_csvs(Path(path)):
            st = log.stat()
            digest.update(f"{log}:{st.st_size}:{st.st_mtime_ns}".encode())
    options = (group.name, group.metric, tuple(formats), tuple(only or ()), group.design,
               group.effect, group.ci)  # fmt: skip
    digest.update(repr(options).encode())
    study = group.study
    if study is not None:
        digest.update(
            repr(
                [(t.number, t.state, t.values, t.params) for t in study.get_trials(deepcopy=False)]
            ).encode()
        )
        digest.update(repr(sorted(study.user_attrs.items())).encode())  # a race's settings
    digest.update(_source_hash().encode())
    digest.update(result_code_fingerprint().encode())  # rows are marked against it
    return digest.hexdigest()


@functools.cache
def _source_hash() -> str:
    """Hash of the results package's code: a new dat-lab version redraws everything."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _cached(folder: Path, key: str):
    """Last report's (files, markdown, notes) of this group if its fingerprint is ``key``."""
    try:
        stamp = json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return None
    files = [Path(f) for f in stamp.get("files", [])]
    if stamp.get("key") != key or not all(f.is_file() for f in files):
        return None
    return files, stamp["markdown"], stamp["notes"], stamp.get("html", "")


def render_groups(
    groups: Sequence[Group],
    out: Path,
    formats: Sequence[str],
    only: Sequence[str] | None,
    jobs: int | None = None,
    figures: Sequence[str] = FIGURE_FORMATS,
) -> list[tuple[list[Path], str, list[str], str]]:
    """Analyse and write every group: in ``jobs`` forked processes (default: one per CPU) when
    there are several groups and the platform forks safely (Linux), else in this process.
    Figures dominate a report's time and groups are independent."""
    global _GROUPS
    jobs = min(len(groups), jobs or os.cpu_count() or 1)
    _GROUPS = list(groups)
    try:
        if jobs > 1 and sys.platform.startswith("linux"):
            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
                futures = [
                    pool.submit(_render, i, out, formats, only, figures)
                    for i in range(len(groups))
                ]
                return [f.result() for f in futures]
        return [_render(i, out, formats, only, figures) for i in range(len(groups))]
    finally:
        _GROUPS = []


def _run_only(group: Group, only: Sequence[str]) -> list[Output]:
    chosen = [analyses.BY_NAME[name] for name in only]
    return [a.build(group) for a in chosen if a.applies(group)] or [
        Output(notes=[f"{group.name}: {', '.join(only)} does not apply to this group"])
    ]
