"""The table of any experiment or study: one row per variant, the knobs that vary.

Runs on the stored runs only (never trains). The logic lives in
``dat_lab.results.analyses.variants`` (which ``dat-lab report`` runs too);
use it on a DataFrame::

    from dat_lab.results import load_runs, memberships
    from dat_lab.results.analyses import variants
    from dat_lab.results.analyses.base import Group

    runs = memberships(load_runs("runs"))
    group = Group("EXPERIMENT", runs[runs["experiment"] == "EXPERIMENT"])
    output = variants.build(group)   # tables, figures (matplotlib), notes

Usage: python analysis/variants.py [EXPERIMENT ...] [--store runs] [--out reports]
    [--format md,latex,csv]
"""

import sys

from dat_lab.results.analyses.variants import main

if __name__ == "__main__":
    sys.exit(main())
