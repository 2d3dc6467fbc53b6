"""dat-lab: the ablation and research framework for the Deformable Attention Transformer.

Importing ``dat_lab`` registers every DAT preset in timm's model registry. To keep the command
line's start-up fast (torch and timm take seconds to import), the registration waits for timm:
it happens now if timm is already imported, otherwise right after timm's own import finishes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

__version__ = "0.1.0"


class _RegisterAfter(importlib.abc.Loader):
    """Runs timm's loader, then imports ``dat_lab.models`` (which registers the presets)."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)
        importlib.import_module("dat_lab.models")

    def __getattr__(self, name: str):  # resource readers etc. of the wrapped loader
        return getattr(self._loader, name)


class _TimmImportHook(importlib.abc.MetaPathFinder):
    """Meta-path finder that wraps timm's loader once, then removes itself."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("timm")
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisterAfter(spec.loader)
        return spec


def _register_presets_with_timm() -> None:
    if "timm" in sys.modules:
        importlib.import_module("dat_lab.models")
    elif not any(isinstance(f, _TimmImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _TimmImportHook())


_register_presets_with_timm()
