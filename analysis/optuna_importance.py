"""Optuna parameter importances and optimisation history of a sweep's study.

A stand-alone run of ``dat_lab.results.analyses.optuna_importance``
over the stored runs; usage and use from Python: ``dat_lab/results/scripts.py``.
"""

import sys

from dat_lab.results.scripts import script_main

if __name__ == "__main__":
    sys.exit(script_main("optuna_importance"))
