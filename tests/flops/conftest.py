"""FLOP tests count into a private cache directory (never the user's ~/.cache)."""

from __future__ import annotations

import pytest

from dat_lab.flops.count import CACHE_ENV


@pytest.fixture(scope="session", autouse=True)
def private_flop_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("dat_lab_cache")
    mp.setenv(CACHE_ENV, str(path))
    yield path
    mp.undo()
