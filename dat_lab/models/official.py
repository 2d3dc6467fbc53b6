"""Load the official DAT v1 and DAT++ checkpoints (LeapLabTHU/DAT) into our modules, strictly.

One converter for the one foreign layout (timm's ``checkpoint_filter_fn`` idea): rename keys,
reshape 1x1 convs to linear weights, drop buffers the official code stores (window indices,
shift masks). Every official key must map to one of ours and every one of ours must be
filled, with the right shape; otherwise the error names the key.

Build the model with ``sampling="official"`` (DAT v1 weights) or ``sampling="official_pp"``
(DAT++ weights) to reproduce the official outputs; the default consistent convention gives
slightly different features with the same weights.

DAT++ keys (``dat_pp_*``): the conv stem ``patch_proj.{0,1,3,4}``, ConvFFN
``mlps.j.{linear1.0,dwc,linear2.0}``, LPUs ``local_perception_units.j``, LayerScale
``layer_scales.{2j,2j+1}``, N blocks ``attns.j.{qkv,rpb,proj}``, X blocks ``attns.j`` (the
depthwise conv) with ``ln_cnvnxt.j``, and log-CPB ``attns.j.rpe_table.{0,2}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

# Buffers the official code saves that we rebuild at run time.
DROPPED = re.compile(r"\.(relative_position_index|attn_mask)$")


def _block(m: re.Match) -> str:
    return f"stages.{m['s']}.blocks.{m['b']}"


def _proj_out(m: re.Match, model_keys: set[str]) -> str:
    # D blocks call it proj_out (the paper's W_o); L/S blocks call it proj (timm).
    name = f"{_block(m)}.attn.proj_out.{m['p']}"
    return name if name in model_keys else f"{_block(m)}.attn.proj.{m['p']}"


def _stem(conv_stem_name: str, patch_stem_name: str) -> Callable[[re.Match, set[str]], str]:
    # patch_proj.0 / .1 are the patch stem's conv and norm, or the conv stem's first pair.
    def rename(m: re.Match, model_keys: set[str]) -> str:
        name = f"stem.{conv_stem_name}.{m['p']}"
        return name if name in model_keys else f"stem.{patch_stem_name}.{m['p']}"

    return rename


_S, _B, _P = r"(?P<s>\d+)", r"(?P<b>\d+)", r"(?P<p>weight|bias)"
_ATTN = rf"stages\.{_S}\.attns\.{_B}"
# (official key pattern, our key); the first match wins.
Rename = Callable[[re.Match, set[str]], str]
RENAMES: list[tuple[str, Rename]] = [
    (rf"patch_proj\.0\.{_P}", _stem("conv1", "proj")),
    (rf"patch_proj\.1\.norm\.{_P}", _stem("norm1", "norm")),
    (rf"patch_proj\.3\.{_P}", lambda m, _: f"stem.conv2.{m['p']}"),
    (rf"patch_proj\.4\.norm\.{_P}", lambda m, _: f"stem.norm2.{m['p']}"),
    (
        rf"down_projs\.{_S}\.0\.weight",
        lambda m, _: f"stages.{int(m['s']) + 1}.downsample.proj.weight",
    ),
    (
        rf"down_projs\.{_S}\.1\.norm\.{_P}",
        lambda m, _: f"stages.{int(m['s']) + 1}.downsample.norm.{m['p']}",
    ),
    (
        rf"stages\.{_S}\.layer_norms\.{_B}\.norm\.{_P}",  # two norms per block: 2j, 2j+1
        lambda m, _: (
            f"stages.{m['s']}.blocks.{int(m['b']) // 2}.norm{1 + int(m['b']) % 2}.{m['p']}"
        ),
    ),
    (
        rf"stages\.{_S}\.mlps\.{_B}\.chunk\.linear1\.{_P}",
        lambda m, _: f"{_block(m)}.mlp.fc1.{m['p']}",
    ),
    (
        rf"stages\.{_S}\.mlps\.{_B}\.chunk\.linear2\.{_P}",
        lambda m, _: f"{_block(m)}.mlp.fc2.{m['p']}",
    ),
    (rf"stages\.{_S}\.attns\.{_B}\.proj_qkv\.{_P}", lambda m, _: f"{_block(m)}.attn.qkv.{m['p']}"),
    (
        rf"stages\.{_S}\.attns\.{_B}\.relative_position_bias_table",
        lambda m, _: f"{_block(m)}.attn.relative_position_bias_table",
    ),
    (
        rf"stages\.{_S}\.attns\.{_B}\.(?P<n>proj_[qkv])\.{_P}",
        lambda m, _: f"{_block(m)}.attn.{m['n']}.{m['p']}",
    ),
    (rf"stages\.{_S}\.attns\.{_B}\.proj_out\.{_P}", _proj_out),
    (
        rf"stages\.{_S}\.attns\.{_B}\.conv_offset\.0\.{_P}",
        lambda m, _: f"{_block(m)}.attn.conv_offset.dwconv.{m['p']}",
    ),
    (
        rf"stages\.{_S}\.attns\.{_B}\.conv_offset\.1\.norm\.{_P}",
        lambda m, _: f"{_block(m)}.attn.conv_offset.norm.{m['p']}",
    ),
    (
        rf"stages\.{_S}\.attns\.{_B}\.conv_offset\.3\.weight",
        lambda m, _: f"{_block(m)}.attn.conv_offset.proj.weight",
    ),
    (
        rf"stages\.{_S}\.attns\.{_B}\.rpe_table",
        lambda m, _: f"{_block(m)}.attn.pos_bias.rpe_table",
    ),
    # DAT++
    (rf"stages\.{_S}\.mlps\.{_B}\.linear1\.0\.{_P}", lambda m, _: f"{_block(m)}.mlp.fc1.{m['p']}"),
    (rf"stages\.{_S}\.mlps\.{_B}\.linear2\.0\.{_P}", lambda m, _: f"{_block(m)}.mlp.fc2.{m['p']}"),
    (rf"stages\.{_S}\.mlps\.{_B}\.dwc\.{_P}", lambda m, _: f"{_block(m)}.mlp.dwconv.{m['p']}"),
    (
        rf"stages\.{_S}\.local_perception_units\.{_B}\.{_P}",
        lambda m, _: f"{_block(m)}.lpu.conv.{m['p']}",
    ),
    (
        rf"stages\.{_S}\.layer_scales\.{_B}\.weight",  # two per block: 2j, 2j+1
        lambda m, _: f"stages.{m['s']}.blocks.{int(m['b']) // 2}.ls{1 + int(m['b']) % 2}.gamma",
    ),
    (
        rf"stages\.{_S}\.ln_cnvnxt\.{_B}\.norm\.{_P}",
        lambda m, _: f"{_block(m)}.norm2.{m['p']}",
    ),
    (rf"{_ATTN}\.rpb", lambda m, _: f"{_block(m)}.attn.rpb"),
    (rf"{_ATTN}\.qkv\.{_P}", lambda m, _: f"{_block(m)}.attn.qkv.{m['p']}"),
    (rf"{_ATTN}\.proj\.{_P}", lambda m, _: f"{_block(m)}.attn.proj.{m['p']}"),
    (rf"{_ATTN}\.{_P}", lambda m, _: f"{_block(m)}.attn.conv.{m['p']}"),  # X's dwconv
    (
        rf"{_ATTN}\.rpe_table\.(?P<i>[02])\.{_P}",  # log-CPB MLP
        lambda m, _: f"{_block(m)}.attn.pos_bias.rpe_table.{m['i']}.{m['p']}",
    ),
    (rf"cls_norm\.norm\.{_P}", lambda m, _: f"norm.{m['p']}"),
    (rf"cls_head\.{_P}", lambda m, _: f"head.{m['p']}"),
]


class CheckpointMismatch(KeyError):
    """An official checkpoint does not fit the model: the message names the keys."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def rename_official_key(key: str, model_keys: set[str]) -> str:
    """Our name of an official key (``model_keys`` tells L/S from D output projections)."""
    for pattern, rename in RENAMES:
        m = re.fullmatch(pattern, key)
        if m:
            return rename(m, model_keys)
    raise CheckpointMismatch(f"official key {key!r} has no counterpart in dat-lab's DAT")


def convert_official_state_dict(
    state: dict[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """Official v1 keys and shapes -> ours. Raises :class:`CheckpointMismatch` naming keys."""
    ours = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if DROPPED.search(key):
            continue
        new = rename_official_key(key, set(ours))
        if new not in ours:
            raise CheckpointMismatch(
                f"official key {key!r} -> {new!r}, which this model lacks (unexpected key)"
            )
        if value.dim() == 4 and ours[new].dim() == 2 and value.shape[2:] == (1, 1):
            value = value.flatten(1)  # 1x1 conv -> linear
        if value.shape != ours[new].shape:
            raise CheckpointMismatch(
                f"official key {key!r} -> {new!r}: "
                f"shape {tuple(value.shape)} != {tuple(ours[new].shape)}"
            )
        out[new] = value
    missing = sorted(set(ours) - set(out))
    if missing:
        raise CheckpointMismatch(f"missing key(s) for this model: {', '.join(missing[:10])}")
    return out


def load_official_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load an official DAT v1 or DAT++ checkpoint (``{"model": state_dict}`` or bare).

    Loading is strict and safe (``torch.load(weights_only=True)``).
    """
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    state = blob.get("model", blob) if isinstance(blob, dict) else blob
    if not isinstance(state, dict):
        raise CheckpointMismatch(f"{path}: expected a state dict, got {type(state).__name__}")
    model.load_state_dict(convert_official_state_dict(state, model), strict=True)
    return model
