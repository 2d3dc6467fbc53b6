"""``dat-lab report``: the paper's tables and plots from stored runs only (never trains).

    dat-lab report [EXPERIMENT_OR_STUDY ...] [--all] [--format md,latex,csv] [--out DIR]
                   [--store DIR] [--metric M] [--effect D] [--ci t|bootstrap] [--no-html]

With no name (or ``--all``) every experiment and study in the store is reported. A name is an
experiment's or study's ``name``, or the path of its YAML file (whose ``baseline`` and
``claims`` then apply; otherwise those recorded by ``dat-lab run``). Tables: one row per
variant with FLOPs, #Param, top-1 mean +- std, 95% CI and n (finished seeds), the difference
from the baseline with its CI and Holm-adjusted p, and the seeds the sequential rule expects
to need for a decision (beside a fixed design's) at the observed difference; failed, running
and interrupted runs are marked and listed; the paper's ImageNet numbers (its Fig. 5, Tables 4
and 5) sit beside ours. The claims of the experiment file are judged by the sequential rule
(docs/decisions.md). A run with an unreadable document (or a sweep trial whose run is missing)
is left out and listed, with the file and the error, under "damaged runs"; the report still
exits 0. Figures (PNG, PDF, SVG) go beside the tables under ``--out``, and
``report.html`` holds everything in one offline page.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="tables and plots from stored runs (no training)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "names",
        nargs="*",
        metavar="EXPERIMENT_OR_STUDY",
        help="experiment/study names or YAML files (default: all in the store)",
    )
    p.add_argument("--all", action="store_true", help="every experiment and study in the store")
    p.add_argument(
        "--format", default="md,latex,csv", help="table formats: md,latex,csv (default all)"
    )
    p.add_argument(
        "--out", type=Path, default=Path("reports"), help="output folder (default ./reports)"
    )
    p.add_argument("--store", type=Path, default=None, help="run store (default ./runs)")
    p.add_argument(
        "--metric",
        default="final.val/acc1",
        help="run column to report, e.g. final.val/acc1_best (default final.val/acc1)",
    )
    p.add_argument(
        "--effect",
        type=float,
        default=None,
        help="difference the seed figures (seeds to a decision, fixed design) assume, in the "
        "metric's display units (points for accuracy); default: each row's or claim's "
        "observed difference",
    )
    p.add_argument(
        "--ci",
        default="t",
        help="CI of the differences: t (the test's own, default) or bootstrap",
    )
    p.add_argument("--no-html", action="store_true", help="do not write report.html")
    p.add_argument(
        "--optuna-storage",
        default=None,
        metavar="URL",
        help="also read Optuna studies from this storage (e.g. postgresql://...)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="processes rendering figures (default: one per CPU; 1 = none extra)",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("MPLBACKEND", "Agg")  # before matplotlib is imported
    from dat_lab.experiments.store import DEFAULT_ROOT
    from dat_lab.results.compare import parse_ci
    from dat_lab.results.report import build_report, parse_formats
    from dat_lab.schema import ConfigError

    if args.all and args.names:
        raise ConfigError("give experiment names or --all, not both", "--all")
    formats = parse_formats(args.format)
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"must be >= 1, got {args.jobs}", "--jobs")
    ci = parse_ci(args.ci)
    if args.effect is not None and not (math.isfinite(args.effect) and args.effect != 0):
        raise ConfigError(f"must be a non-zero number, got {args.effect}", "--effect")
    report = build_report(
        args.store or DEFAULT_ROOT, args.names, formats, args.out, args.metric,
        storage_url=args.optuna_storage, jobs=args.jobs, effect=args.effect, ci=ci,
        write_html=not args.no_html,
    )  # fmt: skip
    print(report.markdown)
    for note in report.notes:
        print(f"note: {note}")
    index = args.out / ("report.md" if args.no_html else "report.html")
    print(f"wrote {len(report.files)} files under {args.out} (open {index})")
    return 0
