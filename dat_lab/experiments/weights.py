"""Weights from a checkpoint file or a stored run, for ``dat-lab evaluate``, ``dat-lab
visualize`` and ``train.init_from``.

A source is a path to a file (an official DAT checkpoint, a Lightning checkpoint of a dat-lab
run, or a plain state dict) or a run id (a unique prefix is enough) of the store. Reading,
converting and fitting the layouts is :mod:`dat_lab.models.checkpoints`; this module adds what
the runs know: a run's checkpoint and configs, and the source's hash pinned into a run's config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dat_lab.data.config import DataConfig
from dat_lab.experiments.records import RunNotFound, RunRecord
from dat_lab.experiments.run_config import RunConfig, RunSpec
from dat_lab.experiments.store import DEFAULT_ROOT, RunStore
from dat_lab.models import DatConfig, build_model, resolve_model_config
from dat_lab.models.checkpoints import Checkpoint, Layout, fit_weights, read_checkpoint
from dat_lab.schema import ConfigError


@dataclass(frozen=True)
class Weights(Checkpoint):
    """A checkpoint, and what its run says about its model and data.

    Attributes:
        data: the data the run trained on, when known.
        run_id: the run the file belongs to, if any.
    """

    data: DataConfig | None = None
    run_id: str | None = None


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
    record = find_run(RunStore(store_root), source)
    return checkpoint_path(record, which)


def find_run(store: RunStore, run_id: str) -> RunRecord:
    """The run ``run_id`` or the one run whose id starts with it; ConfigError otherwise."""
    try:
        return store.find(run_id)
    except RunNotFound as err:
        raise ConfigError(str(err), "RUN_ID") from None


def checkpoint_path(record: RunRecord, which: str = "last") -> Path:
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
    """Read a checkpoint file (and, for a run's checkpoint, its run's configs); ConfigError if
    it is not one."""
    checkpoint = read_checkpoint(path, key)
    if checkpoint.kind is not Layout.LIGHTNING:
        return Weights(checkpoint.state, checkpoint.kind, path, checkpoint.model)
    model, data, run_id = _run_config_near(path)
    return Weights(checkpoint.state, checkpoint.kind, path, model, data, run_id)


def _run_config_near(path: Path) -> tuple[DatConfig | None, DataConfig | None, str | None]:
    """A checkpoint in ``runs/<id>/checkpoints/``: its run's model and data configs."""
    config = path.parent.parent / "config.json"
    if path.parent.name != "checkpoints" or not config.is_file():
        return None, None, None
    cfg = RunConfig.from_dict(json.loads(config.read_text()))
    return cfg.model, cfg.data, path.parent.parent.name


def model_for(weights: Weights, preset: str | None, overrides: dict[str, Any]) -> DatConfig:
    """The architecture to build: the checkpoint's own, or ``preset`` plus overrides.

    A plain state dict names no architecture; its head then sets ``num_classes``.
    """
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


def pin_source(config: RunConfig, store: Path | None, experiment: Path) -> RunConfig:
    """``config`` with ``train.init_sha256`` set to the hash of ``train.init_from``'s file.

    The file must fit the run's model (a dry run on the meta device, ``init_exclude`` applied).
    Run ids are looked up in the experiment's store (its ``store:``, default ./runs).
    """
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


def init_from_source(
    model: nn.Module, spec: RunSpec, store: RunStore, resume: Path | None
) -> None:
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
