"""The search space: which parameters a trial has (conditions), sampling them, and grids.

Parameters are visited in file order; one with ``when`` exists only if every earlier
parameter it names took one of the listed values. The same rule drives Optuna's
define-by-run sampling (:func:`suggest`), the explicit grid (:func:`grid_points`,
:func:`resolve_grid`) and the study check's combinations (:func:`combinations`), so a grid
point holds exactly the parameters a sampled trial would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import optuna

from dat_lab.schema import COMMAND_LINE, ConfigError
from dat_lab.sweeps.schema import ParamSpec


@dataclass(frozen=True)
class GridPoint:
    """One trial of a grid: its parameters and the run they resolve to."""

    params: dict[str, Any]
    run_id: str


def active(param: ParamSpec, chosen: dict[str, Any]) -> bool:
    """Whether ``param`` exists, given the values ``chosen`` so far."""
    for other, allowed in param.when.items():
        wanted = allowed if isinstance(allowed, list) else [allowed]
        if other not in chosen or chosen[other] not in wanted:
            return False
    return True


def suggest(trial: optuna.Trial, space: dict[str, ParamSpec]) -> dict[str, Any]:
    """Sample (or, for an enqueued trial, read back) the trial's parameters."""
    chosen: dict[str, Any] = {}
    for name, param in space.items():
        if active(param, chosen):
            chosen[name] = _suggest_one(trial, name, param)
    return chosen


def _suggest_one(trial: optuna.Trial, name: str, param: ParamSpec) -> Any:
    if param.type == "categorical":
        return trial.suggest_categorical(name, list(param.choice_names))
    assert param.low is not None and param.high is not None
    if param.type == "int":
        step = int(param.step or 1)
        return trial.suggest_int(name, int(param.low), int(param.high), step=step, log=param.log)
    return trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)


def grid_points(space: dict[str, ParamSpec]) -> Iterator[dict[str, Any]]:
    """Every combination of the (finite) parameters' values, conditions applied, in order."""
    return combinations(space, lambda param: param.values())


def combinations(
    space: dict[str, ParamSpec], values: Callable[[ParamSpec], list[Any]]
) -> Iterator[dict[str, Any]]:
    """Every combination of ``values(param)`` over the parameters, conditions applied."""
    yield from _expand(list(space.items()), {}, values)


def _expand(
    rest: list[tuple[str, ParamSpec]],
    chosen: dict[str, Any],
    values: Callable[[ParamSpec], list[Any]],
) -> Iterator[dict[str, Any]]:
    if not rest:
        yield dict(chosen)
        return
    (name, param), tail = rest[0], rest[1:]
    if not active(param, chosen):
        yield from _expand(tail, chosen, values)
        return
    for value in values(param):
        yield from _expand(tail, {**chosen, name: value}, values)


def resolve_grid(
    space: dict[str, ParamSpec], run_id: Callable[[dict[str, Any]], str]
) -> list[GridPoint]:
    """Every point of the grid with the run it resolves to (``run_id(params)``), without two
    points that are the same run. An impossible point raises ConfigError at key ``space``."""
    points, seen = [], set()
    for params in grid_points(space):
        try:
            point = GridPoint(params, run_id(params))
        except ConfigError as err:
            raise ConfigError(
                f"grid point {params} gives an impossible run: {describe_run_error(err)}",
                "space",
            ) from None
        if point.run_id not in seen:
            seen.add(point.run_id)
            points.append(point)
    return points


def plain_message(err: ConfigError) -> str:
    """The message without resolve_run's note on where overrides come from (trial values are
    passed to it as command-line overrides; the sweep knows better where they came from)."""
    return err.message.removesuffix(f" ({COMMAND_LINE} override)")


def describe_run_error(err: ConfigError) -> str:
    """``KEY: message`` of an error from resolving a trial's run."""
    return f"{err.key}: {plain_message(err)}" if err.key else plain_message(err)


def label(params: dict[str, Any]) -> str:
    """A short readable name of a trial's parameters (the run store's variant name)."""
    if not params:
        return "base"
    return ",".join(f"{k}={_short(v)}" for k, v in params.items())


def _short(value: Any) -> str:
    # 12 significant digits: short for grid values (2.0 -> "2"), distinct for TPE's floats,
    # so two configs never share a variant name (reports group runs by it).
    return f"{value:.12g}" if isinstance(value, float) else str(value)


__all__ = [
    "GridPoint",
    "active",
    "combinations",
    "describe_run_error",
    "grid_points",
    "label",
    "resolve_grid",
    "suggest",
]
