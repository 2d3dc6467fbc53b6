"""Reduction r against maximum offset s: table and top-1 vs s per r.

A stand-alone run of ``dat_lab.results.analyses.reduction``
over the stored runs; usage and use from Python: ``dat_lab/results/scripts.py``.
"""

import sys

from dat_lab.results.scripts import script_main

if __name__ == "__main__":
    sys.exit(script_main("reduction"))
