"""``data.classes``: train and validate on a subset of a data set's classes.

A class list is a file (one class name per line, as in timm's ``.txt`` class maps; blank
lines and ``#`` comments are skipped) or a YAML list of names. Labels become ``0..N-1`` in
the list's order. The list is read when the config is built, so that the run id covers the
names themselves, not the file's path (the same list in another file, or inline, is the same
run; an edited file is another run).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dat_lab.schema import ConfigError

KEY = "classes"


def read_class_file(path: Path, key: str = KEY) -> tuple[str, ...]:
    """The class names of a list file, checked like an inline list."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"class list file {str(file)!r} not found", key)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read class list {str(file)!r}: {err}", key) from None
    names = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return check_class_list([n for n in names if n], key, where=f" in {str(file)!r}")


def check_class_list(names: Sequence[str], key: str = KEY, where: str = "") -> tuple[str, ...]:
    """``names`` as a tuple; ConfigError unless non-empty, all non-blank and unique."""
    if not names:
        raise ConfigError(f"the class list{where} is empty", key)
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name.strip():
            raise ConfigError(f"class {i}{where} is blank", key)
        if name in seen:
            raise ConfigError(f"class {name!r}{where} is listed twice ({seen[name]}, {i})", key)
        seen[name] = i
    return tuple(names)


def subset_indices(available: Sequence[str], wanted: Sequence[str], where: str) -> list[int]:
    """For each wanted class, its index among ``available``; ConfigError naming the first one
    that ``where`` (the data's path) does not hold."""
    index = {name: i for i, name in enumerate(available)}
    missing = [name for name in wanted if name not in index]
    if missing:
        shown = ", ".join(list(available)[:5]) + (", ..." if len(available) > 5 else "")
        raise ConfigError(
            f"class {missing[0]!r} ({len(missing)} of {len(wanted)} listed) is not in "
            f"{where}, whose classes are {shown}",
            f"data.{KEY}",
        )
    return [index[name] for name in wanted]
