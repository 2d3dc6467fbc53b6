"""Run timm's own model tests (vendored ``test_models.py``) on the DAT presets only.

``dat_lab`` is imported before timm's test module is collected, so its presets are in timm's
registry when the test parameters are listed. While that module is collected, timm's
``list_models``/``list_pretrained`` answer with ``dat_*`` names only (timm's own filters still
apply on top), which keeps collection to seconds instead of listing ~18,000 tests; any other
collected test of this folder that does not select a ``dat_*`` model is deselected. The rest
are marked slow.

By default the presets run are ``dat_tiny`` (the paper's DAT-T) and the CPU presets
``dat_nano``/``dat_micro``/``dat_pp_nano`` (~2 min on two cores); ``DAT_LAB_TIMM_ALL_PRESETS=1``
adds ``dat_small``, ``dat_base``, ``dat_base_384`` and the big DAT++ presets (the same code with
more blocks, ~10 min and more).
``DAT_LAB_TIMM_ALL_MODELS=1`` collects every timm model (to compare counts with Swin).

Left out: ``test_prune_intermediate_layers_contract`` on ``dat_nano``, ``dat_micro`` and
``dat_pp_nano``. It tells NHWC from NCHW features by comparing shapes, which cannot work when
channels, height and width are all 16 (their first stage);
``tests/models/test_timm_native.py`` checks the same property with the layout given.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import timm

import dat_lab  # noqa: F401  (registers the presets in timm)
import dat_lab.models  # noqa: F401  (the same, now, even if timm was not imported yet)

HERE = Path(__file__).resolve().parent
# The markers timm's pyproject.toml declares for this file.
TIMM_MARKERS = (
    "base", "cfg", "cfg_nonstd", "torchscript", "features", "fxforward", "fxbackward",
    "forward", "backward",
)  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    for name in TIMM_MARKERS:
        config.addinivalue_line("markers", f"{name}: timm test-suite marker")


def _dat_only(fn: Callable[..., list[str]]) -> Callable[..., list[str]]:
    def listed(*args, **kwargs) -> list[str]:
        return [n for n in fn(*args, **kwargs) if n.startswith("dat_")]

    return listed


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """Restrict timm's model lists while timm's test module is imported (parameters built)."""
    path = getattr(collector, "path", None)
    if path is None or path.parent != HERE or os.environ.get("DAT_LAB_TIMM_ALL_MODELS"):
        yield
        return
    saved = timm.list_models, timm.list_pretrained
    timm.list_models, timm.list_pretrained = _dat_only(saved[0]), _dat_only(saved[1])
    try:
        yield
    finally:
        timm.list_models, timm.list_pretrained = saved


DEFAULT_PRESETS = ("dat_tiny", "dat_nano", "dat_micro", "dat_pp_nano")
AMBIGUOUS_LAYOUT = {
    "test_prune_intermediate_layers_contract": ("dat_nano", "dat_micro", "dat_pp_nano")
}


def selects_dat(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    name = callspec.params.get("model_name", "") if callspec else ""
    if not (isinstance(name, str) and name.startswith("dat_")):
        return False
    if name in AMBIGUOUS_LAYOUT.get(item.originalname, ()):
        return False
    return (
        bool(os.environ.get("DAT_LAB_TIMM_ALL_PRESETS")) or name.split(".")[0] in DEFAULT_PRESETS
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("DAT_LAB_TIMM_ALL_MODELS"):
        return
    ours = [i for i in items if HERE in i.path.parents]
    dropped = [i for i in ours if not selects_dat(i)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        drop = set(map(id, dropped))
        items[:] = [i for i in items if id(i) not in drop]
        ours = [i for i in ours if id(i) not in drop]
    for item in ours:
        item.add_marker(pytest.mark.slow)
