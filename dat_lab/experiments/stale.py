"""Runs made by other code: which code trained a stored run, compared with the code installed.

A run's id is its config, so an edited deformable block would otherwise get the old numbers
back as "finished before". Every run records the fingerprint of the model, training and data
code (:mod:`dat_lab.fingerprint`) when it starts and each time it resumes
(``provenance.json``: ``code`` and ``resumed[].code``). A run is *made by other code* when
one of those differs from the installed code's, or when none was recorded (a run from before
fingerprints: its code is unknown). ``dat-lab run`` says so when it skips or resumes such a
run, and ``--rerun-stale`` trains it again from scratch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dat_lab.fingerprint import result_code_fingerprint

UNKNOWN = "unknown"


def run_fingerprints(provenance: Mapping[str, Any] | None) -> list[str]:
    """The code fingerprints of a run's start and of each resume, in order (``unknown`` for
    an attempt that recorded none)."""
    if not provenance:
        return [UNKNOWN]
    attempts = [provenance, *(provenance.get("resumed") or [])]
    return [_fingerprint(a) for a in attempts]


def _fingerprint(attempt: Mapping[str, Any]) -> str:
    code = attempt.get("code")
    value = code.get("fingerprint") if isinstance(code, Mapping) else None
    return str(value) if value else UNKNOWN


def _commit(provenance: Mapping[str, Any]) -> str:
    git = provenance.get("dat_lab") or {}
    commit = str(git.get("commit") or UNKNOWN)
    text = commit[:10] if commit != UNKNOWN else "commit unknown"
    return text + (" + uncommitted changes" if git.get("dirty") else "")


def other_code(provenance: Mapping[str, Any] | None, installed: str | None = None) -> str | None:
    """None when the installed code made every attempt of the run; else what made it, e.g.
    ``made by other code (code 1a2b3c4d5e6f, commit 9f8e7d6c5b; installed: 0a1b2c3d4e5f)``."""
    installed = installed or result_code_fingerprint()
    found = list(dict.fromkeys(run_fingerprints(provenance)))
    if found == [installed]:
        return None
    others = ", ".join(f for f in found if f != installed)
    if others == UNKNOWN:
        what = "made by code of unknown version (no code fingerprint recorded)"
    else:
        mixed = " and the installed code" if installed in found else ""
        what = f"made by other code (code {others}{mixed}"
        what += f", started at {_commit(provenance)})" if provenance else ")"
    return f"{what}; installed code {installed}"


__all__ = ["UNKNOWN", "other_code", "run_fingerprints"]
