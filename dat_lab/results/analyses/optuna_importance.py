"""Optuna parameter importances and optimisation history of a sweep's study.

Uses ``optuna.visualization.matplotlib`` (plotly is not a dependency). Runs only when the
report found the study (a journal under the run store, or ``--optuna-storage``); for a
multi-objective study both plots show the first objective.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from matplotlib.figure import Figure
from optuna.visualization import matplotlib as optuna_plots

from dat_lab.results.analyses.base import Group, Output

NAME = "optuna_importance"
MIN_TRIALS = 2


def applies(group: Group) -> bool:
    return group.study is not None


def _target(study):
    names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    if len(study.directions) == 1:
        return None, names[0] if study.metric_names else "objective"
    return (lambda t: t.values[0]), names[0]


def build(group: Group) -> Output:
    study = group.study
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < MIN_TRIALS:
        return Output(notes=[(f"study {study.study_name}: {len(complete)} complete trial(s); "
                             "no importances or history (needs 2)")])  # fmt: skip
    target, target_name = _target(study)
    out = Output()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        _plot(study, target, target_name, out)
    return out


def _root_figure(ax: Any) -> Figure:
    fig = ax.get_figure(root=True)
    if fig is None:
        raise RuntimeError("optuna's plot is not on a figure")
    return fig


def _plot(study, target, target_name: str, out: Output) -> None:
    ax = optuna_plots.plot_optimization_history(study, target=target, target_name=target_name)
    _finish(ax, f"{study.study_name}: optimisation history ({target_name})")
    out.figures["optuna_history"] = _root_figure(ax)
    try:
        ax = optuna_plots.plot_param_importances(study, target=target, target_name=target_name)
        _finish(ax, f"{study.study_name}: parameter importances ({target_name})")
        out.figures["optuna_importance"] = _root_figure(ax)
    except (ValueError, RuntimeError) as err:  # e.g. one parameter value only
        out.notes.append(f"study {study.study_name}: no importances ({err})")


def _finish(ax, title: str) -> None:
    """Our title in place of Optuna's (whichever side it put it), and room for the labels."""
    for loc in ("left", "right"):
        ax.set_title("", loc=loc)
    ax.set_title(title)
    ax.figure.set_size_inches(8.0, 4.8)
    ax.figure.tight_layout()
