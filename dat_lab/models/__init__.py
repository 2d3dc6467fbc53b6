"""The DAT backbone: config schema, attention types, presets, official-checkpoint loader.

Importing this package registers every preset in timm (:mod:`dat_lab.models.registry`).
"""

from dat_lab.models.config import DatConfig
from dat_lab.models.dat import DAT, DeformableRecord, build_model
from dat_lab.models.enums import Attn, MlpKind, OffsetMode, Patchify, PosEnc, Sampling
from dat_lab.models.presets import get_preset, list_presets, register_preset, resolve_model_config
from dat_lab.models.registry import checkpoint_filter_fn  # registers the presets in timm
from dat_lab.models.stage import DeformableSpec, StageConfig

__all__ = [
    "DAT",
    "Attn",
    "DatConfig",
    "DeformableRecord",
    "DeformableSpec",
    "MlpKind",
    "OffsetMode",
    "Patchify",
    "PosEnc",
    "Sampling",
    "StageConfig",
    "build_model",
    "checkpoint_filter_fn",
    "get_preset",
    "list_presets",
    "register_preset",
    "resolve_model_config",
]
