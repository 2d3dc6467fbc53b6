"""Optuna parameter importances and optimisation history of a sweep's study.

Runs on the stored runs only (never trains). The logic lives in
``dat_lab.results.analyses.optuna_importance`` (which ``dat-lab report`` runs too);
use it on a DataFrame::

    from dat_lab.results import load_runs, memberships
    from dat_lab.results.analyses import optuna_importance
    from dat_lab.results.analyses.base import Group

    runs = memberships(load_runs("runs"))
    group = Group("EXPERIMENT", runs[runs["experiment"] == "EXPERIMENT"])
    output = optuna_importance.build(group)   # tables, figures (matplotlib), notes

Usage: python analysis/optuna_importance.py [EXPERIMENT ...] [--store runs] [--out reports]
    [--format md,latex,csv]
"""

import sys

from dat_lab.results.analyses.optuna_importance import main

if __name__ == "__main__":
    sys.exit(main())
