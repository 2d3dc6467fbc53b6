"""Study files: one typed schema for ``sweeps/NAME.yaml``, validated in full before any run.

A study file::

    name: offset_range
    description: maximum offset s of the deformable blocks
    experiment: ../experiments/offset_range.yaml   # the base experiment (relative to this file)
    variant: null            # which of its variants the trials start from (null: its base)
    seed: 0                  # training seed of every trial (default: the experiment's first)
    overrides: {train.epochs: 3}                 # dotted overrides of every trial
    space:
      offsets: {type: categorical, choices: [true, false],
                set: [model.stages.2.offsets, model.stages.3.offsets]}
      s: {type: float, low: 0.5, high: 16, log: true, when: {offsets: true},
          set: [model.stages.2.offset_range, model.stages.3.offset_range]}
      placement:                                 # categorical choices may be named overrides
        type: categorical
        choices: {D_34: {}, D_4: {model.stages.2.attn: LS}}
    objectives:                                  # from final.json; params/flops from cost.json
      - {metric: val/acc1, direction: maximize}
      - {metric: flops, direction: minimize}
    sampler: tpe             # tpe | grid | nsga2 | random, or {type: tpe, seed: 0, ...}
    pruner: none             # none | median | hyperband, or {type: median, warmup_epochs: 1}
                             #   or {type: hyperband, min_epochs: 1, reduction_factor: 3}
    n_trials: 20             # the study's total budget (a grid defaults to all its points)

``sampler: grid`` expands the space (categorical choices, int ranges, floats with a ``step``)
into an explicit list of trials, deduplicated by run id, that workers enqueue once. A
parameter with ``when`` exists only in trials whose earlier parameters have those values.

:func:`load_study` resolves the base run config and every parameter value (every grid point)
through the experiment's own validation, so a bad key or an impossible knob is reported with
the study file and key before any trial starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dat_lab.experiments.resources import SlurmResources
from dat_lab.experiments.spec import (
    COMMAND_LINE,
    SECTIONS,
    ExperimentFile,
    RunConfig,
    load_experiment,
    resolve_run,
)
from dat_lab.schema import ConfigError, check, config_hash, from_mapping, load_yaml, to_mapping

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
            _check_dotted(key, f"set.{i}")
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
            for name, overrides in self.choices.items():
                check(
                    isinstance(overrides, dict),
                    f"choices.{name}",
                    "must be a mapping of dotted overrides (or {} for the base)",
                )
                for key in overrides or {}:
                    _check_dotted(str(key), f"choices.{name}.{key}")
        else:
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
            _check_dotted(str(key), f"overrides.{key}")
        self._check_conditions()
        self._check_pruning()
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
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1


@dataclass(frozen=True)
class GridPoint:
    """One trial of a grid: its parameters and the run they resolve to."""

    params: dict[str, Any]
    run_id: str


@dataclass(frozen=True)
class Study:
    """A validated study file with its base experiment, ready to turn parameters into runs."""

    file: StudyFile
    path: Path
    experiment: ExperimentFile
    experiment_path: Path
    seed: int
    overrides: dict[str, Any]  # the file's, then the command line's (which win)
    base: RunConfig  # the config of a trial with no parameters
    grid: tuple[GridPoint, ...] = ()  # sampler grid: the trials to enqueue, in order

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def n_trials(self) -> int:
        """The study's total budget of trials."""
        if self.file.n_trials is not None:
            return self.file.n_trials if not self.grid else min(self.file.n_trials, len(self.grid))
        return len(self.grid)

    @property
    def run_experiment_name(self) -> str:
        """How the run store names the requester of a trial's run (``sweep/NAME``)."""
        return f"sweep/{self.name}"

    def trial_overrides(self, params: dict[str, Any]) -> dict[str, Any]:
        """The dotted overrides of a trial with ``params`` (study overrides, then parameters)."""
        out = dict(self.overrides)
        for name, value in params.items():
            out.update(self.file.space[name].overrides(value))
        return out

    def run_config(self, params: dict[str, Any]) -> RunConfig:
        """The resolved, validated run config of a trial (raises ConfigError if impossible)."""
        return resolve_run(
            self.experiment,
            self.experiment_path,
            self.file.variant,
            self.seed,
            self.trial_overrides(params),
        )

    def fingerprint(self) -> str:
        """What a stored study must match to be continued: the base run, space and objectives
        (not the budget or sampler: a larger n_trials continues the same study)."""
        content = {
            "base": self.base.run_id,
            "space": to_mapping(self.file.space),
            "objectives": to_mapping(self.file.objectives),
            "overrides": to_mapping(self.overrides),
        }
        return config_hash(content, length=16)


def load_study(path: str | Path, overrides: dict[str, Any] | None = None) -> Study:
    """Read and validate a study file (plus command-line dotted ``overrides``), resolving the
    base run, every parameter's extreme values and, for a grid, every point. Raises
    :class:`ConfigError` naming the file and key on any bad input, before any compute."""
    path = Path(path)
    raw = load_yaml(path)
    for key in ("sampler", "pruner"):  # `sampler: tpe` is short for `sampler: {type: tpe}`
        if isinstance(raw.get(key), str):
            raw[key] = {"type": raw[key]}
    spec = from_mapping(StudyFile, raw, file=path)
    exp_path = spec.experiment if spec.experiment.is_absolute() else path.parent / spec.experiment
    if not exp_path.is_file():
        raise ConfigError(f"experiment file {str(exp_path)!r} not found", "experiment", path)
    exp, _ = load_experiment(exp_path)
    if spec.variant is not None and spec.variant not in exp.variants:
        raise ConfigError(
            f"got {spec.variant!r}; {exp_path} has: {', '.join(exp.variants)}", "variant", path
        )
    command_line = dict(overrides or {})
    for key in command_line:
        if str(key).split(".", 1)[0] not in SECTIONS or "." not in str(key):
            raise ConfigError(
                f"override {key!r} must start with one of {', '.join(SECTIONS)} and a dot",
                str(key),
            )
    merged = {**spec.overrides, **command_line}
    seed = spec.seed if spec.seed is not None else exp.seeds[0]
    base = _resolve_base(exp, exp_path, spec.variant, seed, spec.overrides, command_line, path)
    study = Study(spec, path, exp, exp_path, seed, merged, base)
    _check_values(study)
    _check_hyperband_budget(study)
    if spec.sampler.type == "grid":
        study = Study(spec, path, exp, exp_path, seed, merged, base, tuple(_grid(study)))
        if spec.n_trials is not None and spec.n_trials > len(study.grid):
            raise ConfigError(
                f"got {spec.n_trials}, but the grid has only {len(study.grid)} distinct runs",
                "n_trials",
                path,
            )
    return study


def _resolve_base(
    exp, exp_path, variant, seed, file_overrides, command_line, path: Path
) -> RunConfig:
    """The run of a trial without parameters; an error names where the bad value came from:
    the command line, the study file's ``overrides``, or else the experiment file."""
    try:
        return resolve_run(exp, exp_path, variant, seed, {**file_overrides, **command_line})
    except ConfigError as err:
        if _names(err.key, command_line):
            raise ConfigError(f"{_plain(err)} ({COMMAND_LINE} override)", err.key) from None
        if _names(err.key, file_overrides):
            raise ConfigError(_plain(err), f"overrides.{err.key}", path) from None
        raise


def _names(key: str, overrides: dict[str, Any]) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in overrides)


def _plain(err: ConfigError) -> str:
    """The message without resolve_run's note on where overrides come from (trial values are
    passed to it as command-line overrides; the sweep knows better where they came from)."""
    return err.message.removesuffix(f" ({COMMAND_LINE} override)")


def describe_run_error(err: ConfigError) -> str:
    """``KEY: message`` of an error from resolving a trial's run."""
    return f"{err.key}: {_plain(err)}" if err.key else _plain(err)


def _check_values(study: Study) -> None:
    """Resolve each parameter's extreme values (with its conditions met) on the base."""
    space = study.file.space
    for name, param in space.items():
        context = {other: (v[0] if isinstance(v, list) else v) for other, v in param.when.items()}
        for value in param.extremes():
            params = {**context, name: value}
            try:
                study.run_config(params)
            except ConfigError as err:
                raise ConfigError(
                    f"value {value!r} gives an impossible run: {describe_run_error(err)}",
                    f"space.{name}",
                    study.path,
                ) from None


def _check_hyperband_budget(study: Study) -> None:
    """Hyperband's budgets run from ``min_epochs`` to the base run's ``train.epochs``: that
    must leave room to stop a trial, and no trial may change it."""
    pruner = study.file.pruner
    if pruner.type != "hyperband":
        return
    epochs = study.base.train.epochs
    _check_in_file(
        pruner.min_epochs < epochs,
        "pruner.min_epochs",
        f"got {pruner.min_epochs}; hyperband first compares trials at epoch index min_epochs "
        f"(counted from 0), so it must be < train.epochs ({epochs}) or no trial is ever stopped",
        study.path,
    )
    for name, param in study.file.space.items():
        keys = set(param.set)
        if isinstance(param.choices, dict):
            keys.update(k for overrides in param.choices.values() for k in overrides or {})
        _check_in_file(
            "train.epochs" not in keys,
            f"space.{name}",
            "sets train.epochs, but hyperband's largest budget is the base run's train.epochs; "
            "search it with another pruner, or set it in overrides",
            study.path,
        )


def _check_in_file(ok: bool, key: str, message: str, path: Path) -> None:
    """``schema.check`` for a whole study: raise ConfigError naming the study file."""
    if not ok:
        raise ConfigError(message, key, path)


def _grid(study: Study) -> list[GridPoint]:
    """Every point of the grid, resolved, without two points that are the same run."""
    from dat_lab.sweeps.space import grid_points

    points, seen = [], set()
    for params in grid_points(study.file.space):
        try:
            run_id = study.run_config(params).run_id
        except ConfigError as err:
            raise ConfigError(
                f"grid point {params} gives an impossible run: {describe_run_error(err)}",
                "space",
                study.path,
            ) from None
        if run_id not in seen:
            seen.add(run_id)
            points.append(GridPoint(params, run_id))
    return points


def _check_dotted(key: str, where: str) -> None:
    head = key.split(".", 1)[0]
    check(
        head in SECTIONS and "." in key,
        where,
        f"a dotted key starts with one of {', '.join(SECTIONS)} and a dot (e.g. "
        "model.stages.2.offset_range)",
    )


def find_study_file(name_or_path: str, search_dir: Path = Path("sweeps")) -> Path:
    """``--study NAME`` -> ``sweeps/NAME.yaml``; a path to a YAML file is taken as it is."""
    given = Path(name_or_path)
    if given.suffix in (".yaml", ".yml") or given.is_file():
        return given
    candidate = search_dir / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in search_dir.glob("*.yaml")) if search_dir.is_dir() else []
    raise ConfigError(
        f"no study file {str(candidate)!r}; known studies: {', '.join(known) or 'none'}", "--study"
    )


__all__ = [
    "GridPoint",
    "describe_run_error",
    "ObjectiveSpec",
    "ParamSpec",
    "PrunerSpec",
    "SamplerSpec",
    "Study",
    "StudyFile",
    "find_study_file",
    "load_study",
]
