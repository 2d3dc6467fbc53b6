"""Which stages use deformable attention (the paper's Table 5): table and bars.

Runs on the stored runs only (never trains). The logic lives in
``dat_lab.results.analyses.stage_placement`` (which ``dat-lab report`` runs too);
use it on a DataFrame::

    from dat_lab.results import load_runs, memberships
    from dat_lab.results.analyses import stage_placement
    from dat_lab.results.analyses.base import Group

    runs = memberships(load_runs("runs"))
    group = Group("EXPERIMENT", runs[runs["experiment"] == "EXPERIMENT"])
    output = stage_placement.build(group)   # tables, figures (matplotlib), notes

Usage: python analysis/stage_placement.py [EXPERIMENT ...] [--store runs] [--out reports]
    [--format md,latex,csv]
"""

import sys

from dat_lab.results.analyses.stage_placement import main

if __name__ == "__main__":
    sys.exit(main())
