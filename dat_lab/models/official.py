"""The key names of the official DAT v1 and DAT++ checkpoints (LeapLabTHU/DAT) in our modules.

A table of (official key pattern, our key) and the buffers the official code stores that we
rebuild (window indices, shift masks). The conversion itself (1x1 convs to linear weights,
shapes, resized tables, strict loading) is :mod:`dat_lab.models.checkpoints`.

DAT++ keys (``dat_pp_*``): the conv stem ``patch_proj.{0,1,3,4}``, ConvFFN
``mlps.j.{linear1.0,dwc,linear2.0}``, LPUs ``local_perception_units.j``, LayerScale
``layer_scales.{2j,2j+1}``, N blocks ``attns.j.{qkv,rpb,proj}``, X blocks ``attns.j`` (the
depthwise conv) with ``ln_cnvnxt.j``, and log-CPB ``attns.j.rpe_table.{0,2}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

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


def rename_official_key(key: str, model_keys: set[str]) -> str | None:
    """Our name of an official key (``model_keys`` tells L/S from D output projections);
    ``None`` for a key of no official pattern."""
    for pattern, rename in RENAMES:
        m = re.fullmatch(pattern, key)
        if m:
            return rename(m, model_keys)
    return None
