"""State dicts in the official DAT v1 / DAT++ checkpoint layout, for the checkpoint tests.

The keys and shapes are the preset table's (:meth:`dat_lab.models.presets.Preset.official_shapes`,
listed from the official checkpoints of LeapLabTHU/DAT in ``dat_lab/models/official_keys``).
"""

from __future__ import annotations

import torch

from dat_lab.models.presets import PRESETS

# The presets whose official checkpoints' keys are listed (dat_base_384's are not).
LISTED = [name for name, preset in PRESETS.items() if preset.official_keys]
PP_PRESETS = [name for name in LISTED if name.startswith("dat_pp_")]


def official_shapes(preset: str) -> dict[str, tuple[int, ...]]:
    """Every key and shape of ``preset``'s official checkpoint, in the checkpoint's order."""
    shapes = PRESETS[preset].official_shapes()
    assert shapes, f"{preset}'s official keys are not listed"
    return shapes


def official_state_dict(
    preset: str, std: float = 1.0, seed: int = 0, unit_norms: bool = False
) -> dict[str, torch.Tensor]:
    """Random normal tensors (times ``std``) in every official key and shape of ``preset``.

    ``unit_norms``: norm weights are 1 + noise, so activations stay in range through a forward.
    ``std=0``: zeros.
    """
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in official_shapes(preset).items():
        out[key] = std * torch.randn(*shape, generator=g) if std else torch.zeros(*shape)
        if unit_norms and key.endswith("norm.weight"):
            out[key] += 1.0
    return out
