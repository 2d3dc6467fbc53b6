"""Results: tables and plots computed only from the run store (``dat-lab report``).

- :func:`load_runs`: one row per stored run (config columns, final metrics, cost, status,
  provenance, identity), :func:`memberships`: one row per (run, experiment/variant/seed);
- :func:`summarize`: mean, std, Student-t 95% CI and n per variant;
- :mod:`~dat_lab.results.paper`: the paper's ImageNet numbers as data;
- :mod:`~dat_lab.results.tables` (Markdown, LaTeX booktabs, CSV) and
  :mod:`~dat_lab.results.plots` (seaborn figures, no I/O);
- :mod:`~dat_lab.results.analyses`: one module per table/figure, run by ``dat-lab report``.

Nothing here imports torch or trains anything.
"""

from dat_lab.results.aggregate import summarize, t_interval
from dat_lab.results.load import load_curves, load_runs, memberships

__all__ = ["load_curves", "load_runs", "memberships", "summarize", "t_interval"]
