"""Read a run store into pandas: one row per run, and training curves from the CSV logs.

The rows come from the store's own reader (:meth:`RunStore.survey` and
:meth:`RunStore.live_state`, see :mod:`dat_lab.experiments.store`): this module never parses
a run's status, events or lock itself. Runs whose ``create`` was cut short (no
``config.json`` or ``run.json``) are not runs yet and are counted in
``frame.attrs["incomplete"]``; runs with an unreadable document are not trusted and are listed
in ``frame.attrs["damaged"]`` (:class:`DamagedRun`), not loaded.

Columns of :func:`load_runs`:

- ``run_id``, ``path``; ``experiment``, ``variant``, ``seed`` (the first requester) and
  ``identities`` (every ``(experiment, variant, seed)`` sharing the run);
- ``state`` (live: a ``running`` run whose worker died reads ``interrupted``), ``reason``
  (why it failed), ``attempts``, ``created``, ``updated``;
- ``config.<dotted key>``: the resolved config flattened (``config.model.stages.2.attn``);
- ``final.<metric>``: the final metrics (``final.val/acc1``), NaN where there are none;
- ``params``, ``flops``, ``flops_formula``, ``train_time_s`` from ``cost.json``;
- ``prov.<dotted key>``: provenance (``prov.dat_lab.commit``, ``prov.dat_lab.dirty``, ...);
- ``knob.<name>``: the ablation knobs in effect (:mod:`dat_lab.results.knobs`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dat_lab.experiments.records import RunRecord, RunState, attempt_metrics_csvs
from dat_lab.experiments.store import RunStore
from dat_lab.results.knobs import run_knobs
from dat_lab.schema import ConfigError

COST_KEYS = ("params", "flops", "flops_formula", "train_time_s")


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


def run_row(record: RunRecord, state: RunState) -> dict[str, Any]:
    """One run of the store (its ``state`` the live one) as a flat row (see the module
    docstring)."""
    first = record.identity
    row: dict[str, Any] = {
        "run_id": record.run_id,
        "experiment": first.experiment,
        "variant": first.variant,
        "seed": first.seed,
        "identities": tuple((i.experiment, i.variant, i.seed) for i in record.identities),
        "state": state.value,
        "reason": record.reason,
        "attempts": record.attempts,
        "created": record.created,
        "updated": record.updated,
        "path": str(record.path),
    }
    cost = record.cost or {}
    row.update({key: cost.get(key) for key in COST_KEYS})
    row.update(flatten(record.config, "config"))
    row.update(flatten(record.final or {}, "final"))
    row.update(flatten(record.provenance or {}, "prov"))
    row.update({f"knob.{k}": v for k, v in run_knobs(record.config).items()})
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
    store = RunStore(root, foreign_lock_timeout)
    scan = store.scan()
    rows = [run_row(r, store.live_state(r)) for r in scan.records]
    frame = pd.DataFrame.from_records(rows) if rows else _empty_frame()
    frame.attrs["root"] = str(root)
    frame.attrs["incomplete"] = scan.incomplete
    frame.attrs["damaged"] = [DamagedRun(e.run_id or "", e.file, e.line) for e in scan.damaged]
    return frame


@dataclass(frozen=True)
class DamagedRun:
    """A run left out of the report: which run, the file that cannot be read, and why."""

    run_id: str
    file: str
    error: str


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
