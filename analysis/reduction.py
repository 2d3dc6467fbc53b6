"""Reduction r against maximum offset s: table and top-1 vs s per r.

Runs on the stored runs only (never trains). The logic lives in
``dat_lab.results.analyses.reduction`` (which ``dat-lab report`` runs too);
use it on a DataFrame::

    from dat_lab.results import load_runs, memberships
    from dat_lab.results.analyses import reduction
    from dat_lab.results.analyses.base import Group

    runs = memberships(load_runs("runs"))
    group = Group("EXPERIMENT", runs[runs["experiment"] == "EXPERIMENT"])
    output = reduction.build(group)   # tables, figures (matplotlib), notes

Usage: python analysis/reduction.py [EXPERIMENT ...] [--store runs] [--out reports]
    [--format md,latex,csv]
"""

import sys

from dat_lab.results.analyses.reduction import main

if __name__ == "__main__":
    sys.exit(main())
