"""Training curves per variant from each run's ``logs/.../metrics.csv`` (mean +- std band).

Runs on the stored runs only (never trains). The logic lives in
``dat_lab.results.analyses.training_curves`` (which ``dat-lab report`` runs too);
use it on a DataFrame::

    from dat_lab.results import load_runs, memberships
    from dat_lab.results.analyses import training_curves
    from dat_lab.results.analyses.base import Group

    runs = memberships(load_runs("runs"))
    group = Group("EXPERIMENT", runs[runs["experiment"] == "EXPERIMENT"])
    output = training_curves.build(group)   # tables, figures (matplotlib), notes

Usage: python analysis/training_curves.py [EXPERIMENT ...] [--store runs] [--out reports]
    [--format md,latex,csv]
"""

import sys

from dat_lab.results.analyses.training_curves import main

if __name__ == "__main__":
    sys.exit(main())
