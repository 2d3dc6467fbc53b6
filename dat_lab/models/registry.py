"""DAT presets as timm models: ``checkpoint_filter_fn``, pretrained configs, entry points.

The layout follows timm's ``swin_transformer.py`` (filter, ``_create_*``, ``_cfg`` and
``default_cfgs``, then one ``@register_model`` function per preset). The architecture comes
from the typed preset (:mod:`dat_lab.models.presets`); timm keyword arguments map onto its
:class:`DatConfig` fields (dotted keys reach stages: ``**{"stages.2.offset_range": 4}``).

Tags choose the coordinate convention of the deformable blocks: ``dat_tiny`` (untagged) is
dat-lab's consistent convention with random weights; ``dat_tiny.official_in1k`` is the official
convention, for the official ImageNet-1k weights (``dat_pp_*.official_in1k``: the DAT++ code's
convention, ``official_pp``, for the official DAT++ weights), loaded from a file path only::

    timm.create_model("dat_tiny.official_in1k", pretrained=True,
                      pretrained_cfg_overlay=dict(file="dat_tiny_in1k_224.pth"))
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import (
    build_model_with_cfg,
    generate_default_cfgs,
    register_model,
    resolve_pretrained_cfg,
)
from torch import nn

from dat_lab.models.config import DatConfig, Patchify, Sampling
from dat_lab.models.dat import DAT
from dat_lab.models.official import DROPPED, rename_official_key
from dat_lab.models.presets import get_preset
from dat_lab.models.presets_pp import DATPP_PRESETS
from dat_lab.schema import ConfigError, apply_overrides, from_mapping

# Keyword arguments DAT's constructor takes itself; every other one maps onto DatConfig.
MODEL_KWARGS = ("global_pool", "device", "dtype")
# timm's names for DatConfig fields.
ALIASES = {"drop_path_rate": "drop_path"}
# Tags whose weights use the official coordinate convention.
OFFICIAL_TAGS = ("official_in1k",)
DATPP_NAMES = frozenset(fn.__name__ for fn in DATPP_PRESETS)


def official_sampling(variant: str) -> Sampling:
    """The coordinate convention of a preset's official weights (DAT v1 or DAT++ code)."""
    return Sampling.OFFICIAL_PP if variant in DATPP_NAMES else Sampling.OFFICIAL


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


def _resize_table(value: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Bicubic resize of a relative-position table to ``shape`` (official load_pretrained).

    D blocks' ``rpe_table`` is ``heads x (2H-1) x (2W-1)``; L/S blocks'
    ``relative_position_bias_table`` is ``(2w-1)^2 x heads``.
    """
    if value.dim() == 3:
        return F.interpolate(value[None], size=shape[-2:], mode="bicubic")[0]
    side_in, side_out = round(value.shape[0] ** 0.5), round(shape[0] ** 0.5)
    grid = value.T.reshape(1, -1, side_in, side_in)
    grid = F.interpolate(grid, size=(side_out, side_out), mode="bicubic")
    return grid.reshape(-1, side_out * side_out).T.contiguous()


def checkpoint_filter_fn(state_dict: dict[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
    """Official DAT v1 (or dat-lab / Lightning) weights -> this model's keys and shapes.

    Official keys are renamed (1x1 convs become linear weights); the buffers the official code
    saves are dropped; relative-position tables of another size are resized bicubically, for
    fine-tuning at another resolution. Keys this model lacks are passed on for timm's strict
    load to name (the classifier is dropped by timm when ``num_classes`` differs).
    """
    return convert_state_dict(state_dict, model)[0]


def convert_state_dict(
    state_dict: dict[str, Any], model: nn.Module
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """:func:`checkpoint_filter_fn`, and the keys whose tables it resized."""
    state_dict = state_dict.get("model", state_dict)
    state_dict = state_dict.get("state_dict", state_dict)
    ours = model.state_dict()
    official = any(k.startswith(("patch_proj.", "cls_head.")) for k in state_dict)
    sampling = getattr(getattr(model, "cfg", None), "sampling", None)
    if official and sampling not in (Sampling.OFFICIAL, Sampling.OFFICIAL_PP):
        warnings.warn(
            "official DAT weights loaded into a model with dat-lab's consistent sampling: "
            "its outputs differ from the official ones (use the .official_in1k tag or "
            "sampling='official' to reproduce them)",
            stacklevel=2,
        )
    # A Lightning checkpoint of dat-lab's training module: the network is under "model.",
    # the rest is the module's metric state.
    lightning = any(k.startswith("model.") for k in state_dict)
    out: dict[str, torch.Tensor] = {}
    resized: list[str] = []
    for key, value in state_dict.items():
        if DROPPED.search(key) or (lightning and not key.startswith("model.")):
            continue
        if official:
            key = rename_official_key(key, set(ours))
        elif lightning:
            key = key.removeprefix("model.")
        target = ours.get(key)
        if target is not None:
            if value.dim() == 4 and target.dim() == 2 and value.shape[2:] == (1, 1):
                value = value.flatten(1)  # 1x1 conv -> linear
            if key.endswith(("rpe_table", "relative_position_bias_table")):
                if value.shape != target.shape and value.dim() == target.dim():
                    value = _resize_table(value, target.shape)
                    resized.append(key)
        out[key] = value
    return out, resized


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
    cfg = get_preset(variant)
    if pretrained_cfg.tag in OFFICIAL_TAGS:
        cfg = cfg.replace(sampling=official_sampling(variant))
    out_indices = kwargs.pop("out_indices", tuple(range(len(cfg.stages))))
    return build_model_with_cfg(
        partial(_dat_from_kwargs, variant=variant),
        variant,
        pretrained,
        pretrained_cfg=pretrained_cfg.to_dict(),
        model_cfg=cfg,
        pretrained_filter_fn=checkpoint_filter_fn,
        # Stage outputs through forward_intermediates, channels-first (NCHW), unused stages
        # pruned: what detection and segmentation necks expect.
        feature_cfg=dict(feature_cls="getter", out_indices=out_indices),
        **kwargs,
    )


def _cfg(preset: str, **kwargs: Any) -> dict[str, Any]:
    """Pretrained config of a preset: input size, classes and pool size from its DatConfig.

    Evaluation transform of the paper: resize by crop_pct 0.875, bicubic, centre crop.
    """
    cfg = get_preset(preset)
    size = cfg.img_size or (224, 224)
    return {
        "url": "",
        "num_classes": cfg.num_classes,
        "input_size": (cfg.in_chans, *size),
        "pool_size": cfg.feature_size(len(cfg.stages) - 1, size),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.conv1" if cfg.stem == Patchify.CONV else "stem.proj",
        "classifier": "head",
        "license": "apache-2.0",
        **kwargs,
    }


_OFFICIAL = dict(paper_ids="arXiv:2201.00520", origin_url="https://github.com/LeapLabTHU/DAT")
_OFFICIAL_PP = dict(_OFFICIAL, paper_ids="arXiv:2309.01430")

default_cfgs = generate_default_cfgs(
    {
        "dat_tiny": _cfg("dat_tiny"),
        "dat_tiny.official_in1k": _cfg("dat_tiny", **_OFFICIAL),
        "dat_small": _cfg("dat_small"),
        "dat_small.official_in1k": _cfg("dat_small", **_OFFICIAL),
        "dat_base": _cfg("dat_base"),
        "dat_base.official_in1k": _cfg("dat_base", **_OFFICIAL),
        "dat_base_384": _cfg("dat_base_384", crop_pct=1.0),
        "dat_base_384.official_in1k": _cfg("dat_base_384", crop_pct=1.0, **_OFFICIAL),
        "dat_nano": _cfg("dat_nano", crop_pct=1.0),
        "dat_micro": _cfg("dat_micro", crop_pct=1.0),
        "dat_pp_tiny": _cfg("dat_pp_tiny"),
        "dat_pp_tiny.official_in1k": _cfg("dat_pp_tiny", **_OFFICIAL_PP),
        "dat_pp_small": _cfg("dat_pp_small"),
        "dat_pp_small.official_in1k": _cfg("dat_pp_small", **_OFFICIAL_PP),
        "dat_pp_base": _cfg("dat_pp_base"),
        "dat_pp_base.official_in1k": _cfg("dat_pp_base", **_OFFICIAL_PP),
        "dat_pp_base_384": _cfg("dat_pp_base_384", crop_pct=1.0),
        "dat_pp_base_384.official_in1k": _cfg("dat_pp_base_384", crop_pct=1.0, **_OFFICIAL_PP),
        "dat_pp_nano": _cfg("dat_pp_nano", crop_pct=1.0),
    }
)


@register_model
def dat_tiny(pretrained: bool = False, **kwargs: Any) -> DAT:
    """DAT-T: 4.6G FLOPs, 29M params, 82.0 top-1 (paper)."""
    return _create_dat("dat_tiny", pretrained, **kwargs)


@register_model
def dat_small(pretrained: bool = False, **kwargs: Any) -> DAT:
    """DAT-S: 9.0G FLOPs, 50M params, 83.7 top-1 (paper)."""
    return _create_dat("dat_small", pretrained, **kwargs)


@register_model
def dat_base(pretrained: bool = False, **kwargs: Any) -> DAT:
    """DAT-B: 15.8G FLOPs, 88M params, 84.0 top-1 (paper)."""
    return _create_dat("dat_base", pretrained, **kwargs)


@register_model
def dat_base_384(pretrained: bool = False, **kwargs: Any) -> DAT:
    """DAT-B at 384 px, window 12: 49.8G FLOPs, 84.8 top-1 (paper)."""
    return _create_dat("dat_base_384", pretrained, **kwargs)


@register_model
def dat_nano(pretrained: bool = False, **kwargs: Any) -> DAT:
    """CPU preset for 32 px images (about 0.4M parameters)."""
    return _create_dat("dat_nano", pretrained, **kwargs)


@register_model
def dat_micro(pretrained: bool = False, **kwargs: Any) -> DAT:
    """CPU preset for 64 px images (about 0.4M parameters)."""
    return _create_dat("dat_micro", pretrained, **kwargs)


@register_model
def dat_pp_tiny(pretrained: bool = False, **kwargs: Any) -> DAT:
    """DAT-T++: 4.3G FLOPs, 24M params, 83.9 top-1 (DAT++ paper)."""
    return _create_dat("dat_pp_tiny", pretrained, **kwargs)


@register_model
def dat_pp_small(pretrained: bool = False, **kwargs: Any) -> DAT:
    """DAT-S++: 9.4G FLOPs, 53M params, 84.6 top-1 (DAT++ paper)."""
    return _create_dat("dat_pp_small", pretrained, **kwargs)


@register_model
def dat_pp_base(pretrained: bool = False, **kwargs: Any) -> DAT:
    """DAT-B++: 16.6G FLOPs, 93M params, 84.9 top-1 (DAT++ paper)."""
    return _create_dat("dat_pp_base", pretrained, **kwargs)


@register_model
def dat_pp_base_384(pretrained: bool = False, **kwargs: Any) -> DAT:
    """DAT-B++ at 384 px: 85.9 top-1 (DAT++ paper)."""
    return _create_dat("dat_pp_base_384", pretrained, **kwargs)


@register_model
def dat_pp_nano(pretrained: bool = False, **kwargs: Any) -> DAT:
    """DAT++-style CPU preset for 32 px images (about 0.46M parameters)."""
    return _create_dat("dat_pp_nano", pretrained, **kwargs)
