"""The table of any experiment or study: one row per variant, the knobs that vary.

A stand-alone run of ``dat_lab.results.analyses.variants``
over the stored runs; usage and use from Python: ``dat_lab/results/scripts.py``.
"""

import sys

from dat_lab.results.scripts import script_main

if __name__ == "__main__":
    sys.exit(script_main("variants"))
