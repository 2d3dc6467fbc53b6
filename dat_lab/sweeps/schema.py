"""The schema of a study file (``sweeps/NAME.yaml``): parameters, objectives, sampler, pruner.

Each part is a frozen dataclass built strictly by :func:`dat_lab.schema.from_mapping`; the
checks here need only the file itself. What needs the base experiment (resolving runs, the
grid) is :mod:`dat_lab.sweeps.spec`'s :func:`~dat_lab.sweeps.spec.load_study`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dat_lab.experiments.overrides import check_dotted_key, check_override_sets
from dat_lab.experiments.resources import SlurmResources
from dat_lab.schema import check

ParamType = Literal["categorical", "int", "float"]
Direction = Literal["maximize", "minimize"]
SamplerName = Literal["tpe", "grid", "nsga2", "random"]
PrunerName = Literal["none", "median", "hyperband"]

COST_METRICS = ("params", "flops", "flops_formula")  # read from the run's cost.json
RUN_METRIC_PREFIXES = ("val/", "train/")  # read from the run's final.json
OPTUNA_SCALARS = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class ParamSpec:
    """One search dimension and the dotted keys it sets.

    Attributes:
        type: ``categorical``, ``int`` or ``float``.
        set: dotted keys (``model.stages.2.offset_range``) that all get the sampled value.
        choices: categorical only: a list of values, or a mapping of choice name -> dotted
            overrides (then ``set`` stays empty and the trial's parameter is the name).
        low, high: int/float bounds (inclusive).
        step: int/float grid step (int default 1); a float needs one to be part of a grid.
        log: sample on a log scale (needs low > 0; not with a step).
        when: condition on earlier parameters, ``{name: value}`` or ``{name: [values]}``: the
            parameter exists only in trials where each named parameter has one of the values.
    """

    type: ParamType
    set: tuple[str, ...] = ()
    choices: tuple[Any, ...] | dict[str, dict[str, Any]] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    when: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i, key in enumerate(self.set):
            check_dotted_key(key, f"set.{i}")
        if self.type == "categorical":
            self._check_categorical()
        else:
            self._check_numeric()

    def _check_categorical(self) -> None:
        check(
            self.choices is not None and len(self.choices) > 0,
            "choices",
            "a categorical parameter needs a non-empty list (or mapping) of choices",
        )
        for key in ("low", "high", "step"):
            check(getattr(self, key) is None, key, "only int and float parameters have it")
        check(not self.log, "log", "only int and float parameters have it")
        if isinstance(self.choices, dict):
            check(not self.set, "set", "named choices carry their own overrides; leave set out")
            check_override_sets(self.choices, "choices")
        else:
            assert self.choices is not None  # checked above
            check(bool(self.set), "set", "the dotted keys this parameter sets are missing")
            check(
                len(set(map(repr, self.choices))) == len(self.choices),
                "choices",
                "repeats a value",
            )
            for i, value in enumerate(self.choices):
                check(
                    isinstance(value, OPTUNA_SCALARS),
                    f"choices.{i}",
                    f"got {value!r}; a choice is a number, string, bool or null "
                    "(use named choices for several keys)",
                )

    def _check_numeric(self) -> None:
        check(self.choices is None, "choices", "only categorical parameters have choices")
        check(bool(self.set), "set", "the dotted keys this parameter sets are missing")
        check(self.low is not None, "low", "required for an int/float parameter")
        check(self.high is not None, "high", "required for an int/float parameter")
        assert self.low is not None and self.high is not None
        check(self.low <= self.high, "high", f"got {self.high}, must be >= low ({self.low})")
        if self.type == "int":
            for key in ("low", "high", "step"):
                value = getattr(self, key)
                check(
                    value is None or float(value).is_integer(),
                    key,
                    f"got {value}, must be an integer",
                )
        check(self.step is None or self.step > 0, "step", f"got {self.step}, must be > 0")
        if self.log:
            check(self.low > 0, "low", f"got {self.low}, a log scale needs low > 0")
            check(self.step is None, "step", "a log scale cannot have a step")

    @property
    def choice_names(self) -> tuple[Any, ...]:
        """The values Optuna sees for a categorical parameter (names for named choices)."""
        assert self.choices is not None
        return tuple(self.choices) if isinstance(self.choices, dict) else tuple(self.choices)

    @property
    def finite(self) -> bool:
        """Whether the parameter has a finite list of values (and so can be part of a grid)."""
        return self.type != "float" or self.step is not None

    def values(self) -> list[Any]:
        """All values of a finite parameter, in order."""
        if self.type == "categorical":
            return list(self.choice_names)
        assert self.low is not None and self.high is not None and self.finite
        step = self.step or 1
        count = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        if self.type == "int":
            return [int(self.low + i * step) for i in range(count)]
        return [round(self.low + i * step, 12) for i in range(count)]

    def extremes(self) -> list[Any]:
        """The values that validation resolves before any trial: every choice, or the bounds."""
        if self.type == "categorical":
            return list(self.choice_names)
        assert self.low is not None and self.high is not None  # checked when built
        cast = int if self.type == "int" else float
        return sorted({cast(self.low), cast(self.high)})

    def overrides(self, value: Any) -> dict[str, Any]:
        """The dotted overrides that this parameter's ``value`` stands for."""
        if isinstance(self.choices, dict):
            return dict(self.choices[value] or {})
        return {key: value for key in self.set}


@dataclass(frozen=True)
class ObjectiveSpec:
    """A value to optimise: a run metric from ``final.json`` (``val/acc1``, ``val/acc1_best``,
    ``val/loss``, ...) or a cost from ``cost.json`` (``params``, ``flops``)."""

    metric: str
    direction: Direction

    def __post_init__(self) -> None:
        check(
            self.metric in COST_METRICS or self.metric.startswith(RUN_METRIC_PREFIXES),
            "metric",
            f"got {self.metric!r}; allowed: a run metric starting with "
            f"{' or '.join(RUN_METRIC_PREFIXES)} (e.g. val/acc1), "
            f"or one of {', '.join(COST_METRICS)}",
        )

    @property
    def per_epoch(self) -> bool:
        """Whether the metric exists after every epoch (so a pruner can watch it)."""
        return self.metric.startswith("val/")


@dataclass(frozen=True)
class SamplerSpec:
    """How trials are chosen. ``seed`` makes a single worker's sequence repeatable."""

    type: SamplerName = "tpe"
    seed: int | None = None
    startup_trials: int = 10  # tpe: random trials before the model is used
    population_size: int = 20  # nsga2

    def __post_init__(self) -> None:
        check(
            self.startup_trials >= 0, "startup_trials", f"got {self.startup_trials}, must be >= 0"
        )
        check(
            self.population_size >= 2,
            "population_size",
            f"got {self.population_size}, must be >= 2",
        )


@dataclass(frozen=True)
class PrunerSpec:
    """Whether and when a trial is stopped early (single-objective studies only).

    The pruning callback reports the objective after each epoch at step = the epoch's index
    from 0 (as Optuna's own Lightning callback does). Hyperband's largest budget is the base
    run's ``train.epochs`` (checked against ``min_epochs`` by :func:`load_study`).

    Attributes:
        startup_trials: median: trials that finish before any is pruned.
        warmup_epochs: median: epochs of a trial that are never pruned.
        min_epochs: hyperband: Optuna's ``min_resource``, the first rung: trials of the most
            aggressive bracket are first compared at epoch index ``min_epochs``, i.e. after
            ``min_epochs + 1`` epochs. Must be < ``train.epochs``.
        reduction_factor: hyperband: at each rung only the best 1/reduction_factor of the
            trials of a bracket go on (a lone first trial always does); also sets the number
            of brackets, ``floor(log_rf(train.epochs / min_epochs)) + 1``.
    """

    type: PrunerName = "none"
    startup_trials: int = 2
    warmup_epochs: int = 0
    min_epochs: int = 1
    reduction_factor: int = 3

    def __post_init__(self) -> None:
        for key in ("startup_trials", "warmup_epochs"):
            check(getattr(self, key) >= 0, key, f"got {getattr(self, key)}, must be >= 0")
        check(self.min_epochs >= 1, "min_epochs", f"got {self.min_epochs}, must be >= 1")
        check(
            self.reduction_factor >= 2,
            "reduction_factor",
            f"got {self.reduction_factor}, must be >= 2 (keep the best 1/reduction_factor)",
        )


@dataclass(frozen=True)
class StudyFile:
    """The schema of a study YAML file (see the module docstring)."""

    name: str
    experiment: Path
    space: dict[str, ParamSpec]
    description: str = ""
    variant: str | None = None
    seed: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    objectives: tuple[ObjectiveSpec, ...] = (ObjectiveSpec("val/acc1", "maximize"),)
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    n_trials: int | None = None
    max_retries: int = 2
    slurm: SlurmResources | None = None  # the workers' resources under --launcher slurm
    # configurations `dat-lab sweep --race` races beside the best trials: {parameter: value}
    race: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        check(
            bool(self.name.strip()) and "/" not in self.name,
            "name",
            "must be a non-empty name without '/'",
        )
        check(len(self.space) > 0, "space", "needs at least one parameter")
        check(len(self.objectives) > 0, "objectives", "needs at least one objective")
        metrics = [o.metric for o in self.objectives]
        check(len(set(metrics)) == len(metrics), "objectives", f"repeats a metric: {metrics}")
        check(self.seed is None or self.seed >= 0, "seed", f"got {self.seed}, must be >= 0")
        check(
            self.n_trials is None or self.n_trials >= 1,
            "n_trials",
            f"got {self.n_trials}, must be >= 1",
        )
        check(self.max_retries >= 0, "max_retries", f"got {self.max_retries}, must be >= 0")
        for key in self.overrides:
            check_dotted_key(str(key), f"overrides.{key}")
        self._check_conditions()
        self._check_pruning()
        self._check_race()
        if self.sampler.type == "grid":
            for name, param in self.space.items():
                check(
                    param.finite, f"space.{name}.step", "a grid needs a step for a float parameter"
                )
        else:
            check(
                self.n_trials is not None,
                "n_trials",
                f"required with sampler {self.sampler.type!r} "
                "(the study's total budget; only a grid knows its own size)",
            )

    def _check_conditions(self) -> None:
        seen: dict[str, ParamSpec] = {}
        for name, param in self.space.items():
            for other, allowed in param.when.items():
                key = f"space.{name}.when.{other}"
                check(
                    other in seen,
                    key,
                    "a condition must name a parameter listed above this one "
                    f"(listed above: {', '.join(seen) or 'none'})",
                )
                wanted = allowed if isinstance(allowed, list) else [allowed]
                if seen[other].type == "categorical":
                    names = seen[other].choice_names
                    for value in wanted:
                        check(
                            value in names,
                            key,
                            f"{value!r} is not a choice of {other!r} ({list(names)})",
                        )
            seen[name] = param

    def _check_race(self) -> None:
        """Each ``race:`` entry names parameters of the space with values they can take (that
        the run it stands for is possible is checked by ``load_study``)."""
        for i, params in enumerate(self.race):
            check(bool(params), f"race.{i}", "an empty configuration; give {parameter: value}")
            for name, value in params.items():
                key = f"race.{i}.{name}"
                check(
                    name in self.space,
                    key,
                    f"not a parameter of the space (it has: {', '.join(self.space)})",
                )
                param = self.space[name]
                if param.type == "categorical":
                    names = param.choice_names
                    check(value in names, key, f"got {value!r}; allowed: {list(names)}")
                else:
                    assert param.low is not None and param.high is not None
                    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                    check(
                        ok and param.low <= value <= param.high,
                        key,
                        f"got {value!r}; allowed: a number in [{param.low}, {param.high}]",
                    )
        check(
            not self.race or any(o.metric not in COST_METRICS for o in self.objectives),
            "race",
            "a race compares seeds of a run metric, but every objective is a cost "
            f"({', '.join(COST_METRICS)}: deterministic, no seeds)",
        )

    def _check_pruning(self) -> None:
        if self.pruner.type == "none":
            return
        check(
            len(self.objectives) == 1,
            "pruner",
            "a multi-objective study cannot prune (Optuna refuses trial.report); use none",
        )
        check(
            self.objectives[0].per_epoch,
            "pruner",
            f"pruning watches the objective each epoch, but {self.objectives[0].metric!r} is "
            "not a per-epoch val/ metric",
        )

    @property
    def directions(self) -> list[Direction]:
        return [o.direction for o in self.objectives]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1
