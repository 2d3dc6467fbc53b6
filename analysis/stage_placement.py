"""Which stages use deformable attention (the paper's Table 5): table and bars.

A stand-alone run of ``dat_lab.results.analyses.stage_placement``
over the stored runs; usage and use from Python: ``dat_lab/results/scripts.py``.
"""

import sys

from dat_lab.results.scripts import script_main

if __name__ == "__main__":
    sys.exit(script_main("stage_placement"))
