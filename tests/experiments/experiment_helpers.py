"""Tiny experiment files and a `dat-lab run` launcher for the runner and CLI tests.

Every run here is real Lightning training of ``dat_nano`` on a few dozen generated ``shapes``
images, one CPU thread, deterministic, so a whole run takes about a second.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from tiny_runs import CPU_TRAIN

from dat_lab.experiments.store import RunStore

TRAIN = {
    **CPU_TRAIN,
    "epochs": 2,
    "lr": 1.0e-3,
    "lr_scale_batch": None,
    "min_lr": 0.0,
    "warmup_lr": 0.0,
}
DATA = {"name": "shapes", "img_size": 32, "batch_size": 16, "train_size": 32, "val_size": 16}
NAN_LR = 1.0e30  # AdamW moves every weight by ~lr on the first step: the next loss is not finite


def write_experiment(
    path: Path,
    variants: dict[str, dict[str, Any]] | None = None,
    seeds: tuple[int, ...] = (0,),
    train: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    name: str = "tiny",
    **top: Any,
) -> Path:
    """Write a tiny experiment file (``variants`` default: one named ``a``) and return it."""
    doc = {
        "name": name,
        "seeds": list(seeds),
        "base": {
            "model": "dat_nano",
            "data": {**DATA, **(data or {})},
            "train": {**TRAIN, **(train or {})},
        },
        "variants": variants or {"a": {}},
        **top,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def cli_env(cache: Path) -> dict[str, str]:
    """The environment of a `dat-lab` subprocess: one thread, caches under ``cache``."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "XDG_CACHE_HOME": str(cache),  # generated shapes
        "DAT_LAB_CACHE": str(cache / "dat_lab"),  # FLOP counts
        "PYTHONUNBUFFERED": "1",
    }


def dat_lab_cmd(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "dat_lab.cli", *map(str, args)]


def start(cwd: Path, cache: Path, *args: str | Path, log: Path | None = None) -> subprocess.Popen:
    """Start `dat-lab ARGS` in ``cwd``; output goes to ``log`` (or is captured)."""
    out: Any = open(log, "w") if log else subprocess.PIPE  # noqa: SIM115 - the child holds it
    return subprocess.Popen(
        dat_lab_cmd(*args),
        cwd=cwd,
        env=cli_env(cache),
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_sigint,
    )


def default_sigint() -> None:
    """SIGINT's default disposition, for a child that a test interrupts: a suite started in
    the background (``cmd &``, nohup) inherits SIGINT ignored, exec keeps it ignored, and
    then Python installs no KeyboardInterrupt handler, so the test's Ctrl-C would be lost."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(
    cwd: Path, cache: Path, *args: str | Path, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run `dat-lab ARGS` to completion, capturing its output."""
    return subprocess.run(
        dat_lab_cmd(*args),
        check=False,
        cwd=cwd,
        env=cli_env(cache),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def events(store: RunStore, run_id: str, kind: str) -> list[dict[str, Any]]:
    """The run's journal entries of one kind (``running`` = one training attempt started)."""
    return [e for e in store.events(run_id) if e["event"] == kind]


def tiny_imagefolder(root: Path) -> Path:
    """An ImageNet-layout folder of two classes, one 8x8 image each per split."""
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("n01", "n02"):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8)).save(folder / "x.png")
    return root
