"""State dicts in the official DAT v1 / DAT++ checkpoint layout, for the checkpoint tests.

The key lists (preset<TAB>key<TAB>shape) were taken from the official checkpoints
(LeapLabTHU/DAT) and are kept with the tests in ``tests/models/assets``.
"""

from __future__ import annotations

from pathlib import Path

import torch

ASSETS = Path(__file__).resolve().parent / "models" / "assets"
V1_KEYS = ASSETS / "official_dat_v1_state_dict.txt"  # dat_tiny, dat_small, dat_base
PP_KEYS = ASSETS / "official_datpp_state_dict.txt"  # the PP_PRESETS
PP_PRESETS = ["dat_pp_tiny", "dat_pp_small", "dat_pp_base", "dat_pp_base_384"]


def official_shapes(preset: str) -> dict[str, tuple[int, ...]]:
    """Every key and shape of ``preset``'s official checkpoint, in the checkpoint's order."""
    key_list = PP_KEYS if preset.startswith("dat_pp_") else V1_KEYS
    out = {}
    for line in key_list.read_text().splitlines():
        if line.startswith("#"):
            continue
        name, key, shape = line.split("\t")
        if name == preset:
            out[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    assert out, f"no keys for {preset} in {key_list}"
    return out


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
