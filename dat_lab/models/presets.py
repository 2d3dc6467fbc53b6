"""Named model presets, declared once in :data:`PRESETS` (timm entry points in ``registry``).

Paper presets (docs/design.md §1): ``dat_tiny``, ``dat_small``, ``dat_base``,
``dat_base_384``. Small presets for CPU experiments on 32-64 px images keep the four-stage
L/S then L/D structure: ``dat_nano`` (32 px) and ``dat_micro`` (64 px). DAT++ presets are
built in :mod:`dat_lab.models.presets_pp`.

Each entry of the table holds the architecture, the evaluation crop of its timm pretrained
config, the coordinate convention of its official weights (none for the CPU presets) and
whether the package holds the official checkpoint's keys and shapes (``official_keys/``):
timm's default cfgs and entry points and the official-checkpoint reader and checks are
generated from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from dat_lab.models.config import DatConfig
from dat_lab.models.enums import Sampling
from dat_lab.models.presets_pp import (
    dat_pp_base,
    dat_pp_base_384,
    dat_pp_nano,
    dat_pp_small,
    dat_pp_tiny,
)
from dat_lab.models.stage import StageConfig
from dat_lab.schema import ConfigError, apply_overrides, from_mapping


@dataclass(frozen=True)
class Preset:
    """One named model: its architecture and what timm and the official checkpoints need.

    Attributes:
        build: a zero-argument function returning the :class:`DatConfig`; its name names the
            preset and the first line of its docstring describes the timm entry point.
        crop_pct: timm's evaluation crop (1.0 for 384 px and the CPU presets).
        official: the coordinate convention of the official weights of this architecture
            (DAT v1 or DAT++ code); ``None``: there are no official weights.
        official_keys: the package holds ``official_keys/<name>.txt``, every key and shape of
            the official checkpoint (:meth:`official_shapes`).
    """

    build: Callable[[], DatConfig]
    crop_pct: float = 0.875
    official: Sampling | None = None
    official_keys: bool = False

    def __post_init__(self) -> None:
        if self.official_keys and self.official is None:
            raise ValueError(f"{self.name}: official_keys without official weights")

    @property
    def name(self) -> str:
        return self.build.__name__

    @property
    def summary(self) -> str:
        return (self.build.__doc__ or self.name).strip().splitlines()[0]

    def official_shapes(self) -> dict[str, tuple[int, ...]] | None:
        """Every key of the official checkpoint and its shape, in the checkpoint's order.

        Read from ``dat_lab/models/official_keys/<name>.txt`` (package data, listed from the
        official checkpoints of LeapLabTHU/DAT; the buffers the official code saves included).
        ``None`` for a preset without official weights, and for one with official weights whose
        keys were never listed (``dat_base_384``: its window and position tables differ from
        ``dat_base``'s, and nothing here derives or guesses them).
        """
        if not self.official_keys:
            return None
        return dict(_key_list(self.name))


@cache
def _key_list(name: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    text = files("dat_lab.models").joinpath("official_keys", f"{name}.txt").read_text()
    rows = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split("\t")
            rows.append((key, tuple(int(s) for s in shape.split(","))))
    return tuple(rows)


def register_preset(fn: Callable[[], DatConfig], **fields: Any) -> Callable[[], DatConfig]:
    """Add a zero-argument function returning a :class:`DatConfig` to :data:`PRESETS`.

    ``fields``: the other :class:`Preset` attributes (``crop_pct``, ``official``,
    ``official_keys``).
    """
    PRESETS[fn.__name__] = Preset(fn, **fields)
    return fn


def list_presets() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> DatConfig:
    """The config of a named preset; unknown names list what is available."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(list_presets())}")
    return PRESETS[name].build()


def official_presets() -> list[Preset]:
    """The presets with official weights, in table order."""
    return [p for p in PRESETS.values() if p.official is not None]


def resolve_model_config(
    spec: str | dict[str, Any],
    overrides: dict[str, Any] | None = None,
    file: str | None = None,
    key: str = "model",
) -> DatConfig:
    """A model config from a preset name or a mapping, plus dotted overrides.

    A mapping may name ``preset``; its other keys (and ``overrides``) are then applied on top
    of the preset, and the result is validated as a whole.
    """
    if isinstance(spec, str):
        spec = {"preset": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"expected a preset name or a mapping, got {spec!r}", key, file)
    data = dict(spec)
    base: dict[str, Any] = {}
    if "preset" in data:
        try:
            base = get_preset(data.pop("preset")).to_dict()
        except ConfigError as err:
            raise err.located(file, f"{key}.preset") from None
    flat = {**{k: v for k, v in data.items()}, **(overrides or {})}
    try:
        merged = apply_overrides(base, flat)
    except ConfigError as err:
        raise err.located(file, key) from None
    return from_mapping(DatConfig, merged, prefix=key, file=file)


def _four_stages(dims, depths, heads, attn, window) -> tuple[StageConfig, ...]:
    return tuple(
        StageConfig(dim=d, depth=n, heads=h, attn=a, window=window)
        for d, n, h, a in zip(dims, depths, heads, attn, strict=True)
    )


DAT_SPEC = ("LS", "LS", "LD", "LD")  # the paper's DAT: Swin in stages 1-2, L/D in 3-4


def dat_tiny() -> DatConfig:
    """DAT-T: 4.6G FLOPs, 29M params, 82.0 top-1 (paper)."""
    stages = _four_stages((96, 192, 384, 768), (2, 2, 6, 2), (3, 6, 12, 24), DAT_SPEC, 7)
    return DatConfig(stages=stages, drop_path=0.2)


def dat_small() -> DatConfig:
    """DAT-S: 9.0G FLOPs, 50M params, 83.7 top-1 (paper)."""
    stages = _four_stages((96, 192, 384, 768), (2, 2, 18, 2), (3, 6, 12, 24), DAT_SPEC, 7)
    return DatConfig(stages=stages, drop_path=0.3)


def dat_base() -> DatConfig:
    """DAT-B: 15.8G FLOPs, 88M params, 84.0 top-1 (paper)."""
    stages = _four_stages((128, 256, 512, 1024), (2, 2, 18, 2), (4, 8, 16, 32), DAT_SPEC, 7)
    return DatConfig(stages=stages, drop_path=0.5)


def dat_base_384() -> DatConfig:
    """DAT-B at 384 px with window 12: 49.8G FLOPs, 84.8 top-1 (paper)."""
    stages = _four_stages((128, 256, 512, 1024), (2, 2, 18, 2), (4, 8, 16, 32), DAT_SPEC, 12)
    return DatConfig(stages=stages, img_size=(384, 384), drop_path=0.5)


def dat_nano() -> DatConfig:
    """CPU preset for 32 px images: maps 16/8/4/2 (patch 2), window 4, head width 16."""
    stages = _four_stages((16, 32, 64, 96), (2, 2, 2, 2), (1, 2, 4, 6), DAT_SPEC, 4)
    return DatConfig(stages=stages, img_size=(32, 32), patch_size=2, num_classes=2, drop_path=0.0)


def dat_micro() -> DatConfig:
    """CPU preset for 64 px images: maps 16/8/4/2 (patch 4), window 4, head width 16."""
    stages = _four_stages((16, 32, 64, 96), (2, 2, 2, 2), (1, 2, 4, 6), DAT_SPEC, 4)
    return DatConfig(stages=stages, img_size=(64, 64), patch_size=4, num_classes=10, drop_path=0.0)


_V1, _PP = Sampling.OFFICIAL, Sampling.OFFICIAL_PP
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(dat_tiny, official=_V1, official_keys=True),
        Preset(dat_small, official=_V1, official_keys=True),
        Preset(dat_base, official=_V1, official_keys=True),
        Preset(dat_base_384, crop_pct=1.0, official=_V1),  # its checkpoint's keys: not listed
        Preset(dat_nano, crop_pct=1.0),
        Preset(dat_micro, crop_pct=1.0),
        Preset(dat_pp_tiny, official=_PP, official_keys=True),
        Preset(dat_pp_small, official=_PP, official_keys=True),
        Preset(dat_pp_base, official=_PP, official_keys=True),
        Preset(dat_pp_base_384, crop_pct=1.0, official=_PP, official_keys=True),
        Preset(dat_pp_nano, crop_pct=1.0),
    )
}
