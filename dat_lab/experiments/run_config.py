"""A run's identity: its resolved config (whose hash is the run id) and its place in an experiment.

Kept apart from :mod:`dat_lab.experiments.spec` (experiment files -> runs) so that the
modules that read runs back (weights, the store's callers) need not import the experiment
file's schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dat_lab.data.config import DataConfig
from dat_lab.models.config import DatConfig
from dat_lab.schema import config_hash, from_mapping, identity_mapping
from dat_lab.train.config import TrainConfig


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's result; its hash is the run id."""

    model: DatConfig
    data: DataConfig
    train: TrainConfig

    def __post_init__(self) -> None:
        # The model is stored with every applicable default written out, so the run id (and
        # config.json) is the same whether a knob was left at its default or set to it.
        object.__setattr__(self, "model", self.model.canonical())

    @property
    def run_id(self) -> str:
        # Fields added since runs were first stored (train.init_*, num_nodes, ...) enter the
        # hash only when set (schema.added_field): earlier runs keep their ids and results.
        return config_hash(self.to_dict(), length=16)

    def to_dict(self) -> dict[str, Any]:
        """What the store keeps in ``config.json``: the fields that make the run id (settings
        such as ``train.loggers`` that do not change results are left out)."""
        return identity_mapping(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return from_mapping(cls, data)


@dataclass(frozen=True)
class RunSpec:
    """One run of an experiment: which variant and seed, and its resolved config."""

    experiment: str
    variant: str
    seed: int
    config: RunConfig

    @property
    def run_id(self) -> str:
        return self.config.run_id
