"""The one config mechanism: strict typed loading, messages that name the key, overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dat_lab.schema import (
    ConfigError,
    apply_overrides,
    config_files,
    config_hash,
    from_mapping,
    load_config_file,
    load_yaml,
)


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


def test_a_key_written_twice_is_refused_naming_the_key_and_both_lines(tmp_path: Path):
    path = tmp_path / "twice.yaml"
    path.write_text("name: x\nseeds: [0, 1]\nbase:\n  train: {epochs: 2}\nseeds: [7]\n")
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    assert err.value.file == str(path) and err.value.key == "seeds"
    assert "first on line 2, again on line 5" in err.value.message
    nested = tmp_path / "nested.yaml"
    nested.write_text("base:\n  train: {epochs: 2, lr: 1.0, epochs: 3}\n")
    with pytest.raises(ConfigError, match="epochs: duplicate key: first on line 2, again on"):
        load_yaml(nested)


def test_yaml_merge_keys_still_override_without_counting_as_duplicates(tmp_path: Path):
    path = tmp_path / "merge.yaml"
    path.write_text("common: &c {lr: 1.0, width: 2}\nrun: {<<: *c, lr: 2.0}\n")
    assert load_yaml(path)["run"] == {"lr": 2.0, "width": 2}


def test_extends_deep_merges_the_base_and_the_file_wins(tmp_path: Path):
    (tmp_path / "_root.yaml").write_text("a: {x: 1, y: [1, 2]}\nb: root\nc: 3\n")
    (tmp_path / "_mid.yaml").write_text("extends: _root.yaml\na: {y: [9]}\nb: mid\n")
    (tmp_path / "sub").mkdir()
    top = tmp_path / "sub" / "top.yaml"
    top.write_text("extends: ../_mid.yaml\na: {z: 0}\nc: null\n")
    assert load_config_file(top) == {"a": {"x": 1, "y": [9], "z": 0}, "b": "mid", "c": None}
    assert config_files(tmp_path) == []  # bases are not files of their own
    assert config_files(tmp_path / "sub") == [top]


def test_a_missing_base_or_a_cycle_is_refused_naming_the_file(tmp_path: Path):
    missing = tmp_path / "missing.yaml"
    missing.write_text("extends: _nowhere.yaml\nname: x\n")
    with pytest.raises(ConfigError, match="_nowhere.yaml' not found") as err:
        load_config_file(missing)
    assert err.value.file == str(missing) and err.value.key == "extends"
    (tmp_path / "_a.yaml").write_text("extends: _b.yaml\n")
    (tmp_path / "_b.yaml").write_text("extends: _a.yaml\n")
    looped = tmp_path / "looped.yaml"
    looped.write_text("extends: _a.yaml\n")
    with pytest.raises(ConfigError, match="leads back to a file that extends it") as err:
        load_config_file(looped)
    assert err.value.file == str(tmp_path / "_b.yaml") and err.value.key == "extends"
    (tmp_path / "self.yaml").write_text("extends: self.yaml\n")
    with pytest.raises(ConfigError, match="leads back"):
        load_config_file(tmp_path / "self.yaml")
