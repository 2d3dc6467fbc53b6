"""Dotted override keys (``model.stages.2.offset_range``), the language of variants and studies.

An override key names a section (model, data, train), a dot and a path inside it; experiment
variants, study choices and command-line overrides all speak it, and their errors name the
key where it was written.
"""

from __future__ import annotations

from typing import Any

from dat_lab.schema import check

SECTIONS = ("model", "data", "train")

DOTTED_KEY_RULE = (
    f"must start with one of {', '.join(SECTIONS)} and a dot (e.g. model.stages.2.offset_range)"
)


def is_dotted_key(key: object) -> bool:
    """Whether ``key`` is an override key: a section (model, data, train), a dot, a path."""
    head, _, rest = str(key).partition(".")
    return head in SECTIONS and bool(rest)


def check_dotted_key(key: object, where: str) -> None:
    """Raise ConfigError at ``where`` unless ``key`` is an override key."""
    check(is_dotted_key(key), where, f"got {str(key)!r}: an override key {DOTTED_KEY_RULE}")


def check_override_sets(named: dict[str, Any], where: str) -> None:
    """Each value of ``named`` (an experiment's variants, a study's named choices) is a
    mapping of dotted overrides; errors are located at ``where.NAME[.KEY]``."""
    for name, overrides in named.items():
        check(
            isinstance(overrides, dict),
            f"{where}.{name}",
            "must be a mapping of dotted overrides (or {} for the base)",
        )
        for key in overrides or {}:
            check_dotted_key(key, f"{where}.{name}.{key}")


def names_override(key: str, overrides: dict[str, Any]) -> bool:
    """Whether the dotted ``key`` is one of ``overrides``, lies under one, or holds one
    (``stages.9`` out of range for the override ``stages.9.dim``)."""
    return any(key == k or key.startswith(f"{k}.") or k.startswith(f"{key}.") for k in overrides)
