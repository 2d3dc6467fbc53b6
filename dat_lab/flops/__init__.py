"""FLOP counting: fvcore counts checked, module by module, against the analytic formulas.

- :func:`count_flops` (``count.py``): the library call experiments use; cached.
- ``analytic.py``: the published formulas and the named residue terms, as integer functions.
- ``handles.py``: the fvcore handles and the explicit zero-cost op list.
- ``compare.py``: which formula and residue items each module gets.

See ``docs/flops.md`` for the convention and how it reproduces the paper's figures.
"""

from dat_lab.flops.compare import ModuleRow
from dat_lab.flops.count import FlopReport, StageRow, cache_dir, count_flops, count_model
from dat_lab.flops.handles import COUNTED_OPS, ZERO_COST_OPS, flop_analysis

__all__ = [
    "COUNTED_OPS",
    "FlopReport",
    "ModuleRow",
    "StageRow",
    "ZERO_COST_OPS",
    "cache_dir",
    "count_flops",
    "count_model",
    "flop_analysis",
]
