"""``analysis/*.py``: one analysis of ``dat-lab report`` as a stand-alone script.

Each script runs on the stored runs only (never trains). The logic lives in
``dat_lab.results.analyses.NAME`` (which ``dat-lab report`` runs too); use it on a DataFrame::

    from dat_lab.results import load_runs, memberships
    from dat_lab.results.analyses import offset_range
    from dat_lab.results.analyses.base import Group

    runs = memberships(load_runs("runs"))
    group = Group("EXPERIMENT", runs[runs["experiment"] == "EXPERIMENT"])
    output = offset_range.build(group)   # tables, figures (matplotlib), notes

Usage: python analysis/NAME.py [EXPERIMENT ...] [--store runs] [--out reports]
    [--format md,latex,csv] [--metric COLUMN]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from dat_lab.experiments.store import DEFAULT_ROOT
from dat_lab.results import analyses, tables
from dat_lab.results.analyses.base import DEFAULT_METRIC
from dat_lab.results.report import (
    DEFAULT_OUT,
    build_groups,
    load_selection,
    parse_formats,
    safe_name,
    write_outputs,
)
from dat_lab.schema import ConfigError


def script_main(analysis: str, argv: Sequence[str] | None = None) -> int:
    """Run one analysis on a store's experiments (``python analysis/offset_range.py``)."""
    module = analyses.BY_NAME[analysis]
    doc = (module.__doc__ or analysis).strip().splitlines()[0]
    p = argparse.ArgumentParser(prog=f"analysis/{analysis}.py", description=doc)
    p.add_argument(
        "experiments", nargs="*", help="experiment or study names (default: all it applies to)"
    )
    p.add_argument("--store", type=Path, default=DEFAULT_ROOT, help="run store (default ./runs)")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default ./reports)"
    )
    p.add_argument("--format", default=",".join(tables.FORMATS), help="md,latex,csv")
    p.add_argument(
        "--metric", default=DEFAULT_METRIC, help=f"run column to report (default {DEFAULT_METRIC})"
    )
    args = p.parse_args(argv)
    try:
        formats = parse_formats(args.format)
        _, members, found, names = load_selection(args.store, args.experiments)
    except ConfigError as err:
        print(f"error: {err}")
        return 2
    done = 0
    for group in build_groups(members, names, found, args.metric):
        if group.runs.empty or not module.applies(group):
            continue
        folder = args.out / safe_name(group.name)
        files, md, _ = write_outputs(folder, [module.build(group)], formats, group.name)
        print(md)
        print("\n".join(f"wrote {f}" for f in files))
        done += 1
    if not done:
        print(f"{analysis}: applies to none of {', '.join(names) or 'the (empty) store'}")
    return 0
