"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def cache(tmp_path_factory, monkeypatch) -> Path:
    """Shared caches (generated shapes, FLOP counts) for in-process and subprocess runs."""
    path = tmp_path_factory.getbasetemp() / "experiment_cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(path))
    monkeypatch.setenv("DAT_LAB_CACHE", str(path / "dat_lab"))
    return path
