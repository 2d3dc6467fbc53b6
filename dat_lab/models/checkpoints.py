"""Foreign checkpoints read, converted and fitted to a DAT model: one home, one conversion loop.

Three layouts reach a model (timm's ``checkpoint_filter_fn`` idea, written once here):

- the official DAT v1 and DAT++ checkpoints (LeapLabTHU/DAT): keys renamed by the table of
  :mod:`dat_lab.models.official`, 1x1 convs reshaped to linear weights, the buffers the
  official code saves dropped;
- a Lightning checkpoint of a dat-lab run: the network under ``model.``;
- a plain state dict of ours (timm-style).

:func:`convert_state_dict` maps any of them to the model's keys (relative-position tables of
another size resized bicubically); :func:`fit_weights` loads the result with a report and a
ConfigError naming any tensor that does not fit; :func:`load_official_checkpoint` is the strict
official path, whose errors name the official keys. The key lists of the official checkpoints
(:meth:`Preset.official_shapes`) name what is wrong with a file in the official layout: timm's
strict load checks it against its preset's list first (:func:`check_official_layout`), and
:func:`infer_official_model`, when no preset fits, names the keys in which it differs from the
closest list (a ConfigError naming the file and the first keys missing, misshaped or
unexpected). Build the model with
``sampling="official"`` (DAT v1 weights) or ``sampling="official_pp"`` (DAT++ weights) to
reproduce the official outputs; the default consistent convention gives slightly different
features with the same weights. Files load safely (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dat_lab.models.config import DatConfig
from dat_lab.models.dat import build_model
from dat_lab.models.enums import Sampling
from dat_lab.models.official import DROPPED, rename_official_key
from dat_lab.models.presets import Preset, official_presets
from dat_lab.schema import ConfigError

# Tables resized (bicubically) when the model's input size or window differs from the source's.
RELATIVE_TABLES = ("rpe_table", "relative_position_bias_table")


class Layout(enum.StrEnum):
    """The key layout of a checkpoint's state dict."""

    OFFICIAL = "official"  # LeapLabTHU/DAT (v1 or DAT++)
    LIGHTNING = "lightning"  # a dat-lab run's Lightning checkpoint: the network under "model."
    STATE_DICT = "state_dict"  # our own keys


class CheckpointMismatch(KeyError):
    """An official checkpoint does not fit the model: the message names the keys."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def is_official(state: dict[str, Any]) -> bool:
    return any(k.startswith(("patch_proj.", "cls_head.")) for k in state)


def detect_layout(state: dict[str, Any]) -> Layout:
    if is_official(state):
        return Layout.OFFICIAL
    if any(k.startswith("model.") for k in state):
        return Layout.LIGHTNING
    return Layout.STATE_DICT


@dataclass
class Converted:
    """A state dict in the model's keys, and which relative tables were resized to fit."""

    state: dict[str, torch.Tensor] = field(default_factory=dict)
    resized: list[str] = field(default_factory=list)


def _our_key(key: str, layout: Layout, model_keys: set[str]) -> str:
    if layout is Layout.LIGHTNING:
        return key.removeprefix("model.")
    if layout is Layout.STATE_DICT:
        return key
    new = rename_official_key(key, model_keys)
    if new is None:
        raise CheckpointMismatch(f"official key {key!r} has no counterpart in dat-lab's DAT")
    return new


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


def convert(
    state: dict[str, Any], model: nn.Module, layout: Layout, strict: bool = False
) -> Converted:
    """The conversion loop: ``state`` in ``layout`` -> the model's keys and shapes.

    Not ``strict``: keys the model lacks are passed on (for the caller's load to name) and
    relative tables of another size are resized. ``strict`` (official checkpoints only): an
    unexpected, misshaped or missing key raises :class:`CheckpointMismatch` naming it.
    """
    ours = model.state_dict()
    out = Converted()
    for key, value in state.items():
        if DROPPED.search(key) or (layout is Layout.LIGHTNING and not key.startswith("model.")):
            continue  # rebuilt buffers; a Lightning module's metric state
        new = _our_key(key, layout, set(ours))
        target = ours.get(new)
        if target is None and strict:
            raise CheckpointMismatch(
                f"official key {key!r} -> {new!r}, which this model lacks (unexpected key)"
            )
        if target is not None:
            if value.dim() == 4 and target.dim() == 2 and value.shape[2:] == (1, 1):
                value = value.flatten(1)  # 1x1 conv -> linear
            if strict and value.shape != target.shape:
                raise CheckpointMismatch(
                    f"official key {key!r} -> {new!r}: "
                    f"shape {tuple(value.shape)} != {tuple(target.shape)}"
                )
            if new.endswith(RELATIVE_TABLES) and value.shape != target.shape:
                if value.dim() == target.dim():
                    value = _resize_table(value, target.shape)
                    out.resized.append(new)
        out.state[new] = value
    missing = sorted(set(ours) - set(out.state)) if strict else []
    if missing:
        raise CheckpointMismatch(f"missing key(s) for this model: {', '.join(missing[:10])}")
    return out


def official_differences(
    state: dict[str, Any], shapes: dict[str, tuple[int, ...]], resized_tables: bool = False
) -> list[str]:
    """How ``state`` differs from the official checkpoint whose keys and shapes are ``shapes``.

    One line per key, with what the official checkpoint has: missing and misshaped keys in the
    checkpoint's order, then unexpected ones. The buffers the official code saves and we rebuild
    (window indices, shift masks) are neither required nor checked. The classifier may have
    another class count (a checkpoint fine-tuned in the official layout: a new head is the
    fitting's choice, ``init_exclude: [head]`` or timm's ``num_classes``), and with
    ``resized_tables`` the relative-position tables another size of the same rank (the
    conversion resizes them).
    """
    out = []
    for key, shape in shapes.items():
        if DROPPED.search(key):
            continue
        value = state.get(key)
        if value is None:
            out.append(f"{key!r} is missing (official shape {shape})")
            continue
        got = tuple(value.shape)
        head = key.startswith("cls_head.") and got[1:] == shape[1:]
        table = resized_tables and key.endswith(RELATIVE_TABLES) and len(got) == len(shape)
        if got != shape and not (head or table):
            out.append(f"{key!r} has shape {got}, officially {shape}")
    out += [f"{k!r} is unexpected" for k in state if k not in shapes and not DROPPED.search(k)]
    return out


def _listed(differences: list[str], limit: int = 5) -> str:
    more = len(differences) - limit
    return "; ".join(differences[:limit]) + (f"; and {more} more" if more > 0 else "")


def check_official_layout(
    state: dict[str, Any],
    preset: Preset,
    source: str,
    key: str = "",
    resized_tables: bool = False,
) -> None:
    """ConfigError (naming ``source`` and ``key``) unless ``state`` has the keys and shapes of
    ``preset``'s official checkpoint (:func:`official_differences`). Nothing to check when the
    preset's official keys are not listed (:meth:`Preset.official_shapes` is ``None``)."""
    shapes = preset.official_shapes()
    if shapes is None:
        return
    differences = official_differences(state, shapes, resized_tables)
    if differences:
        raise ConfigError(
            f"{source!r} is not {preset.name}'s official checkpoint: "
            f"{len(differences)} key(s) differ: {_listed(differences)}",
            key,
        )


def _unwrap(state_dict: dict[str, Any]) -> dict[str, Any]:
    """The tensors of a checkpoint dict: bare or under ``model`` / ``state_dict``."""
    state_dict = state_dict.get("model", state_dict)
    return state_dict.get("state_dict", state_dict)


def convert_state_dict(
    state_dict: dict[str, Any],
    model: nn.Module,
    official: Preset | None = None,
    source: str = "",
    key: str = "",
) -> Converted:
    """Any layout (official, Lightning, ours; bare or under ``model``/``state_dict``) ->
    the model's keys, with relative tables of another size resized.

    ``official``: the preset whose official checkpoint an official-layout ``state_dict`` must
    be (:func:`check_official_layout`, relative tables of another size allowed), checked before
    converting; ``source`` and ``key`` name the file and the input in its error.
    """
    state_dict = _unwrap(state_dict)
    layout = detect_layout(state_dict)
    if layout is Layout.OFFICIAL and official is not None:
        check_official_layout(state_dict, official, source, key, resized_tables=True)
    sampling = getattr(getattr(model, "cfg", None), "sampling", None)
    if layout is Layout.OFFICIAL and sampling not in (Sampling.OFFICIAL, Sampling.OFFICIAL_PP):
        warnings.warn(
            "official DAT weights loaded into a model with dat-lab's consistent sampling: "
            "its outputs differ from the official ones (use the .official_in1k tag or "
            "sampling='official' to reproduce them)",
            stacklevel=2,
        )
    return convert(state_dict, model, layout)


def load_official_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load an official DAT v1 or DAT++ checkpoint (``{"model": state_dict}`` or bare).

    Strict: every official key must map to one of ours and every one of ours must be filled,
    with the right shape; otherwise :class:`CheckpointMismatch` names the key.
    """
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    state = blob.get("model", blob) if isinstance(blob, dict) else blob
    if not isinstance(state, dict):
        raise CheckpointMismatch(f"{path}: expected a state dict, got {type(state).__name__}")
    converted = convert(state, model, Layout.OFFICIAL, strict=True)
    model.load_state_dict(converted.state, strict=True)
    return model


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file's tensors, their layout and, when known, the model they are for.

    Attributes:
        state: the raw tensors (any layout :func:`fit_weights` maps).
        kind: the layout of ``state``.
        path: the file read.
        model: the architecture when known (inferred for official files).
    """

    state: dict[str, torch.Tensor]
    kind: Layout
    path: Path
    model: DatConfig | None = None


def read_checkpoint(path: Path, key: str = "") -> Checkpoint:
    """Read a checkpoint file; ConfigError (naming ``key``) if it is not one."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        raise ConfigError(f"{str(path)!r} is not a readable checkpoint ({err})", key) from None
    if isinstance(blob, dict) and isinstance(blob.get("state_dict"), dict):
        return Checkpoint(blob["state_dict"], Layout.LIGHTNING, path)
    state = blob.get("model", blob) if isinstance(blob, dict) else blob
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConfigError(f"{str(path)!r} holds no state dict of tensors", key)
    if is_official(state):
        return Checkpoint(state, Layout.OFFICIAL, path, infer_official_model(state, path, key))
    return Checkpoint(state, Layout.STATE_DICT, path)


def infer_official_model(state: dict[str, torch.Tensor], path: Path, key: str = "") -> DatConfig:
    """The official preset whose shapes the checkpoint has (its official sampling convention).

    The classifier's class count is the checkpoint's (one fine-tuned in the official layout).
    Presets whose official key list the file matches are tried first. When no preset fits, the
    ConfigError names the keys in which the file differs from the closest listed official
    checkpoint (:func:`official_differences`).
    """
    presets = official_presets()
    listed = {
        p.name: official_differences(state, s) for p in presets if (s := p.official_shapes())
    }
    head = state.get("cls_head.weight")
    classes = {"num_classes": int(head.shape[0])} if head is not None and head.dim() == 2 else {}
    for preset in sorted(presets, key=lambda p: listed.get(p.name) != []):
        cfg = preset.build().replace(sampling=preset.official, **classes)
        with torch.device("meta"):
            model = build_model(cfg)
        try:
            fit_weights(model, state, resize=False, dry_run=True)
        except ConfigError:
            continue
        return cfg
    names = ", ".join(p.name for p in presets)
    message = f"{str(path)!r} is in the official layout but fits none of {names}"
    name = min(listed, key=lambda n: len(listed[n]), default="")
    if name and listed[name]:
        unlisted = ", ".join(p.name for p in presets if p.name not in listed)
        message += (
            f"; the closest listed official checkpoint, {name}'s"
            + (f" ({unlisted}: keys not listed)" if unlisted else "")
            + f", differs in {len(listed[name])} key(s): {_listed(listed[name])}"
        )
    raise ConfigError(message, key)


@dataclass
class FitReport:
    """Which model tensors came from the source: loaded as they are, resized, or skipped."""

    loaded: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return {"loaded": self.loaded, "resized": self.resized, "skipped": self.skipped}


def fit_weights(
    model: nn.Module,
    state: dict[str, Any],
    exclude: tuple[str, ...] = (),
    resize: bool = True,
    dry_run: bool = False,
    source: str = "",
    key: str = "",
) -> FitReport:
    """Load ``state`` into ``model``: every tensor must fit, except those under ``exclude``.

    ``exclude`` holds module prefixes (``head``): those tensors keep the model's own values.
    Relative-position tables of another size are resized (``resize``); any other missing,
    unexpected or misshaped tensor raises ConfigError naming it (before anything is loaded).
    """
    where = f"{source}: " if source else ""
    try:
        converted = convert_state_dict(state, model)
    except CheckpointMismatch as err:  # an official key of no official pattern
        raise ConfigError(f"{where}{err}", key) from None
    ours = model.state_dict()

    def excluded(name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in exclude)

    for name, value in converted.state.items():
        if excluded(name):
            continue
        if name not in ours:
            raise ConfigError(f"{where}checkpoint tensor {name!r} has no place in the model", key)
        if value.shape != ours[name].shape or (name in converted.resized and not resize):
            hint = " (start a new head with train.init_exclude: [head])" if "head" in name else ""
            raise ConfigError(
                f"{where}{name!r} has shape {tuple(value.shape)} in the checkpoint but "
                f"{tuple(ours[name].shape)} in the model{hint}",
                key,
            )
    missing = sorted(n for n in ours if n not in converted.state and not excluded(n))
    if missing:
        raise ConfigError(f"{where}the checkpoint lacks {', '.join(missing[:5])}", key)
    if not dry_run:
        keep = {n: v for n, v in converted.state.items() if n in ours and not excluded(n)}
        model.load_state_dict(keep, strict=False)
    return _report(ours, converted, excluded)


def _report(
    ours: dict[str, Any], converted: Converted, excluded: Callable[[str], bool]
) -> FitReport:
    return FitReport(
        loaded=sorted(
            n
            for n in ours
            if n in converted.state and not excluded(n) and n not in converted.resized
        ),
        resized=sorted(n for n in converted.resized if not excluded(n)),
        skipped=sorted(n for n in ours if excluded(n)),
    )
