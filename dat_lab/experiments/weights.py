"""Weights from a checkpoint file or a stored run, fitted to a model with a report.

One loader for ``dat-lab evaluate``, ``dat-lab visualize`` and ``train.init_from``. A source
is a path to a file (an official DAT checkpoint, a Lightning checkpoint of a dat-lab run, or a
plain state dict) or a run id (a unique prefix is enough) of the store. Files load safely
(``torch.load(weights_only=True)``); keys are mapped by the timm checkpoint filter (official
layout, ``model.`` prefix, relative tables resized bicubically to the model's size).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dat_lab.data.config import DataConfig
from dat_lab.models import DatConfig, build_model, get_preset
from dat_lab.models.registry import convert_state_dict, official_sampling
from dat_lab.schema import ConfigError

OFFICIAL_PRESETS = (
    "dat_tiny",
    "dat_small",
    "dat_base",
    "dat_base_384",
    "dat_pp_tiny",
    "dat_pp_small",
    "dat_pp_base",
    "dat_pp_base_384",
)


@dataclass(frozen=True)
class Weights:
    """A checkpoint's tensors and what it says about its model and data.

    Attributes:
        state: the raw tensors (any layout :func:`fit_weights` maps).
        kind: ``official``, ``lightning`` or ``state_dict``.
        path: the file read.
        model: the architecture when known (a run's config, or inferred for official files).
        data: the data the run trained on, when known.
        run_id: the run the file belongs to, if any.
    """

    state: dict[str, torch.Tensor]
    kind: str
    path: Path
    model: DatConfig | None = None
    data: DataConfig | None = None
    run_id: str | None = None


@dataclass
class FitReport:
    """Which model tensors came from the source: loaded as they are, resized, or skipped."""

    loaded: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return {"loaded": self.loaded, "resized": self.resized, "skipped": self.skipped}


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_source(
    source: str, store_root: str | Path, which: str = "last", key: str = ""
) -> Path:
    """The checkpoint file of ``source``: an existing file, or a run's last/best checkpoint."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.suffix in (".pth", ".pt", ".ckpt", ".bin") or "/" in source:
        raise ConfigError(f"no such checkpoint file {source!r}", key)
    from dat_lab.experiments.store import RunStore

    record = find_run(RunStore(store_root), source)
    return checkpoint_path(record, which)


def find_run(store: Any, run_id: str):
    """The run ``run_id`` or the one run whose id starts with it; ConfigError otherwise."""
    record = store.get(run_id) if _plain_id(run_id) else None
    if record is not None:
        return record
    base = store.root / "runs"
    ids = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    matches = [i for i in ids if i.startswith(run_id)]
    if len(matches) == 1:
        return store.require(matches[0])
    close = difflib.get_close_matches(run_id, ids, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    what = f"{len(matches)} runs start with {run_id!r}" if matches else f"no run {run_id!r}"
    raise ConfigError(f"{what} in {store.root}{hint}", "RUN_ID")


def _plain_id(run_id: str) -> bool:
    return bool(run_id) and all(c.isalnum() or c in "_.-" for c in run_id) and ".." not in run_id


def checkpoint_path(record: Any, which: str = "last") -> Path:
    """``last.ckpt`` (the final model, which the final metrics describe) or the best one."""
    ckpts = record.checkpoints_dir
    candidates = sorted(ckpts.glob("best-*.ckpt")) if which == "best" else [ckpts / "last.ckpt"]
    found = [p for p in candidates if p.is_file()]
    if not found:
        raise ConfigError(
            f"run {record.run_id} ({record.state.value}) has no {which} checkpoint in {ckpts}",
            "RUN_ID",
        )
    return found[-1]


def read_weights(path: Path, key: str = "") -> Weights:
    """Read a checkpoint file; ConfigError if it is not one."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        raise ConfigError(f"{str(path)!r} is not a readable checkpoint ({err})", key) from None
    if isinstance(blob, dict) and isinstance(blob.get("state_dict"), dict):
        model, data, run_id = _run_config_near(path)
        return Weights(blob["state_dict"], "lightning", path, model, data, run_id)
    state = blob.get("model", blob) if isinstance(blob, dict) else blob
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConfigError(f"{str(path)!r} holds no state dict of tensors", key)
    if any(k.startswith("patch_proj.") for k in state):
        return Weights(state, "official", path, infer_official_model(state, path, key))
    return Weights(state, "state_dict", path)


def _run_config_near(path: Path) -> tuple[DatConfig | None, DataConfig | None, str | None]:
    """A checkpoint in ``runs/<id>/checkpoints/``: its run's model and data configs."""
    config = path.parent.parent / "config.json"
    if path.parent.name != "checkpoints" or not config.is_file():
        return None, None, None
    from dat_lab.experiments.spec import RunConfig

    cfg = RunConfig.from_dict(json.loads(config.read_text()))
    return cfg.model, cfg.data, path.parent.parent.name


def infer_official_model(state: dict[str, torch.Tensor], path: Path, key: str = "") -> DatConfig:
    """The official preset whose shapes the checkpoint has (its official sampling convention)."""
    for name in OFFICIAL_PRESETS:
        cfg = get_preset(name).replace(sampling=official_sampling(name))
        with torch.device("meta"):
            model = build_model(cfg)
        try:
            fit_weights(model, state, resize=False, dry_run=True)
        except ConfigError:
            continue
        return cfg
    raise ConfigError(
        f"{str(path)!r} is in the official layout but fits none of {', '.join(OFFICIAL_PRESETS)}",
        key,
    )


def fit_weights(
    model: nn.Module,
    state: dict[str, Any],
    exclude: tuple[str, ...] = (),
    resize: bool = True,
    dry_run: bool = False,
    source: str = "",
    key: str = "",
) -> FitReport:
    """Load ``state`` into ``model``: every tensor must fit, except those under ``exclude``.

    ``exclude`` holds module prefixes (``head``): those tensors keep the model's own values.
    Relative-position tables of another size are resized (``resize``); any other missing,
    unexpected or misshaped tensor raises ConfigError naming it (before anything is loaded).
    """
    converted, resized = convert_state_dict(state, model)
    ours = model.state_dict()
    where = f"{source}: " if source else ""

    def excluded(name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in exclude)

    for name, value in converted.items():
        if excluded(name):
            continue
        if name not in ours:
            raise ConfigError(f"{where}checkpoint tensor {name!r} has no place in the model", key)
        if value.shape != ours[name].shape or (name in resized and not resize):
            hint = " (start a new head with train.init_exclude: [head])" if "head" in name else ""
            raise ConfigError(
                f"{where}{name!r} has shape {tuple(value.shape)} in the checkpoint but "
                f"{tuple(ours[name].shape)} in the model{hint}",
                key,
            )
    missing = sorted(n for n in ours if n not in converted and not excluded(n))
    if missing:
        raise ConfigError(f"{where}the checkpoint lacks {', '.join(missing[:5])}", key)
    report = FitReport(
        loaded=sorted(n for n in ours if n in converted and not excluded(n) and n not in resized),
        resized=sorted(n for n in resized if not excluded(n)),
        skipped=sorted(n for n in ours if excluded(n)),
    )
    if not dry_run:
        keep = {n: v for n, v in converted.items() if n in ours and not excluded(n)}
        model.load_state_dict(keep, strict=False)
    return report


def model_for(weights: Weights, preset: str | None, overrides: dict[str, Any]) -> DatConfig:
    """The architecture to build: the checkpoint's own, or ``preset`` plus overrides.

    A plain state dict names no architecture; its head then sets ``num_classes``.
    """
    from dat_lab.models import resolve_model_config

    if preset is None and not overrides and weights.model is not None:
        return weights.model
    if preset is None and weights.model is None:
        raise ConfigError(
            f"{str(weights.path)!r} ({weights.kind}) does not name its architecture; "
            "add model=PRESET (e.g. model=dat_tiny)",
            "model",
        )
    base = preset or weights.model.to_dict()  # type: ignore[union-attr]
    overrides = dict(overrides)
    head = weights.state.get("head.weight", weights.state.get("model.head.weight"))
    if weights.model is None and head is not None and "num_classes" not in overrides:
        overrides["num_classes"] = int(head.shape[0])
    return resolve_model_config(base, overrides, key="model")


def pin_source(config: Any, store: Path | None, experiment: Path) -> Any:
    """``config`` with ``train.init_sha256`` set to the hash of ``train.init_from``'s file.

    The file must fit the run's model (a dry run on the meta device, ``init_exclude`` applied).
    Run ids are looked up in the experiment's store (its ``store:``, default ./runs).
    """
    import dataclasses

    from dat_lab.experiments.store import DEFAULT_ROOT

    train = config.train
    if train.init_from is None:
        return config
    try:
        path = resolve_source(train.init_from, store or DEFAULT_ROOT, key="train.init_from")
    except ConfigError as err:
        raise ConfigError(err.message, "train.init_from", experiment) from None
    with torch.device("meta"):  # shapes only: a mismatch is refused before any training
        model = build_model(config.model)
    try:
        fit_weights(model, read_weights(path).state, train.init_exclude, dry_run=True)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err.message}", "train.init_from", experiment) from None
    sha = file_sha256(path)
    if train.init_sha256 not in (None, sha):
        raise ConfigError(
            f"{str(path)!r} has SHA-256 {sha[:12]}..., not {train.init_sha256[:12]}...",
            "train.init_sha256",
            experiment,
        )
    return dataclasses.replace(config, train=dataclasses.replace(train, init_sha256=sha))


def init_from_source(model: nn.Module, spec: Any, store: Any, resume: Path | None) -> None:
    """Load ``train.init_from`` into a new run's model and record what was loaded.

    A resumed run restores its own checkpoint instead. The file must still have the hash the
    run id was computed with; the loaded, resized and skipped tensors go to provenance.json.
    """
    train = spec.config.train
    if train.init_from is None or resume is not None:
        return
    path = resolve_source(train.init_from, store.root, key="train.init_from")
    sha = file_sha256(path)
    if sha != train.init_sha256:
        raise ConfigError(
            f"{str(path)!r} changed since the run was planned (SHA-256 {sha[:12]}..., "
            f"planned {str(train.init_sha256)[:12]}...)",
            "train.init_from",
        )
    weights = read_weights(path, key="train.init_from")
    report = fit_weights(
        model, weights.state, train.init_exclude, source=str(path), key="train.init_from"
    )
    prov = store.read_json(spec.run_id, "provenance") or {}
    prov["init_from"] = {
        "source": train.init_from,
        "path": str(path.resolve()),
        "sha256": sha,
        "kind": weights.kind,
        **report.to_dict(),
    }
    store.write_json(spec.run_id, "provenance", prov)
