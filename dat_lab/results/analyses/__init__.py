"""The report's analyses, one module per table or figure (a fixed list: no config names code).

``TABLES`` are tried in order and the first that applies makes the group's table (the
generic ``variants`` table always applies); every one of ``FIGURES`` that applies adds its
figures. Each module is also a script (``analysis/NAME.py`` runs its ``main``).
"""

from __future__ import annotations

from types import ModuleType

from dat_lab.results.analyses import (
    attention_ablation,
    offset_range,
    optuna_importance,
    reduction,
    stage_placement,
    sweep_pareto,
    sweep_race,
    training_curves,
    variants,
)

TABLES: tuple[ModuleType, ...] = (
    offset_range,
    stage_placement,
    attention_ablation,
    reduction,
    variants,
)
FIGURES: tuple[ModuleType, ...] = (
    sweep_pareto,
    sweep_race,
    training_curves,
    optuna_importance,
)
BY_NAME: dict[str, ModuleType] = {m.NAME: m for m in (*TABLES, *FIGURES)}

__all__ = ["BY_NAME", "FIGURES", "TABLES"]
