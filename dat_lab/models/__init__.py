"""The DAT backbone: config schema, attention types, presets, official-checkpoint loader."""

from dat_lab.models.config import (
    Attn,
    DatConfig,
    DeformableSpec,
    OffsetMode,
    PosEnc,
    Sampling,
    StageConfig,
)
from dat_lab.models.dat import DAT, DeformableRecord, build_model
from dat_lab.models.presets import get_preset, list_presets, register_preset, resolve_model_config

__all__ = [
    "DAT",
    "Attn",
    "DatConfig",
    "DeformableRecord",
    "DeformableSpec",
    "OffsetMode",
    "PosEnc",
    "Sampling",
    "StageConfig",
    "build_model",
    "get_preset",
    "list_presets",
    "register_preset",
    "resolve_model_config",
]
