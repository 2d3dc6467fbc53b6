"""Experiment files: a base config, named variants (dotted overrides) and seeds -> RunSpecs.

An experiment file::

    name: offset_range
    description: maximum offset s of the deformable blocks
    seeds: [0, 1, 2]
    store: runs                      # optional; the CLI's --store wins
    base:
      model: dat_nano                # a preset name, or {preset: NAME, key: value, ...}
      data: {name: shapes, img_size: 32, batch_size: 64}
      train: {epochs: 4, lr: 2e-3, ...}
    variants:
      s0: {model.stages.2.offset_range: 0, model.stages.3.offset_range: 0}
      s2: {}
    baseline: s2                     # optional; the report compares every variant with it
    claims: [{better: s2, than: s0}] # optional; the report says supported/contradicted/...
                                     # (claims.py: margins, equivalence)
    until_decided: {max_seeds: 8}    # optional; add seeds until the claims are decided

Every variant x seed resolves to one :class:`RunConfig` (model, data, train with the seed),
validated in full before anything trains; its hash names the run in the store. The model's
``num_classes``, ``in_chans`` and ``img_size`` come from the data set, so they cannot
disagree.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dat_lab.data.config import DataConfig
from dat_lab.data.datamodule import build_datamodule
from dat_lab.experiments.claims import ReportClaim, parse_claims
from dat_lab.experiments.overrides import (
    DOTTED_KEY_RULE,
    SECTIONS,
    check_override_sets,
    is_dotted_key,
    names_override,
)
from dat_lab.experiments.resources import SlurmResources
from dat_lab.experiments.run_config import RunConfig, RunSpec
from dat_lab.experiments.stopping import UntilDecided
from dat_lab.experiments.weights import pin_source
from dat_lab.models.config import DatConfig
from dat_lab.models.presets import resolve_model_config
from dat_lab.schema import (
    COMMAND_LINE,
    ConfigError,
    apply_overrides,
    check,
    config_hash,
    from_mapping,
    load_config_file,
)
from dat_lab.train.config import TrainConfig

DATA_DERIVED = ("num_classes", "in_chans", "img_size")


@dataclass(frozen=True)
class ExperimentFile:
    """The schema of an experiment YAML file."""

    name: str
    base: dict[str, Any]
    seeds: tuple[int, ...] = (0,)
    variants: dict[str, dict[str, Any]] = field(default_factory=lambda: {"default": {}})
    description: str = ""
    store: Path | None = None
    baseline: str | None = None  # None: the report picks (the paper's default, else the first)
    claims: tuple[ReportClaim, ...] = ()  # parsed by claims.parse_claims
    slurm: SlurmResources | None = None  # what `--launcher slurm` asks for (resources.py)
    until_decided: UntilDecided | None = None  # run seeds until the claims are decided

    def __post_init__(self) -> None:
        check(bool(self.name.strip()), "name", "must not be empty")
        check(len(self.seeds) > 0, "seeds", "needs at least one seed")
        check(
            len(set(self.seeds)) == len(self.seeds), "seeds", f"repeats a seed: {list(self.seeds)}"
        )
        for s in self.seeds:
            check(s >= 0, "seeds", f"seeds must be >= 0, got {s}")
        check(len(self.variants) > 0, "variants", "needs at least one variant")
        for key in self.base:
            check(
                key in SECTIONS, f"base.{key}", f"unknown section; allowed: {', '.join(SECTIONS)}"
            )
        for section in SECTIONS:
            check(section in self.base, f"base.{section}", "required section is missing")
        check_override_sets(self.variants, "variants")
        self._check_variant_names()

    def _check_variant_names(self) -> None:
        """``baseline`` and every claim name variants of this file."""
        allowed = f"allowed: {', '.join(self.variants)}"
        if self.baseline is not None:
            check(self.baseline in self.variants, "baseline",
                  f"unknown variant {self.baseline!r}; {allowed}")  # fmt: skip
        for i, claim in enumerate(self.claims):
            claim.check_variants(self.variants, f"claims.{i}")
        if self.until_decided is not None:
            check(bool(self.claims), "until_decided",
                  "needs claims to decide (claims: [{better: A, than: B}, ...])")  # fmt: skip
            check(self.until_decided.max_seeds >= len(self.seeds), "until_decided.max_seeds",
                  f"got {self.until_decided.max_seeds}, fewer than the file's "
                  f"{len(self.seeds)} seeds")  # fmt: skip

    def design(self) -> dict[str, Any]:
        """What the report needs from the file (stored beside the runs by ``dat-lab run``):
        the variants in order, the seeds, the baseline and the claims."""
        return {
            "variants": list(self.variants),
            "seeds": list(self.seeds),
            "baseline": self.baseline,
            "claims": [c.as_mapping() for c in self.claims],
        }


def load_experiment(
    path: str | Path, overrides: dict[str, Any] | None = None
) -> tuple[ExperimentFile, list[RunSpec]]:
    """Read, validate and expand an experiment file (plus command-line dotted overrides).

    Raises :class:`ConfigError` naming the file and key on any bad input, before any compute.
    """
    path = Path(path)
    raw = load_config_file(path)
    _check_misplaced_sections(raw, path)
    raw = {**raw, "claims": parse_claims(raw, path)} if "claims" in raw else raw
    exp = from_mapping(ExperimentFile, raw, file=path)
    common = _split_overrides(overrides or {}, path, COMMAND_LINE)
    facts = DataFacts()
    specs = []
    for variant, var_overrides in exp.variants.items():
        own = _split_overrides(var_overrides or {}, path, f"variants.{variant}")
        merged = {s: {**own[s], **common[s]} for s in SECTIONS}
        for seed in exp.seeds:
            origins = _Origins(f"variants.{variant}", common)
            config = pin_init_weights(
                _resolve(exp.base, merged, seed, path, origins, facts), exp, path
            )
            specs.append(RunSpec(exp.name, variant, seed, config))
    return exp, specs


def resolve_run(
    exp: ExperimentFile,
    path: str | Path,
    variant: str | None,
    seed: int,
    overrides: dict[str, Any] | None = None,
    facts: DataFacts | None = None,
) -> RunConfig:
    """The validated RunConfig of one variant of ``exp`` (``None``: the base alone) and seed,
    with dotted ``overrides`` on top; they win over the variant's, like command-line
    overrides (used by sweeps, whose trials are overrides of one variant). ``facts``: a
    cache of the data sets' facts shared by the calls of one study."""
    path = Path(path)
    common = _split_overrides(overrides or {}, path, COMMAND_LINE)
    own = _split_overrides(
        (exp.variants[variant] or {}) if variant else {}, path, f"variants.{variant}"
    )
    merged = {s: {**own[s], **common[s]} for s in SECTIONS}
    origins = _Origins(f"variants.{variant}" if variant else "base", common)
    config = _resolve(exp.base, merged, seed, path, origins, facts or DataFacts())
    return pin_init_weights(config, exp, path)


def pin_init_weights(config: RunConfig, exp: ExperimentFile, path: Path) -> RunConfig:
    """``train.init_from``'s file hash written into the config, so the run id covers it."""
    return pin_source(config, exp.store, path)


def _check_misplaced_sections(raw: dict[str, Any], path: Path) -> None:
    """A top-level key that is (nearly) a section name belongs under ``base:``.

    Without this, ``trian:`` at the top level would get from_mapping's did-you-mean among the
    top-level keys ("did you mean 'variants'?"), which points the wrong way.
    """
    top = {f.name for f in fields(ExperimentFile)}
    for key in raw:
        if str(key) in top:
            continue
        close = difflib.get_close_matches(str(key), SECTIONS, n=1)
        if close:
            raise ConfigError(
                f"unknown top-level key (did you mean 'base.{close[0]}'? the model, data and "
                f"train sections go under base:); allowed: {', '.join(sorted(top))}",
                str(key),
                path,
            )


def _split_overrides(
    overrides: dict[str, Any], path: Path, where: str
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in overrides.items():
        if not is_dotted_key(key):
            raise ConfigError(f"override {key!r} ({where}) {DOTTED_KEY_RULE}", str(key), path)
        head, _, rest = str(key).partition(".")
        out[head][rest] = value
    return out


class DataFacts:
    """The class and channel counts of each distinct data config, read once.

    Building a DataModule validates its paths and, for an ImageFolder, scans the class
    folders: done once per variant x seed (or per trial of a study check), that rescans the
    same folders many times. One cache lives as long as one experiment or study load.
    """

    def __init__(self) -> None:
        self._known: dict[str, tuple[int, int]] = {}

    def of(self, data: DataConfig) -> tuple[int, int]:
        """``(num_classes, in_chans)`` of ``data``; ConfigError if it cannot be built."""
        key = config_hash(data, length=32)
        if key not in self._known:
            datamodule = build_datamodule(data)
            self._known[key] = (datamodule.num_classes, datamodule.in_chans)
        return self._known[key]


@dataclass(frozen=True)
class _Origins:
    """Where an override came from, so an error names the right place: the command line
    (its overrides win), else the variant (``variants.NAME``); anything else is ``base``."""

    variant: str
    common: dict[str, dict[str, Any]]

    def locate(
        self, err: ConfigError, path: Path, section: str, overrides: dict[str, Any]
    ) -> ConfigError:
        """``err`` with the file and the origin: ``base.KEY``, ``variants.NAME.KEY``, or
        ``KEY`` with "(command-line override)" added to the message."""
        key = err.key.removeprefix(f"{section}.")
        if names_override(key, self.common[section]):
            return ConfigError(f"{err.message} ({COMMAND_LINE} override)", err.key, path)
        return err.located(path, self.variant if names_override(key, overrides) else "base")


def _resolve(
    base: dict[str, Any],
    overrides: dict[str, dict[str, Any]],
    seed: int,
    path: Path,
    origins: _Origins,
    facts: DataFacts,
) -> RunConfig:
    """The RunConfig of one variant and seed; errors name where the bad value came from."""
    data_map = _section(base, "data", path)
    train_map = _section(base, "train", path)
    data = _build(
        DataConfig,
        apply_overrides(data_map, overrides["data"]),
        path,
        "data",
        origins,
        overrides["data"],
    )
    train_data = apply_overrides(train_map, {**overrides["train"], "seed": seed})
    train = _build(TrainConfig, train_data, path, "train", origins, overrides["train"])
    model = _resolve_model(base.get("model"), overrides, data, path, origins, facts)
    return RunConfig(model=model, data=data, train=train)


def _section(base: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    value = base.get(name)
    if not isinstance(value, dict):
        raise ConfigError(f"must be a mapping, got {value!r}", f"base.{name}", path)
    return value


def _build(
    cls,
    data: dict[str, Any],
    path: Path,
    section: str,
    origins: _Origins,
    overrides: dict[str, Any],
):
    try:
        return from_mapping(cls, data, prefix=section)
    except ConfigError as err:
        raise origins.locate(err, path, section, overrides) from None


def _resolve_model(
    spec: Any,
    overrides: dict[str, dict[str, Any]],
    data: DataConfig,
    path: Path,
    origins: _Origins,
    facts: DataFacts,
) -> DatConfig:
    """The model config, with num_classes / in_chans / img_size taken from the data set."""
    if spec is None:
        raise ConfigError("required section is missing", "base.model", path)
    try:
        num_classes, in_chans = facts.of(data)
    except ConfigError as err:  # e.g. data.path: the folder does not exist
        raise origins.locate(err, path, "data", overrides["data"]) from None
    derived = {
        "num_classes": num_classes,
        "in_chans": in_chans,
        "img_size": [data.img_size, data.img_size],
    }
    given = dict(spec) if isinstance(spec, dict) else {"preset": spec}
    model_overrides = overrides["model"]
    for key, value in {**given, **model_overrides}.items():
        if key in DATA_DERIVED and _norm(value) != _norm(derived[key]):
            clash = ConfigError(
                f"is set by the data ({data.name!r} gives {derived[key]!r}); "
                "remove it or change data",
                f"model.{key}",
            )
            raise origins.locate(clash, path, "model", model_overrides)
    try:
        return resolve_model_config(given, {**model_overrides, **derived}, key="model")
    except ConfigError as err:
        raise origins.locate(err, path, "model", model_overrides) from None


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


__all__ = [
    "ReportClaim",
    "DataFacts",
    "ExperimentFile",
    "load_experiment",
    "resolve_run",
]
