"""Where a result came from: code version, library versions, machine, seed, start time.

``code.fingerprint`` hashes the source of the model, training and data code
(:mod:`dat_lab.fingerprint`); unlike the git commit it is known without git and ignores
edits elsewhere, so it is what tells runs of other code apart.

:func:`collect` returns plain data for a run's ``provenance.json``. It never fails: anything
it cannot find (no git, not a checkout, no CUDA) is recorded as ``"unknown"`` or ``None``.

It never records the environment wholesale, command lines, git remotes or user names, any
of which can carry credentials. Only the few environment variables that change numerical
results are recorded (:data:`RECORDED_ENV`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

import dat_lab
from dat_lab.fingerprint import RESULT_PACKAGES, package_dir, result_code_fingerprint

UNKNOWN = "unknown"
GIT_TIMEOUT_S = 10.0
MAX_DIRTY_FILES = 50

# Distribution names on PyPI -> the key they are recorded under.
PACKAGES = {
    "torch": "torch",
    "pytorch-lightning": "lightning",
    "timm": "timm",
    "optuna": "optuna",
    "numpy": "numpy",
    "torchmetrics": "torchmetrics",
    "fvcore": "fvcore",
}

# Environment variables that change results (thread counts, determinism, visible devices).
RECORDED_ENV = (
    "CUDA_VISIBLE_DEVICES",
    "CUBLAS_WORKSPACE_CONFIG",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "PYTHONHASHSEED",
)


def collect(seed: int) -> dict[str, Any]:
    """Provenance of a run about to start with ``seed`` (see the module docstring)."""
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "dat_lab": {"version": dat_lab.__version__, **git_state(_package_dir())},
        "code": code_state(),
        "python": {
            "version": platform.python_version(),
            "implementation": sys.implementation.name,
        },
        "packages": package_versions(),
        "torch": torch_state(),
        "machine": {
            "host": socket.gethostname(),
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
        },
        "env": {name: os.environ[name] for name in RECORDED_ENV if name in os.environ},
    }


def _package_dir() -> Path:
    return package_dir()


def code_state() -> dict[str, Any]:
    """The fingerprint of the code that decides results (:mod:`dat_lab.fingerprint`), and
    which sub-packages it covers: what ``dat-lab run`` and ``dat-lab report`` compare."""
    return {"fingerprint": result_code_fingerprint(), "covers": list(RESULT_PACKAGES)}


def _git(repo: Path, *args: str) -> str | None:
    """``git -C repo ARGS`` stdout, or None if git is missing, fails or hangs."""
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            env={**os.environ, "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"},  # for git, not recorded
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.decode(errors="replace") if done.returncode == 0 else None


def git_state(package_dir: Path) -> dict[str, Any]:
    """Commit and dirty state of the git checkout that holds ``package_dir``.

    ``commit`` is ``"unknown"`` when the package is not inside a work tree (an installed
    wheel, or a site-packages directory that a surrounding repository ignores), or the
    repository has no commit yet. ``dirty`` counts modified tracked files anywhere in the
    repository plus untracked files inside the package; ``diff_sha256`` fingerprints the
    uncommitted changes to tracked files so two dirty runs can be told apart.
    """
    unknown: dict[str, Any] = {"commit": UNKNOWN, "dirty": None}
    top = _git(package_dir, "rev-parse", "--show-toplevel")
    if top is None or _git(package_dir, "check-ignore", "-q", ".") is not None:
        return unknown  # not a checkout, or the package lies in an ignored directory
    repo = Path(top.strip())
    commit = _git(repo, "rev-parse", "HEAD")
    tracked = _git(repo, "status", "--porcelain", "--untracked-files=no")
    untracked = _git(
        repo, "status", "--porcelain", "--untracked-files=all", "--", str(package_dir)
    )
    if tracked is None or untracked is None:
        return unknown
    changed = sorted({line[3:] for line in (tracked + untracked).splitlines() if line.strip()})
    diff = _git(repo, "diff", "HEAD", "--binary") if commit else None
    return {
        "commit": commit.strip() if commit else UNKNOWN,
        "dirty": bool(changed),
        "dirty_files": changed[:MAX_DIRTY_FILES],
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None,
    }


def package_versions() -> dict[str, str]:
    """Installed versions of the libraries a result depends on (``"unknown"`` if absent)."""
    versions = {}
    for dist, key in PACKAGES.items():
        try:
            versions[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[key] = UNKNOWN
    return versions


def torch_state() -> dict[str, Any]:
    """Torch's build and devices: CUDA availability and version, GPU names, threads."""
    cuda = torch.cuda.is_available()
    return {
        "available": True,
        "version": torch.__version__,
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if cuda else None,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda
        else [],
        "mps_available": bool(getattr(torch.backends, "mps", None))
        and torch.backends.mps.is_available(),
        "num_threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
