"""Read a run store into pandas: one row per run, and training curves from the CSV logs.

The run directories are the truth (see :mod:`dat_lab.experiments.store`); the store's
``index.jsonl`` only journals events (no metrics, no cost), so every run's small JSON
documents are read directly: about 7 files per run, ~0.1 s per 1,000 runs on a warm disk.
Runs whose ``create`` was cut short (no ``config.json`` or ``run.json``) are not runs yet
and are counted in ``frame.attrs["incomplete"]``.

Columns of :func:`load_runs`:

- ``run_id``, ``path``; ``experiment``, ``variant``, ``seed`` (the first requester) and
  ``identities`` (every ``(experiment, variant, seed)`` sharing the run);
- ``state`` (live: a ``running`` run whose worker died reads ``interrupted``), ``reason``
  (why it failed), ``attempts``, ``created``, ``updated``;
- ``config.<dotted key>``: the resolved config flattened (``config.model.stages.2.attn``);
- ``final.<metric>``: the final metrics (``final.val/acc1``), NaN where there are none;
- ``params``, ``flops``, ``flops_formula`` from ``cost.json``;
- ``prov.<dotted key>``: provenance (``prov.dat_lab.commit``, ``prov.dat_lab.dirty``, ...);
- ``knob.<name>``: the ablation knobs in effect (:mod:`dat_lab.results.knobs`).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import pandas as pd

from dat_lab.experiments import durable
from dat_lab.experiments.locking import read_holder
from dat_lab.experiments.store import LOCK_NAME, RunState, attempt_metrics_csvs
from dat_lab.results.knobs import run_knobs
from dat_lab.schema import ConfigError

IDENTITY_EVENTS = ("created", "attached")
COST_KEYS = ("params", "flops", "flops_formula")


def flatten(data: Any, prefix: str) -> dict[str, Any]:
    """Nested plain data -> ``{dotted key: scalar}``; lists of scalars become tuples."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}"))
    elif isinstance(data, list) and any(isinstance(v, (dict, list)) for v in data):
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}.{i}"))
    elif isinstance(data, list):
        out[prefix] = tuple(data)
    else:
        out[prefix] = data
    return out


def _identities(run_dir: Path, first: tuple[str, str, int]) -> tuple[tuple[str, str, int], ...]:
    """Every (experiment, variant, seed) recorded for the run, the creator's first."""
    found = [first]
    for rec in durable.read_records(run_dir / "events.jsonl"):
        ident = rec.get("identity")
        if rec.get("event") in IDENTITY_EVENTS and isinstance(ident, dict):
            try:
                key = (str(ident["experiment"]), str(ident["variant"]), int(ident["seed"]))
            except (KeyError, TypeError, ValueError):
                continue
            if key not in found:
                found.append(key)
    return tuple(found)


def _live_state(run_dir: Path, stored: str, foreign_lock_timeout: float | None) -> str:
    """The stored state, except that a running run with a dead or missing lock is interrupted
    (the same rule as ``RunStore.state``)."""
    if stored == RunState.RUNNING.value:
        _, stale = read_holder(run_dir / LOCK_NAME, foreign_lock_timeout)
        if stale:
            return RunState.INTERRUPTED.value
    return stored


def read_run(run_dir: Path, foreign_lock_timeout: float | None = None) -> dict[str, Any] | None:
    """One run directory as a flat row (see the module docstring), None if incomplete."""
    config = durable.read_json(run_dir / "config.json")
    run_doc = durable.read_json(run_dir / "run.json")
    if not isinstance(config, dict) or not isinstance(run_doc, dict):
        return None
    status = durable.read_json(run_dir / "status.json") or {"state": "pending"}
    first = (str(run_doc["experiment"]), str(run_doc["variant"]), int(run_doc["seed"]))
    row: dict[str, Any] = {
        "run_id": run_doc.get("run_id", run_dir.name),
        "experiment": first[0],
        "variant": first[1],
        "seed": first[2],
        "identities": _identities(run_dir, first),
        "state": _live_state(run_dir, status.get("state", "pending"), foreign_lock_timeout),
        "reason": status.get("reason"),
        "attempts": int(status.get("attempts", 0)),
        "created": run_doc.get("created"),
        "updated": status.get("updated", run_doc.get("created")),
        "path": str(run_dir),
    }
    cost = durable.read_json(run_dir / "cost.json") or {}
    row.update({key: cost.get(key) for key in COST_KEYS})
    row.update(flatten(config, "config"))
    row.update(flatten(durable.read_json(run_dir / "final.json") or {}, "final"))
    row.update(flatten(durable.read_json(run_dir / "provenance.json") or {}, "prov"))
    row.update({f"knob.{k}": v for k, v in run_knobs(config).items()})
    return row


def load_runs(root: str | Path, foreign_lock_timeout: float | None = None) -> pd.DataFrame:
    """Every run of the store at ``root``, one row each, oldest first (columns above).

    Raises :class:`ConfigError` (key ``store``) when ``root`` holds no run store.
    """
    root = Path(root)
    base = root / "runs"
    if not base.is_dir():
        raise ConfigError(
            f"no run store at {root} (no {base} directory); pass --store DIR", "store"
        )
    rows, incomplete = [], 0
    with os.scandir(base) as entries:
        for entry in entries:
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            row = read_run(Path(entry.path), foreign_lock_timeout)
            if row is None:
                incomplete += 1
            else:
                rows.append(row)
    frame = pd.DataFrame.from_records(rows) if rows else _empty_frame()
    if len(frame):
        frame = frame.sort_values(["created", "run_id"], kind="stable").reset_index(drop=True)
    frame.attrs["root"] = str(root)
    frame.attrs["incomplete"] = incomplete
    return frame


def _empty_frame() -> pd.DataFrame:
    columns = ["run_id", "experiment", "variant", "seed", "identities", "state", "reason",
               "attempts", "created", "updated", "path", *COST_KEYS]  # fmt: skip
    return pd.DataFrame(columns=columns)


def memberships(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, identity): a run shared by two experiments appears under each, with
    ``experiment``, ``variant`` and ``seed`` set to that identity's."""
    if runs.empty:
        return runs.copy()
    out = runs.explode("identities", ignore_index=True)
    idents = pd.DataFrame(out["identities"].tolist(), columns=["experiment", "variant", "seed"])
    out[["experiment", "variant", "seed"]] = idents
    out["seed"] = out["seed"].astype(int)
    out.attrs = dict(runs.attrs)
    return out


def _read_log(path: Path) -> list[tuple[str, float, float, float]]:
    """``(metric, step, epoch, value)`` of every non-empty cell of a Lightning metrics.csv."""
    out = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                step = float(row.pop("step"))
            except (KeyError, TypeError, ValueError):
                continue
            epoch_text = row.pop("epoch", "") or ""
            epoch = float(epoch_text) if epoch_text else float("nan")
            for metric, text in row.items():
                if text:
                    try:
                        out.append((metric, step, epoch, float(text)))
                    except (TypeError, ValueError):
                        continue
    return out


def load_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Training curves of ``runs`` (rows of :func:`load_runs`) in long form.

    Columns: ``run_id``, ``variant``, ``seed``, ``metric``, ``step``, ``epoch``, ``value``.
    Each attempt of a run logs to its own ``version_K`` (a resumed run starts a new one); a
    later attempt's value for the same (metric, step) supersedes the earlier one's. Read with
    the csv module: a pandas parser per small file costs more than the file.
    """
    columns = ["run_id", "variant", "seed", "metric", "step", "epoch", "value"]
    records: list[tuple[Any, ...]] = []
    for row in runs[["run_id", "variant", "seed", "path"]].itertuples(index=False):
        latest: dict[tuple[str, float], tuple] = {}
        for path in attempt_metrics_csvs(Path(row.path)):
            for metric, step, epoch, value in _read_log(path):
                latest[(metric, step)] = (
                    row.run_id,
                    row.variant,
                    row.seed,
                    metric,
                    step,
                    epoch,
                    value,
                )
        records.extend(latest.values())
    curves = pd.DataFrame.from_records(records, columns=columns)
    return curves.sort_values(["run_id", "metric", "step"], kind="stable").reset_index(drop=True)
