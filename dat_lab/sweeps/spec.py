"""Study files: loading ``sweeps/NAME.yaml`` and validating it in full before any run.

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

The schema of the file is :mod:`dat_lab.sweeps.schema`. :func:`load_study` resolves the base
run config, every combination of the categorical choices with the extremes of the numeric
parameters (conditions applied) and, for a grid, every point, through the experiment's own
validation, so a bad key or an impossible knob (or pair of knobs) is reported with the study
file and key before any trial starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dat_lab.experiments.overrides import check_dotted_key, names_override
from dat_lab.experiments.spec import (
    COMMAND_LINE,
    DataFacts,
    ExperimentFile,
    RunConfig,
    RunSpec,
    load_experiment,
    resolve_run,
)
from dat_lab.schema import (
    ConfigError,
    config_files,
    config_hash,
    from_mapping,
    load_config_file,
    to_mapping,
)
from dat_lab.sweeps.schema import (
    COST_METRICS,
    ObjectiveSpec,
    ParamSpec,
    PrunerSpec,
    SamplerSpec,
    StudyFile,
)
from dat_lab.sweeps.space import (
    GridPoint,
    combinations,
    describe_run_error,
    label,
    plain_message,
    resolve_grid,
)


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
    facts: DataFacts = field(default_factory=DataFacts, compare=False, repr=False)

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

    def run_config(self, params: dict[str, Any], seed: int | None = None) -> RunConfig:
        """The resolved, validated run config of a trial (raises ConfigError if impossible);
        ``seed``: the same configuration trained with another seed (default: the trials')."""
        return resolve_run(
            self.experiment,
            self.experiment_path,
            self.file.variant,
            self.seed if seed is None else seed,
            self.trial_overrides(params),
            self.facts,
        )

    def run_spec(self, params: dict[str, Any], seed: int | None = None) -> RunSpec:
        """The run of a trial with ``params`` (its identity: ``sweep/NAME``, the parameters'
        label, the seed), or of the same configuration with another ``seed``: one seed of a
        configuration is one run of the store, whoever asks for it (a trial or a race)."""
        seed = self.seed if seed is None else seed
        params = {k: params[k] for k in self.file.space if k in params}  # the trials' order
        config = self.run_config(params, seed)
        return RunSpec(self.run_experiment_name, label(params), seed, config)

    def fingerprint(self) -> str:
        """What a stored study must match to be continued: the base run, space and objectives
        (not the budget or sampler: a larger n_trials continues the same study)."""
        content = {
            "base": self.base.run_id,
            "space": to_mapping(self.file.space),
            "objectives": to_mapping(self.file.objectives),
            # where metrics are logged (train.loggers) is no part of a study's identity
            "overrides": to_mapping(
                {k: v for k, v in self.overrides.items() if not str(k).startswith(NOT_STUDY)}
            ),
        }
        return config_hash(content, length=16)


NOT_STUDY = "train.loggers"


def load_study(path: str | Path, overrides: dict[str, Any] | None = None) -> Study:
    """Read and validate a study file (plus command-line dotted ``overrides``), resolving the
    base run, every parameter's extreme values and, for a grid, every point. Raises
    :class:`ConfigError` naming the file and key on any bad input, before any compute."""
    path = Path(path)
    raw = load_config_file(path)
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
        check_dotted_key(key, str(key))
    merged = {**spec.overrides, **command_line}
    seed = spec.seed if spec.seed is not None else exp.seeds[0]
    base = _resolve_base(exp, exp_path, spec.variant, seed, spec.overrides, command_line, path)
    study = Study(spec, path, exp, exp_path, seed, merged, base)
    _check_values(study)
    _check_hyperband_budget(study)
    for i, params in enumerate(spec.race):
        _check_run(study, dict(params), f"race.{i}", f"the configuration {params}")
    if spec.sampler.type == "grid":
        try:
            grid = tuple(resolve_grid(spec.space, lambda p: study.run_config(p).run_id))
        except ConfigError as err:
            raise err.located(path) from None
        study = dataclasses.replace(study, grid=grid)
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
        if names_override(err.key, command_line):
            message = f"{plain_message(err)} ({COMMAND_LINE} override)"
            raise ConfigError(message, err.key) from None
        if names_override(err.key, file_overrides):
            raise ConfigError(plain_message(err), f"overrides.{err.key}", path) from None
        raise


def _check_values(study: Study) -> None:
    """Resolve each parameter's extreme values alone (with its conditions met), then every
    combination that a trial can draw of the categorical choices and the numeric extremes:
    two knobs that are each possible can still clash (``offset_range`` with ``clamped``)."""
    space = study.file.space
    for name, param in space.items():
        context = {other: (v[0] if isinstance(v, list) else v) for other, v in param.when.items()}
        for value in param.extremes():
            _check_run(study, {**context, name: value}, f"space.{name}", f"value {value!r}")
    for params in combinations(space, lambda p: p.extremes()):
        _check_run(study, params, "space", f"the combination {params}")


def _check_run(study: Study, params: dict[str, Any], key: str, what: str) -> None:
    try:
        study.run_config(params)
    except ConfigError as err:
        message = f"{what} gives an impossible run: {describe_run_error(err)}"
        raise ConfigError(message, key, study.path) from None


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


def find_study_file(name_or_path: str, search_dir: Path = Path("sweeps")) -> Path:
    """``--study NAME`` -> ``sweeps/NAME.yaml``; a path to a YAML file is taken as it is."""
    given = Path(name_or_path)
    if given.suffix in (".yaml", ".yml") or given.is_file():
        return given
    candidate = search_dir / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    known = [p.stem for p in config_files(search_dir)]
    raise ConfigError(
        f"no study file {str(candidate)!r}; known studies: {', '.join(known) or 'none'}", "--study"
    )


__all__ = [
    "COST_METRICS",
    "GridPoint",
    "ObjectiveSpec",
    "ParamSpec",
    "PrunerSpec",
    "SamplerSpec",
    "Study",
    "StudyFile",
    "describe_run_error",
    "find_study_file",
    "load_study",
]
