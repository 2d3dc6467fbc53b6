"""Attention in stages 1-2, offsets and position encoding (the paper's Table 4).

A stand-alone run of ``dat_lab.results.analyses.attention_ablation``
over the stored runs; usage and use from Python: ``dat_lab/results/scripts.py``.
"""

import sys

from dat_lab.results.scripts import script_main

if __name__ == "__main__":
    sys.exit(script_main("attention_ablation"))
