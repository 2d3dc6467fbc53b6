"""The one config mechanism: strict typed loading, messages that name the key, overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dat_lab.schema import ConfigError, apply_overrides, config_hash, from_mapping, load_yaml


@dataclass(frozen=True)
class Inner:
    width: int = 4


@dataclass(frozen=True)
class Outer:
    lr: float = 1.0e-3
    name: str = "x"
    inner: Inner = field(default_factory=Inner)


def test_yaml_11_exponent_strings_are_read_as_numbers(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\n")  # PyYAML gives the string '1e-3'
    assert from_mapping(Outer, load_yaml(path)).lr == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("data", "key", "message"),
    [
        ({"lr": "fast"}, "lr", "expected a number"),
        ({"lr": True}, "lr", "expected a number"),
        ({"nmae": "y"}, "nmae", "did you mean 'name'"),
        ({"inner": {"width": 2.5}}, "inner.width", "expected an integer"),
    ],
)
def test_bad_values_name_their_key(data, key, message):
    with pytest.raises(ConfigError) as err:
        from_mapping(Outer, data)
    assert err.value.key == key and message in str(err.value)


def test_files_that_are_not_mappings_or_not_yaml_are_refused_with_the_file_name(tmp_path: Path):
    for text, message in (("- 1\n- 2\n", "mapping"), ("a: [1,\n", "not valid YAML")):
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=message) as err:
            load_yaml(path)
        assert str(path) in str(err.value)
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_dotted_overrides_change_the_hash_and_unknown_keys_are_refused():
    base = {"lr": 1.0e-3, "inner": {"width": 4}}
    changed = apply_overrides(base, {"inner.width": 8})
    assert changed["inner"]["width"] == 8 and base["inner"]["width"] == 4
    assert config_hash(from_mapping(Outer, changed)) != config_hash(from_mapping(Outer, base))
    with pytest.raises(ConfigError):
        from_mapping(Outer, apply_overrides(base, {"inner.depth": 2}))
