"""Where a report's baselines and claims come from: the experiment files' designs.

``dat-lab run`` records each experiment file's design (variants, seeds, ``baseline``,
``claims``; :meth:`ExperimentFile.design`) in the store (:meth:`RunStore.write_design`), since a
report reads only the store. An experiment file named on ``dat-lab report``'s command line
wins over the recorded design, so a claim added to a file applies without rerunning anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from dat_lab.experiments.spec import load_experiment
from dat_lab.experiments.store import RunStore
from dat_lab.schema import load_config_file


def file_designs(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The designs of the experiment files among ``names`` (study files have none)."""
    designs = {}
    for name in names:
        if name.endswith((".yaml", ".yml")) and "space" not in load_config_file(Path(name)):
            exp, _ = load_experiment(name)
            designs[exp.name] = exp.design()
    return designs


def load_designs(root: Path, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Experiment designs recorded in the store by ``dat-lab run``; files named win."""
    return {**RunStore(root).designs(), **file_designs(names)}
