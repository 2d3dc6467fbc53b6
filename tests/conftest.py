"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture
def cache(tmp_path_factory, monkeypatch) -> Path:
    """Shared caches (generated shapes, FLOP counts) for in-process and subprocess runs."""
    path = tmp_path_factory.getbasetemp() / "experiment_cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(path))
    monkeypatch.setenv("DAT_LAB_CACHE", str(path / "dat_lab"))
    return path


@pytest.fixture
def torch_threads() -> Iterator[None]:
    """Restores torch's thread count after the test: an in-process run sets its config's."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
