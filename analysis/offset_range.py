"""Top-1 against the maximum offset s (the paper's Fig. 5): table and plot.

A stand-alone run of ``dat_lab.results.analyses.offset_range``
over the stored runs; usage and use from Python: ``dat_lab/results/scripts.py``.
"""

import sys

from dat_lab.results.scripts import script_main

if __name__ == "__main__":
    sys.exit(script_main("offset_range"))
