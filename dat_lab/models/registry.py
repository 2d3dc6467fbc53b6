"""DAT presets as timm models: ``checkpoint_filter_fn``, pretrained configs, entry points.

The layout follows timm's ``swin_transformer.py`` (filter, ``_create_*``, ``_cfg`` and
``default_cfgs``, then one ``@register_model`` function per preset), with the cfgs and entry
points generated from the preset table (:data:`dat_lab.models.presets.PRESETS`) instead of
written out per preset. timm keyword arguments map onto the preset's :class:`DatConfig` fields
(dotted keys reach stages: ``**{"stages.2.offset_range": 4}``).

Tags choose the coordinate convention of the deformable blocks: ``dat_tiny`` (untagged) is
dat-lab's consistent convention with random weights; ``dat_tiny.official_in1k`` is the official
convention, for the official ImageNet-1k weights (``dat_pp_*.official_in1k``: the DAT++ code's
convention, ``official_pp``, for the official DAT++ weights), loaded from a file path only::

    timm.create_model("dat_tiny.official_in1k", pretrained=True,
                      pretrained_cfg_overlay=dict(file="dat_tiny_in1k_224.pth"))
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import (
    build_model_with_cfg,
    generate_default_cfgs,
    register_model,
    resolve_pretrained_cfg,
)
from torch import nn

from dat_lab.models.checkpoints import convert_state_dict
from dat_lab.models.config import DatConfig
from dat_lab.models.dat import DAT
from dat_lab.models.enums import Patchify, Sampling
from dat_lab.models.presets import PRESETS, Preset
from dat_lab.schema import ConfigError, apply_overrides, from_mapping

# Keyword arguments DAT's constructor takes itself; every other one maps onto DatConfig.
MODEL_KWARGS = ("global_pool", "device", "dtype")
# timm's names for DatConfig fields.
ALIASES = {"drop_path_rate": "drop_path"}
# Tags whose weights use the official coordinate convention.
OFFICIAL_TAGS = ("official_in1k",)


class ModelArgumentError(ConfigError, TypeError):
    """An unknown or invalid keyword argument to a DAT timm entry point.

    A ``TypeError`` as well, as Python raises for an unexpected keyword (timm relies on it).
    """


def apply_model_kwargs(cfg: DatConfig, kwargs: dict[str, Any], variant: str) -> DatConfig:
    """``cfg`` with timm keyword arguments applied (validated as a whole)."""
    fields = set(cfg.to_dict())
    flat: dict[str, Any] = {}
    for key, value in kwargs.items():
        key = ALIASES.get(key, key)
        if key.split(".")[0] not in fields:
            allowed = sorted(fields | set(ALIASES) | set(MODEL_KWARGS)) + ["features_only"]
            raise ModelArgumentError(
                f"unknown keyword argument {key!r} for {variant}; allowed: {', '.join(allowed)} "
                "(and dotted DatConfig keys such as 'stages.2.offset_range')"
            )
        if key == "img_size" and isinstance(value, int):
            value = (value, value)
        flat[key] = list(value) if isinstance(value, tuple) else value
    try:
        merged = apply_overrides(cfg.to_dict(), flat)
        return from_mapping(DatConfig, merged, prefix=variant)
    except ConfigError as err:
        raise ModelArgumentError(err.message, err.key, err.file) from None


def _dat_from_kwargs(cfg: DatConfig, variant: str = "", **kwargs: Any) -> DAT:
    own = {k: kwargs.pop(k) for k in MODEL_KWARGS if k in kwargs}
    return DAT(apply_model_kwargs(cfg, kwargs, variant), **own)


def checkpoint_filter_fn(
    state_dict: dict[str, Any],
    model: nn.Module,
    official: Preset | None = None,
    source: str = "",
) -> dict[str, torch.Tensor]:
    """Official DAT v1 / DAT++ (or dat-lab / Lightning) weights -> this model's keys and shapes.

    Official keys are renamed (1x1 convs become linear weights); the buffers the official code
    saves are dropped; relative-position tables of another size are resized bicubically, for
    fine-tuning at another resolution. Keys this model lacks are passed on for timm's strict
    load to name (the classifier is dropped by timm when ``num_classes`` differs). The
    conversion is :func:`dat_lab.models.checkpoints.convert_state_dict`.

    ``official``: a file in the official layout must first have the keys and shapes of that
    preset's official checkpoint (its classifier and relative tables may differ in size), or a
    ConfigError names ``source`` and the keys that differ (``.official_in1k`` models loaded
    strictly, the timm default, check it).
    """
    return convert_state_dict(state_dict, model, official, source, key="pretrained_cfg.file").state


def _create_dat(variant: str, pretrained: bool = False, **kwargs: Any) -> DAT:
    """Build a preset through timm's ``build_model_with_cfg`` (features, pretrained, cfgs)."""
    pretrained_cfg = resolve_pretrained_cfg(
        variant,
        pretrained_cfg=kwargs.pop("pretrained_cfg", None),
        pretrained_cfg_overlay=kwargs.pop("pretrained_cfg_overlay", None),
    )
    if pretrained and not pretrained_cfg.file:
        raise ModelArgumentError(
            f"{variant}: pretrained=True needs a weights file; dat-lab downloads nothing. Pass "
            "pretrained_cfg_overlay=dict(file=PATH) (tag .official_in1k for official weights)"
        )
    preset = PRESETS[variant]
    cfg = preset.build()
    official = pretrained_cfg.tag in OFFICIAL_TAGS
    if official:
        cfg = cfg.replace(sampling=preset.official or Sampling.OFFICIAL)
    # A strict load of an official file: first check it is the preset's official checkpoint.
    check = official and kwargs.get("pretrained_strict", True)
    out_indices = kwargs.pop("out_indices", tuple(range(len(cfg.stages))))
    return build_model_with_cfg(
        partial(_dat_from_kwargs, variant=variant),
        variant,
        pretrained,
        pretrained_cfg=pretrained_cfg.to_dict(),
        model_cfg=cfg,
        pretrained_filter_fn=partial(
            checkpoint_filter_fn,
            official=preset if check else None,
            source=str(pretrained_cfg.file),
        ),
        # Stage outputs through forward_intermediates, channels-first (NCHW), unused stages
        # pruned: what detection and segmentation necks expect.
        feature_cfg=dict(feature_cls="getter", out_indices=out_indices),
        **kwargs,
    )


def _cfg(preset: Preset, **kwargs: Any) -> dict[str, Any]:
    """Pretrained config of a preset: input size, classes and pool size from its DatConfig.

    Evaluation transform of the paper: resize by crop_pct (0.875 at 224 px), bicubic, centre
    crop.
    """
    cfg = preset.build()
    size = cfg.img_size or (224, 224)
    return {
        "url": "",
        "num_classes": cfg.num_classes,
        "input_size": (cfg.in_chans, *size),
        "pool_size": cfg.feature_size(len(cfg.stages) - 1, size),
        "crop_pct": preset.crop_pct,
        "interpolation": "bicubic",
        "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.conv1" if cfg.stem == Patchify.CONV else "stem.proj",
        "classifier": "head",
        "license": "apache-2.0",
        **kwargs,
    }


_ORIGIN = "https://github.com/LeapLabTHU/DAT"
# The papers of the official weights, by their coordinate convention.
PAPERS = {Sampling.OFFICIAL: "arXiv:2201.00520", Sampling.OFFICIAL_PP: "arXiv:2309.01430"}


def _default_cfgs() -> dict[str, Any]:
    """``name`` (dat-lab's convention, random weights) and, for presets with official weights,
    ``name.official_in1k`` (the official convention, weights from a file)."""
    cfgs: dict[str, Any] = {}
    for name, preset in PRESETS.items():
        cfgs[name] = _cfg(preset)
        if preset.official is not None:
            official = dict(paper_ids=PAPERS[preset.official], origin_url=_ORIGIN)
            cfgs[f"{name}.{OFFICIAL_TAGS[0]}"] = _cfg(preset, **official)
    return cfgs


default_cfgs = generate_default_cfgs(_default_cfgs())


def _entry_point(name: str, preset: Preset) -> Callable[..., DAT]:
    """timm's ``@register_model`` function of a preset, as swin_transformer.py writes by hand."""

    def entry_point(pretrained: bool = False, **kwargs: Any) -> DAT:
        return _create_dat(name, pretrained, **kwargs)

    entry_point.__name__ = entry_point.__qualname__ = name
    entry_point.__module__ = __name__  # timm finds default_cfgs in this module
    entry_point.__doc__ = preset.summary
    return entry_point


for _name, _preset in PRESETS.items():
    globals()[_name] = register_model(_entry_point(_name, _preset))
