"""Accuracy against FLOPs with the Pareto front (sweeps, r x s, any group whose FLOPs vary).

Runs on the stored runs only (never trains). The logic lives in
``dat_lab.results.analyses.sweep_pareto`` (which ``dat-lab report`` runs too);
use it on a DataFrame::

    from dat_lab.results import load_runs, memberships
    from dat_lab.results.analyses import sweep_pareto
    from dat_lab.results.analyses.base import Group

    runs = memberships(load_runs("runs"))
    group = Group("EXPERIMENT", runs[runs["experiment"] == "EXPERIMENT"])
    output = sweep_pareto.build(group)   # tables, figures (matplotlib), notes

Usage: python analysis/sweep_pareto.py [EXPERIMENT ...] [--store runs] [--out reports]
    [--format md,latex,csv]
"""

import sys

from dat_lab.results.analyses.sweep_pareto import main

if __name__ == "__main__":
    sys.exit(main())
