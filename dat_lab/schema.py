"""Strict typed configs: frozen dataclasses built from YAML mappings.

Every config in dat-lab (model, data, training, experiment, study) is a frozen dataclass
that is built with :func:`from_mapping`. It rejects unknown keys (with a did-you-mean),
wrong types and, through each class's ``__post_init__``, impossible combinations; every
error is a :class:`ConfigError` that names the file, the dotted key, the value and what is
allowed. Nothing is accepted and ignored.

Overrides use dotted keys (``model.stages.2.offset_range=4``) applied to the plain mapping
before it is validated, so an override is checked exactly like a value in the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is missing, unknown, mistyped or impossible.

    ``str(err)`` reads ``FILE: KEY: message``; either part is left out when unknown.
    """

    def __init__(self, message: str, key: str = "", file: str | Path | None = None):
        self.message = message
        self.key = key
        self.file = str(file) if file is not None else None
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [p for p in (self.file, self.key) if p]
        return ": ".join([*parts, self.message])

    def located(self, file: str | Path | None = None, prefix: str = "") -> ConfigError:
        """The same error with a file and/or a key prefix added (for nested configs)."""
        key = ".".join(p for p in (prefix, self.key) if p)
        return ConfigError(self.message, key, file if file is not None else self.file)


def check(condition: bool, key: str, message: str) -> None:
    """Raise ``ConfigError(message, key)`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message, key)


# Numbers like `1e-3` or `5E4` (no dot before the exponent), which YAML 1.1 leaves as strings.
_YAML11_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key written twice in one mapping (PyYAML keeps the
    last one silently: ``seeds: [7]`` appended to a file would replace its ``seeds``)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merges are overrides
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = lines.get(key)
            except TypeError:  # an unhashable key: the base class says what is wrong
                break
            lines[key] = line
            if first is not None:
                raise ConfigError(
                    f"duplicate key: first on line {first}, again on line {line}", str(key)
                )
        return super().construct_mapping(node, deep=deep)


def _load_strict(text: str) -> Any:
    """``yaml.safe_load`` with :class:`_StrictLoader` (a SafeLoader: no Python tags)."""
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping, with errors that name the file.

    A key written twice in one mapping is refused, naming the key and both lines.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError("file not found", file=path)
    if not path.is_file():
        raise ConfigError("is not a file", file=path)
    try:
        data = _load_strict(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the file: {err}", file=path) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML: {err}", file=path) from None
    except ConfigError as err:
        raise err.located(path) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping of keys, got {type(data).__name__}", file=path
        )
    return data


EXTENDS = "extends"


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read an experiment or study file, composed with the base file it ``extends``.

    ``extends: _base.yaml`` (a path relative to the including file) names a base mapping;
    the file's own keys are deep-merged over it (mappings merge key by key, any other value
    replaces the base's). A base may extend another. A missing base or a cycle is a
    ConfigError naming the including file and ``extends``.
    """
    return _compose(Path(path), ())


def _compose(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    data = load_yaml(path)
    if EXTENDS not in data:
        return data
    name = data.pop(EXTENDS)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"must be the path of a base file (relative to this file), got {name!r}",
            EXTENDS,
            path,
        )
    base = path.parent / name
    here = (*chain, path.resolve())
    if base.resolve() in here:
        cycle = " -> ".join(str(p) for p in (*here, base.resolve()))
        raise ConfigError(f"{name!r} leads back to a file that extends it: {cycle}", EXTENDS, path)
    if not base.is_file():
        raise ConfigError(f"base file {str(base)!r} not found", EXTENDS, path)
    return deep_merge(_compose(base, here), data)


def config_files(folder: str | Path) -> list[Path]:
    """The experiment or study files of a folder, sorted; a file whose name starts with
    ``_`` is a base that others extend, not one of them."""
    return sorted(p for p in Path(folder).glob("*.yaml") if not p.name.startswith("_"))


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: nested mappings merge, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    return getattr(tp, "__name__", str(tp))


def _did_you_mean(key: str, allowed: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to the annotated type, or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        candidates = [a for a in args if a is not type(None)]
        if len(candidates) == 1:  # Optional[X]: X's own error, with its full key
            return _convert(value, candidates[0], key)
        errors = []
        for arg in candidates:
            try:
                return _convert(value, arg, key)
            except ConfigError as err:
                errors.append(err.message)
        raise ConfigError("; ".join(errors), key)
    if origin is typing.Literal:
        check(value in args, key, f"got {value!r}, allowed: {', '.join(map(repr, args))}")
        return value
    if origin in (tuple, list):
        check(isinstance(value, (list, tuple)), key, f"expected a list, got {value!r}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            check(len(value) == len(args), key, f"expected {len(args)} items, got {len(value)}")
            return tuple(
                _convert(v, a, f"{key}.{i}")
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        item = args[0] if args else Any
        return tuple(_convert(v, item, f"{key}.{i}") for i, v in enumerate(value))
    if origin is dict:
        check(isinstance(value, dict), key, f"expected a mapping, got {value!r}")
        return {k: _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_mapping(tp, value, prefix=key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ConfigError(f"got {value!r}, allowed: {_type_name(tp)[7:]}", key) from None
    if tp is bool:
        check(isinstance(value, bool), key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        check(ok, key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
            return float(value)  # PyYAML (YAML 1.1) reads `1e-3` as a string, YAML 1.2 a float
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        check(ok, key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        check(isinstance(value, str), key, f"expected a string, got {value!r}")
        return value
    if tp is Path:
        check(isinstance(value, (str, Path)), key, f"expected a path, got {value!r}")
        return Path(value)
    raise TypeError(f"unsupported config annotation {tp!r} at {key}")  # a bug, not bad input


def _init_fields(cls: type) -> dict[str, dataclasses.Field]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")  # a bug, not bad input
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def from_mapping(cls: type[T], data: Any, prefix: str = "", file: str | Path | None = None) -> T:
    """Build the frozen dataclass ``cls`` from a mapping, strictly.

    Unknown keys, missing required keys, wrong types and the class's own ``__post_init__``
    checks all raise :class:`ConfigError` located at ``file`` and the dotted key.
    """
    try:
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping, got {data!r}")
        hints = typing.get_type_hints(cls)
        fields = _init_fields(cls)
        for key in data:
            if key not in fields:
                allowed = ", ".join(sorted(fields))
                raise ConfigError(
                    f"unknown key{_did_you_mean(str(key), fields)}; allowed: {allowed}", str(key)
                )
        kwargs = {k: _convert(v, hints[k], k) for k, v in data.items()}
        missing = [
            name
            for name, f in fields.items()
            if name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ConfigError("required key is missing", missing[0])
        return cls(**kwargs)
    except ConfigError as err:
        raise err.located(file, prefix) from None


# Field metadata of a setting that does not change results (where a run's metrics are also
# sent, say): left out of :func:`identity_mapping`, hence of config hashes and run ids.
NOT_IDENTITY = "dat_lab_not_identity"
# Field metadata of a field added after runs were stored: left out of :func:`to_mapping` while
# it holds its default, so the configs (and run ids) of earlier runs do not change.
OMIT_AT_DEFAULT = "dat_lab_omit_at_default"


def added_field(default: Any) -> Any:
    """A config field added after runs were stored (see :data:`OMIT_AT_DEFAULT`)."""
    return dataclasses.field(default=default, metadata={OMIT_AT_DEFAULT: True})


def to_mapping(obj: Any, identity: bool = False) -> Any:
    """A config as plain YAML/JSON-able data (enums as values, tuples as lists).

    Fields added after runs were stored are left out while at their default; ``identity``:
    also leave out the fields marked :data:`NOT_IDENTITY` (see :func:`identity_mapping`)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_mapping(getattr(obj, f.name), identity)
            for f in dataclasses.fields(obj)
            if not (identity and f.metadata.get(NOT_IDENTITY))
            and not (f.metadata.get(OMIT_AT_DEFAULT) and getattr(obj, f.name) == f.default)
        }
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [to_mapping(v, identity) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_mapping(v, identity) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def identity_mapping(obj: Any) -> Any:
    """What identifies a config: :func:`to_mapping` without the fields whose metadata marks
    them :data:`NOT_IDENTITY`, so that changing one never changes a hash or a run id (nor,
    as in :func:`to_mapping`, those marked :data:`OMIT_AT_DEFAULT` while at their default)."""
    return to_mapping(obj, identity=True)


def config_hash(obj: Any, length: int = 12) -> str:
    """A stable short hash of a config's resolved content (not its display name); fields
    marked :data:`NOT_IDENTITY` are left out."""
    text = json.dumps(identity_mapping(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


COMMAND_LINE = "command line"  # the "file" named by errors in command-line overrides


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=3"`` -> ``("a.b", 3)``; the value is parsed as YAML (so ``true``, ``[1, 2]``)."""
    if "=" not in text:
        raise ConfigError(
            f"override {text!r} must look like key=value (e.g. train.epochs=2)", file=COMMAND_LINE
        )
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(
            f"override {text!r} has an empty key (e.g. train.epochs=2)", file=COMMAND_LINE
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``data`` with dotted ``overrides`` applied.

    A numeric path part indexes a list (``stages.2.depth``). Intermediate mappings are
    created, so a nested default can be overridden; a key the schema does not know is
    still caught later, when the result is validated.
    """
    out = json.loads(json.dumps(data))  # plain deep copy of YAML-able data
    for dotted, value in overrides.items():
        node: Any = out
        parts = dotted.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"index {part!r} out of range (0..{len(node) - 1})", where)
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if node.get(part) is None:
                        node[part] = {}
                    node = node[part]
            else:
                raise ConfigError(f"cannot descend into {node!r}", where)
    return out
