"""Which code made a table's runs: rows from several code versions, or from other code, marked.

Every run records the fingerprint of the model, training and data code that trained it, at its
start and at each resume (:mod:`dat_lab.experiments.stale`). A table row whose finished runs
(the ones in its statistics) come from more than one code version, or from a version other
than the installed one, gets ``‡`` after its variant, and the versions are listed under the
table with their runs and git commits. A run recorded before fingerprints existed counts as
version ``unknown``; a run without any provenance (made by other means than ``dat-lab run``)
is not compared.

:func:`mark_table` is called by the report on each variant table; :func:`code_versions`
gives the same facts as a frame.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from dat_lab.experiments.stale import UNKNOWN
from dat_lab.fingerprint import result_code_fingerprint
from dat_lab.results.tables import Table

MARK = "‡"
FINISHED = "finished"
START = "prov.code.fingerprint"
STARTED = "prov.started"
_RESUMED = re.compile(r"prov\.resumed\.\d+\.code\.fingerprint")


def run_fingerprints(runs: pd.DataFrame) -> pd.Series:
    """Per run (row of :func:`dat_lab.results.load_runs`): the distinct code fingerprints of
    its start and resumes, as a tuple in order; ``("unknown",)`` for a start that recorded
    none, ``()`` for a run without any provenance (nothing is known to compare)."""
    resumed = [runs[c] for c in sorted(c for c in runs.columns if _RESUMED.fullmatch(c))]
    none = [None] * len(runs)
    started = runs[STARTED] if STARTED in runs else none
    starts = runs[START] if START in runs else none
    found: list[tuple[str, ...]] = []  # column-wise: a row-wise DataFrame.apply costs ~1 ms a run
    for stamp, start, *more in zip(started, starts, *resumed, strict=True):
        if not isinstance(stamp, str):
            found.append(())  # no provenance.json
            continue
        versions = [start if isinstance(start, str) else UNKNOWN]
        versions += [v for v in more if isinstance(v, str)]
        found.append(tuple(dict.fromkeys(versions)))
    return pd.Series(found, index=runs.index, dtype=object)


def code_versions(runs: pd.DataFrame, installed: str | None = None) -> pd.DataFrame:
    """Per variant: the code versions of its finished runs and whether the row is marked
    (``versions``, ``marked``); ``installed`` defaults to the code installed now."""
    installed = installed or result_code_fingerprint()
    done = runs[runs["state"] == FINISHED] if "state" in runs else runs
    prints = run_fingerprints(done)
    by_variant: dict[object, list[str]] = {}  # one pass, not a mask per variant
    variants = done["variant"] if "variant" in done else prints.iloc[0:0]
    for variant, found in zip(variants, prints.iloc[: len(variants)], strict=True):
        by_variant.setdefault(variant, []).extend(found)
    rows = []
    for variant, found in by_variant.items():
        versions = tuple(dict.fromkeys(found))
        rows.append({"variant": variant, "versions": versions,
                     "marked": bool(versions) and versions != (installed,)})  # fmt: skip
    return pd.DataFrame(rows, columns=["variant", "versions", "marked"])


def _commits(runs: pd.DataFrame, fingerprint: str) -> str:
    """The git commits (short, ``+dirty``) the runs of one code version started from."""
    if "prov.code.fingerprint" not in runs or "prov.dat_lab.commit" not in runs:
        return ""
    made = runs[runs["prov.code.fingerprint"] == fingerprint]
    dirty = made.get("prov.dat_lab.dirty", pd.Series(False, index=made.index))
    commits = {
        f"{str(c)[:10]}{' + uncommitted changes' if d is True else ''}"
        for c, d in zip(made["prov.dat_lab.commit"], dirty, strict=True)
        if isinstance(c, str) and c != UNKNOWN
    }
    return ", ".join(sorted(commits))


def version_notes(runs: pd.DataFrame, installed: str | None = None) -> list[str]:
    """The lines under a table: one per code version of its finished runs, with their count,
    the installed one named; empty when no row is marked."""
    installed = installed or result_code_fingerprint()
    table = code_versions(runs, installed)
    if not table["marked"].any():
        return []
    done = runs[runs["state"] == FINISHED] if "state" in runs else runs
    prints = run_fingerprints(done)
    lines = [f"{MARK} runs of these rows come from more than one version of the model/training/"
             f"data code, or from a version other than the one installed now ({installed}); "
             f"`dat-lab run --rerun-stale` retrains them. Code versions:"]  # fmt: skip
    for version in dict.fromkeys(v for t in prints for v in t):
        n = int(sum(version in t for t in prints))
        what = "installed" if version == installed else "not installed"
        if version == UNKNOWN:
            what = "not recorded (runs from before code fingerprints)"
        commits = _commits(done, version)
        lines.append(f"{MARK} code {version}: {n} run(s), {what}"
                     + (f"; started at commit {commits}" if commits else ""))  # fmt: skip
    return lines


def mark_table(table: Table, runs: pd.DataFrame, installed: str | None = None) -> Table:
    """``table`` with ``‡`` after the variant of each marked row, a ``code_versions`` column
    in its data (CSV) and the versions in its notes. Tables without a ``variant`` column in
    their data are returned as they are."""
    if "variant" not in table.data or runs.empty:
        return table
    versions = code_versions(runs, installed).set_index("variant")
    marked: Sequence[str] = list(versions.index[versions["marked"]])
    for i, variant in enumerate(table.data["variant"]):
        if variant in marked:
            table.cells[i][0] = f"{table.cells[i][0]} {MARK}"
    table.data["code_versions"] = [
        " ".join(versions["versions"].get(v, ())) for v in table.data["variant"]
    ]
    table.notes += version_notes(runs, installed)
    return table


__all__ = ["MARK", "code_versions", "mark_table", "run_fingerprints", "version_notes"]
