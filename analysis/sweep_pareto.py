"""Accuracy against FLOPs with the Pareto front (sweeps, r x s, any group whose FLOPs vary).

A stand-alone run of ``dat_lab.results.analyses.sweep_pareto``
over the stored runs; usage and use from Python: ``dat_lab/results/scripts.py``.
"""

import sys

from dat_lab.results.scripts import script_main

if __name__ == "__main__":
    sys.exit(script_main("sweep_pareto"))
