"""Helpers of the sweep tests (pytest puts this folder on sys.path: ``import sweep_helpers``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml
from tiny_runs import CPU_TRAIN

POSTGRES_URL_ENV = "DAT_LAB_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "DAT_LAB_REQUIRE_POSTGRES"
TEST_PASSWORD = "sw33p-s3cret"  # of the throwaway server (CI brings its own URL)

# A run of a few seconds at most: dat_nano on 48 shapes images, one epoch, one thread.
TINY_DATA = {"name": "shapes", "img_size": 32, "batch_size": 16, "train_size": 48, "val_size": 32}
TINY_TRAIN = {
    **CPU_TRAIN,
    "epochs": 1,
    "lr": 2.0e-3,
    "lr_scale_batch": None,
    "min_lr": 1.0e-5,
    "warmup_lr": 1.0e-5,
}
OFFSET_KEYS = ["model.stages.2.offset_range", "model.stages.3.offset_range"]


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def offset_grid(values: list[float]) -> dict[str, Any]:
    """A categorical parameter ``s`` setting the offset range of both deformable stages."""
    return {"s": {"type": "categorical", "choices": values, "set": OFFSET_KEYS}}


def cli(*args: str) -> list[str]:
    """The command line of a `dat-lab sweep` worker process."""
    return [sys.executable, "-m", "dat_lab.cli", "sweep", *args]


def url_password(url: str) -> str:
    """The password in a database URL (the tests check that it never appears in output)."""
    from sqlalchemy.engine import make_url

    password = make_url(url).password
    assert password, "the test database URL must hold a password (its masking is tested)"
    return str(password)


def worker_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("DAT_LAB_STORAGE", None)
    env.update(extra)
    return env
