"""Synthetic runs made through the real RunStore API, with known metrics (for report tests).

Imported by the tests as ``results_helpers`` (pytest puts this folder on sys.path).
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path
from typing import Any

from dat_lab.experiments.store import RunIdentity, RunLock, RunStore

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"
COST = {"params": 395612, "flops": 6685376, "flops_formula": 6477120}


@cache
def experiment_configs(name: str) -> tuple[tuple[str, dict[str, Any]], ...]:
    """``(variant, plain config)`` of every variant of ``experiments/NAME.yaml`` (seed 0)."""
    from dat_lab.experiments.spec import load_experiment

    _, specs = load_experiment(EXPERIMENTS / f"{name}.yaml")
    return tuple((s.variant, s.config.to_dict()) for s in specs if s.seed == specs[0].seed)


def with_seed(config: dict[str, Any], seed: int) -> dict[str, Any]:
    return {**config, "train": {**config["train"], "seed": seed}}


def write_curve(run_dir: Path, accs: list[float], version: int = 0) -> None:
    """A Lightning-like logs/version_K/metrics.csv: val/acc1 per epoch, train/loss per step."""
    folder = run_dir / "logs" / f"version_{version}"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "step", "train/loss", "val/acc1"])
        for epoch, acc in enumerate(accs):
            w.writerow([epoch, 2 * epoch, 1.0 / (epoch + 1), ""])
            w.writerow([epoch, 2 * epoch + 1, "", acc])


def add_run(
    store: RunStore,
    experiment: str,
    variant: str,
    seed: int,
    config: dict[str, Any],
    state: str = "finished",
    final: dict[str, float] | None = None,
    reason: str = "non-finite loss",
    cost: dict[str, Any] | None = None,
    curve: list[float] | None = None,
) -> RunLock | None:
    """One run in ``state`` (finished, failed, running, interrupted, pending).

    ``running`` returns the held lock: the run reads as running while the caller keeps it;
    ``interrupted`` is a running run whose lock was released (its worker is gone).
    """
    config = with_seed(config, seed)
    run_id = f"{experiment}-{variant}-{seed}".replace("/", "_")
    store.create(run_id, config, RunIdentity(experiment, variant, seed))
    store.write_json(run_id, "cost", cost or COST)
    if curve is not None:
        write_curve(store.run_dir(run_id), curve)
    if state == "pending":
        return None
    lock = store.lock(run_id)
    store.mark_running(run_id)
    if state == "finished":
        store.mark_finished(run_id, final or {})
    elif state == "failed":
        store.mark_failed(run_id, reason)
    if state == "running":
        return lock
    lock.release()
    return None
