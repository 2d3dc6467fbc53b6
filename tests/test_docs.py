"""docs/knobs.md's tables against the configs: every knob documented once, as the code has it."""

from __future__ import annotations

import dataclasses
import enum
import re
from pathlib import Path

import pytest

from dat_lab.models.config import DatConfig
from dat_lab.models.enums import Attn
from dat_lab.models.stage import StageConfig

KNOBS_MD = Path(__file__).resolve().parents[1] / "docs" / "knobs.md"


def _table(header_start: str) -> list[list[str]]:
    """The body rows (cells) of the Markdown table whose header starts with ``header_start``."""
    lines = KNOBS_MD.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def _names(cell: str) -> list[str]:
    return re.findall(r"`([a-z_]+)`", cell)


def _default_text(value: object) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


def _documented_args(cls: type) -> set[str]:
    return set(re.findall(r"^        (\w+): ", cls.__doc__ or "", flags=re.M))


@pytest.mark.parametrize(
    ("header", "cls", "fields"),
    [
        ("| knob (per stage)", StageConfig, {f.name for f in dataclasses.fields(StageConfig)}),
        ("| knob (model)", DatConfig, {"stem", "downsample", "mlp", "layer_scale", "lpu"}),
    ],
)
def test_knob_tables_list_exactly_the_config_fields_with_their_defaults(header, cls, fields):
    rows = _table(header)
    named = [n for row in rows for n in _names(row[0])]
    assert sorted(named) == sorted(fields)  # each once, none missing, none extra
    assert fields <= _documented_args(cls)  # and each in the class docstring's Args
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for row in rows:
        for name in _names(row[0]):
            default = defaults[name]
            if default is not dataclasses.MISSING and (default is not None or cls is DatConfig):
                assert _default_text(default) in row[2], (name, row[2])


def test_every_model_level_field_is_named_in_the_knob_page():
    text = KNOBS_MD.read_text()
    fields = {f.name for f in dataclasses.fields(DatConfig)} - {"stages"}
    assert {n for n in fields if f"`{n}`" not in text} == set()
    assert fields <= _documented_args(DatConfig) | {"stages"}


def test_the_letter_table_lists_every_attention_letter():
    letters = [re.findall(r"`([A-Z])`", row[0])[0] for row in _table("| letter")]
    assert sorted(letters) == sorted(a.value for a in Attn)
