"""Fingerprints of dat-lab's own source: which code produced a cached count or a trained run.

A fingerprint is a short SHA-256 over the relative path and bytes of every ``.py`` file in
some of the package's sub-packages, as they lie on disk for the running interpreter (an
editable install, a copy on ``PYTHONPATH`` or a wheel alike; no git needed). Any byte
changed in those files, a comment included, gives another fingerprint; files outside them
(the CLI, reports) never do.

:data:`RESULT_PACKAGES` are the sub-packages whose code decides a trained run's numbers: the
model, the training loop and the data pipeline. A run records their fingerprint in its
provenance (``code.fingerprint``), so a later ``dat-lab run`` or ``dat-lab report`` can tell
runs made by other code from runs made by the code installed now.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import dat_lab

RESULT_PACKAGES = ("models", "train", "data")
LENGTH = 12


def package_dir() -> Path:
    """The directory of the ``dat_lab`` package this interpreter imported."""
    return Path(dat_lab.__file__).resolve().parent


def source_fingerprint(folders: Sequence[str], salt: str = "", root: Path | None = None) -> str:
    """Hash of the ``.py`` files under ``root/<folder>`` for each folder, plus ``salt``.

    ``root`` defaults to :func:`package_dir`; files are visited in sorted order so the result
    is the same on every machine for the same source.
    """
    root = root or package_dir()
    digest = hashlib.sha256(salt.encode())
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()[:LENGTH]


@cache
def result_code_fingerprint() -> str:
    """The fingerprint of the model, training and data code installed now (cached: the
    source of a running process does not change under it in a way that matters to it)."""
    return source_fingerprint(RESULT_PACKAGES)


__all__ = ["RESULT_PACKAGES", "package_dir", "result_code_fingerprint", "source_fingerprint"]
