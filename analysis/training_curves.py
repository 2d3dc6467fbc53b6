"""Training curves per variant from each run's ``logs/.../metrics.csv`` (mean +- std band).

A stand-alone run of ``dat_lab.results.analyses.training_curves``
over the stored runs; usage and use from Python: ``dat_lab/results/scripts.py``.
"""

import sys

from dat_lab.results.scripts import script_main

if __name__ == "__main__":
    sys.exit(script_main("training_curves"))
