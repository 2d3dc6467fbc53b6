"""One D block of ours through the transcribed official D forward (one home for the tests).

:func:`official_deformable_forward` writes the block's weights in the official layout
(``proj_q`` as a 1x1 conv, ``conv_offset.{0,1.norm,3}``, ``rpe_table``) and runs
``official_pp_reference.deformable``: the DAT++ code's ``DAttentionBaseline``, or with
``v1=True`` the DAT v1 code's (cell-centre grids).
"""

from __future__ import annotations

import torch
from official_pp_reference import DSpec, deformable

from dat_lab.models.attention import DeformableAttention
from dat_lab.models.enums import OffsetMode, PosEnc


def official_layout(m: DeformableAttention) -> dict[str, torch.Tensor]:
    """``m``'s weights under the official key names (prefix ``d``)."""
    sd = {}
    for name in ("proj_q", "proj_k", "proj_v", "proj_out"):
        lin = getattr(m, name)
        sd[f"d.{name}.weight"], sd[f"d.{name}.bias"] = lin.weight[:, :, None, None], lin.bias
    net = m.conv_offset
    sd["d.conv_offset.0.weight"], sd["d.conv_offset.0.bias"] = net.dwconv.weight, net.dwconv.bias
    sd["d.conv_offset.1.norm.weight"], sd["d.conv_offset.1.norm.bias"] = (
        net.norm.weight,
        net.norm.bias,
    )
    sd["d.conv_offset.3.weight"] = net.proj.weight
    if m.spec.pos_enc == PosEnc.LOG_CPB:
        mlp = m.pos_bias.rpe_table
        sd["d.rpe_table.0.weight"], sd["d.rpe_table.0.bias"] = mlp[0].weight, mlp[0].bias
        sd["d.rpe_table.2.weight"] = mlp[2].weight
    else:
        sd["d.rpe_table"] = m.pos_bias.rpe_table
    return sd


def official_deformable_forward(
    m: DeformableAttention, x: torch.Tensor, v1: bool = False
) -> torch.Tensor:
    """The official D forward with ``m``'s weights, on a channels-first ``x``."""
    spec = m.spec
    bounded = spec.offset_mode == OffsetMode.BOUNDED
    official = DSpec(
        heads=m.heads,
        groups=m.groups,
        stride=spec.reduction,
        ksize=spec.offset_kernel,
        offset_range_factor=spec.offset_range if bounded else -1.0,
        log_cpb=spec.pos_enc == PosEnc.LOG_CPB,
        v1=v1,
    )
    return deformable(official_layout(m), "d", x, official)
