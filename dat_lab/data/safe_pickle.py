"""Reading numpy-array pickles (CIFAR's python version) without running any code they name.

A pickle is a program: ``GLOBAL``/``STACK_GLOBAL`` opcodes look up any importable callable
and ``REDUCE`` calls it, so an unrestricted unpickler on a crafted file runs ``os.system`` or
``builtins.eval`` (CWE-502). :class:`ArrayUnpickler` resolves only the globals that an
ndarray's pickle needs (its reconstruct function, ``ndarray``, ``dtype``) and refuses any
other before it is called, the pattern of the Python docs' "Restricting Globals" section
(https://docs.python.org/3/library/pickle.html#restricting-globals). Dicts, lists, strings,
bytes and numbers are built by opcodes that never ask for a global.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

try:  # numpy >= 2 keeps it in numpy._core; pickles written by numpy 1.x name numpy.core
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

from dat_lab.schema import ConfigError

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asked for a global outside :data:`ALLOWED_GLOBALS`."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name
        super().__init__(f"{module}.{name}")


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that knows only numpy's array-reconstruction globals."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise RefusedGlobal(module, name)
        return allowed


def load_array_pickle(file: Path, key: str = "data.path") -> Any:
    """The object pickled in ``file`` (Python 2 pickles decode as latin-1, as CIFAR's are).

    Raises ConfigError naming ``key`` and the file when the pickle asks for anything but
    numpy arrays, or is damaged; nothing it names is ever called.
    """
    allowed = ", ".join(f"{m}.{n}" for m, n in ALLOWED_GLOBALS)
    try:
        with open(file, "rb") as stream:
            return ArrayUnpickler(stream, encoding="latin1").load()
    except RefusedGlobal as err:
        raise ConfigError(
            f"{str(file)!r} is refused: its pickle asks for {err}, and only numpy arrays "
            f"({allowed}) are allowed; it was not run",
            key,
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise ConfigError(f"{str(file)!r} is not a readable pickle ({err})", key) from None
    except OSError as err:
        raise ConfigError(f"cannot read {str(file)!r}: {err.strerror or err}", key) from None
