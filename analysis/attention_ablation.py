"""Attention in stages 1-2, offsets and position encoding (the paper's Table 4).

Runs on the stored runs only (never trains). The logic lives in
``dat_lab.results.analyses.attention_ablation`` (which ``dat-lab report`` runs too);
use it on a DataFrame::

    from dat_lab.results import load_runs, memberships
    from dat_lab.results.analyses import attention_ablation
    from dat_lab.results.analyses.base import Group

    runs = memberships(load_runs("runs"))
    group = Group("EXPERIMENT", runs[runs["experiment"] == "EXPERIMENT"])
    output = attention_ablation.build(group)   # tables, figures (matplotlib), notes

Usage: python analysis/attention_ablation.py [EXPERIMENT ...] [--store runs] [--out reports]
    [--format md,latex,csv]
"""

import sys

from dat_lab.results.analyses.attention_ablation import main

if __name__ == "__main__":
    sys.exit(main())
