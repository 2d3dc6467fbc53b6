"""``count_flops(config, size) -> FlopReport``: fvcore totals, per stage and per module.

The model is built on CPU, in eval mode, and traced once with a batch of 1 under
``torch.no_grad`` by the strict analysis of :mod:`dat_lab.flops.handles`. Weights do not change
a FLOP count, so they are not initialised (the model is built on the meta device, then given
zeroed CPU storage): that keeps ``dat-lab flops dat_base`` fast.

Reports are cached in memory and on disk, keyed by the config hash, the input size and a
fingerprint of the counting code and the model code (so an edit to either invalidates old
entries). The disk cache lives under ``$DAT_LAB_CACHE/flops`` (default ``~/.cache/dat_lab``).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fvcore
import torch
from torch import nn

from dat_lab.fingerprint import source_fingerprint
from dat_lab.flops.compare import ModuleRow, compare_counts, expected_rows
from dat_lab.flops.handles import flop_analysis
from dat_lab.models.config import DatConfig
from dat_lab.models.dat import DAT, build_model
from dat_lab.models.enums import PosEnc
from dat_lab.schema import ConfigError

CACHE_ENV = "DAT_LAB_CACHE"
_MEMORY: dict[tuple[str, tuple[int, int]], FlopReport] = {}


@dataclass(frozen=True)
class StageRow:
    """Totals of one part of the model: ``stem``, ``stages.<i>`` or ``head``."""

    name: str
    fvcore: int
    formula: int
    residue: int
    params: int

    @property
    def difference(self) -> int:
        return self.fvcore - self.formula - self.residue


@dataclass(frozen=True)
class FlopReport:
    """FLOPs (multiply-adds, fvcore's convention) and parameters of one model at one size.

    Attributes:
        config_hash: :attr:`DatConfig.hash` of the counted config.
        size: input (H, W) in pixels.
        total: fvcore's total.
        params: parameter count.
        stages: stem, every stage (downsampling + blocks) and head.
        rows: every module row (formula, residue items, difference).
        unsupported: ops fvcore met that are neither counted nor declared zero-cost (empty).
        skipped: modules holding parameters that the trace never entered (fvcore's
            ``uncalled_modules()`` less parameter-free ones such as an eval-mode DropPath);
            their weights did no counted work (empty).
    """

    config_hash: str
    size: tuple[int, int]
    total: int
    params: int
    stages: tuple[StageRow, ...]
    rows: tuple[ModuleRow, ...]
    unsupported: dict[str, int]
    skipped: tuple[str, ...] = ()

    @property
    def formula_total(self) -> int:
        return sum(r.formula for r in self.rows)

    @property
    def residue_total(self) -> int:
        return sum(r.residue_total for r in self.rows)

    @property
    def difference(self) -> int:
        """``total - formula - residue`` over the whole model."""
        return self.total - self.formula_total - self.residue_total

    @property
    def ok(self) -> bool:
        """Every FLOP accounted for: no difference anywhere, no unsupported op, nothing skipped."""
        parts: list[ModuleRow | StageRow] = [*self.rows, *self.stages]
        clean = not self.unsupported and not self.skipped
        return clean and self.difference == 0 and all(p.difference == 0 for p in parts)

    def residue_by_item(self) -> dict[str, int]:
        """Residue summed over the model, per item name."""
        out: dict[str, int] = {}
        for row in self.rows:
            for name, value in row.residue.items():
                out[name] = out.get(name, 0) + value
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["size"] = list(self.size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlopReport:
        return cls(
            config_hash=data["config_hash"],
            size=tuple(data["size"]),
            total=data["total"],
            params=data["params"],
            stages=tuple(StageRow(**s) for s in data["stages"]),
            rows=tuple(ModuleRow(**r) for r in data["rows"]),
            unsupported=dict(data["unsupported"]),
            skipped=tuple(data["skipped"]),
        )


def resolve_size(config: DatConfig, size: tuple[int, int] | None) -> tuple[int, int]:
    """The input size to count at (``size``, else the config's ``img_size``), checked.

    Raises :class:`ConfigError` (key ``size``) before any model is built when the model cannot
    run at that size, rather than letting the trace fail deep inside a conv.
    """
    size = size or config.img_size
    if size is None:
        raise ConfigError("the config has no img_size; pass a size (H, W)", "size")
    if len(size) != 2 or any(int(s) < 1 for s in size):
        raise ConfigError(f"must be two positive integers (H, W), got {size!r}", "size")
    size = int(size[0]), int(size[1])
    _check_runs_at(config, size)
    return size


def _check_runs_at(config: DatConfig, size: tuple[int, int]) -> None:
    """The checks ``DatConfig`` makes for its ``img_size``, made for ``size``; plus fixed PE."""
    text = f"{size[0]}x{size[1]}"
    try:
        config.replace(img_size=size)  # empty feature maps, r or sr larger than a map
    except ConfigError as err:
        raise ConfigError(f"the model cannot run at {text}: {err}", "size") from None
    for i, stage in enumerate(config.stages):
        if "D" in stage.attn and stage.deformable(i).pos_enc == PosEnc.FIXED:
            assert config.img_size is not None  # DatConfig refuses fixed PE without a size
            built = config.feature_size(i)
            if config.feature_size(i, size) != built:
                raise ConfigError(
                    f"stage {i} uses pos_enc fixed, built for img_size "
                    f"{config.img_size[0]}x{config.img_size[1]} ({built[0]}x{built[1]} map); "
                    f"it cannot run at {text}; count at the built size or use pos_enc "
                    "relative|dwconv",
                    "size",
                )


def build_for_counting(config: DatConfig) -> DAT:
    """The model on CPU in eval mode, with zeroed rather than initialised weights."""
    with torch.device("meta"):
        model = build_model(config)
    if any(True for _ in model.buffers()):  # buffers may hold computed constants: build for real
        model = build_model(config)
    else:
        model = model.to_empty(device="cpu")
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
    return model.eval()


def count_model(model: DAT, size: tuple[int, int] | None = None) -> FlopReport:
    """Trace ``model`` (as it is: fused or explicit attention) and compare with the formulas."""
    config = model.cfg
    size = resolve_size(config, size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = flop_analysis(model, (torch.zeros(1, config.in_chans, *size),))
            by_module = {k: int(v) for k, v in analysis.by_module().items()}
            unsupported = dict(analysis.unsupported_ops())
            skipped = _skipped_modules(model, analysis.uncalled_modules())
    finally:
        model.train(was_training)
    rows = compare_counts(expected_rows(config, size), by_module)
    return FlopReport(
        config_hash=config.hash,
        size=size,
        total=by_module[""],
        params=sum(p.numel() for p in model.parameters()),
        stages=_stage_rows(model, rows, by_module),
        rows=tuple(rows),
        unsupported=unsupported,
        skipped=skipped,
    )


def _skipped_modules(model: nn.Module, uncalled: set[str]) -> tuple[str, ...]:
    """Uncalled modules that own parameters (an Identity or eval-mode DropPath is harmless)."""
    modules = dict(model.named_modules())
    return tuple(sorted(n for n in uncalled if any(True for _ in modules[n].parameters())))


def _stage_rows(
    model: DAT, rows: list[ModuleRow], by_module: dict[str, int]
) -> tuple[StageRow, ...]:
    def params(*prefixes: str) -> int:
        return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefixes))

    def totals(name: str, fvcore: int, members: list[ModuleRow], n_params: int) -> StageRow:
        formula = sum(r.formula for r in members)
        return StageRow(name, fvcore, formula, sum(r.residue_total for r in members), n_params)

    head = next(r for r in rows if r.name == "head")
    stem = [r for r in rows if r.name == "stem"]
    out = [totals("stem", by_module["stem"], stem, params("stem."))]
    for i in range(len(model.cfg.stages)):
        name = f"stages.{i}"
        members = [r for r in rows if r.stage == i]
        out.append(totals(name, by_module[name], members, params(f"{name}.")))
    out.append(totals("head", head.fvcore, [head], params("norm.", "head.")))
    return tuple(out)


# -- cache ------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where reports are cached: ``$DAT_LAB_CACHE/flops`` or ``~/.cache/dat_lab/flops``."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "dat_lab"
    return Path(root).expanduser() / "flops"


@cache
def code_fingerprint() -> str:
    """Hash of the counting and model source, and the torch/fvcore versions."""
    return source_fingerprint(
        ("flops", "models"), salt=f"{torch.__version__} {fvcore.__version__}"
    )


def _cache_path(config: DatConfig, size: tuple[int, int]) -> Path:
    return cache_dir() / f"{config.hash}-{size[0]}x{size[1]}-{code_fingerprint()}.json"


def _read_cached(path: Path) -> FlopReport | None:
    try:
        return FlopReport.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or unreadable: count again


def _write_cached(path: Path, report: FlopReport) -> None:
    """Atomic write (temporary file + rename); a cache that cannot be written is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(report.to_dict(), f)
        os.replace(tmp, path)
    except OSError:
        pass


def count_flops(
    config: DatConfig, size: tuple[int, int] | None = None, *, use_cache: bool = True
) -> FlopReport:
    """FLOPs and parameters of ``config`` at input ``size`` (default: its ``img_size``).

    Args:
        config: the model config.
        size: input (H, W) in pixels; ``None`` = ``config.img_size``.
        use_cache: read and write the memory and disk caches.

    Raises:
        ConfigError: no size, or a size the model cannot run at (key ``size``), before any
            compute.
    """
    size = resolve_size(config, size)
    key = (config.hash, size)
    if use_cache and key in _MEMORY:
        return _MEMORY[key]
    path = _cache_path(config, size)
    report = _read_cached(path) if use_cache else None
    if report is None:
        report = count_model(build_for_counting(config), size)
        if use_cache:
            _write_cached(path, report)
    if use_cache:
        _MEMORY[key] = report
    return report


def clear_memory_cache() -> None:
    """Forget in-memory reports (the disk cache is kept)."""
    _MEMORY.clear()
