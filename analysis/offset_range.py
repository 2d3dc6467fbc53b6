"""Top-1 against the maximum offset s (the paper's Fig. 5): table and plot.

Runs on the stored runs only (never trains). The logic lives in
``dat_lab.results.analyses.offset_range`` (which ``dat-lab report`` runs too);
use it on a DataFrame::

    from dat_lab.results import load_runs, memberships
    from dat_lab.results.analyses import offset_range
    from dat_lab.results.analyses.base import Group

    runs = memberships(load_runs("runs"))
    group = Group("EXPERIMENT", runs[runs["experiment"] == "EXPERIMENT"])
    output = offset_range.build(group)   # tables, figures (matplotlib), notes

Usage: python analysis/offset_range.py [EXPERIMENT ...] [--store runs] [--out reports]
    [--format md,latex,csv]
"""

import sys

from dat_lab.results.analyses.offset_range import main

if __name__ == "__main__":
    sys.exit(main())
