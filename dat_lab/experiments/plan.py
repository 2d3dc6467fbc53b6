"""The plan of an experiment: every run, its state in the store, its params and FLOPs."""

from __future__ import annotations

from dat_lab.experiments.runner import run_cost
from dat_lab.experiments.spec import RunSpec
from dat_lab.experiments.store import RunStore


def print_plan(specs: list[RunSpec], store: RunStore) -> None:
    """Print one row per run; params/FLOPs are computed once per distinct model."""
    costs: dict[str, dict] = {}
    print("| variant | seed | run id | state | params (M) | FLOPs (G) |")
    print("|---|---|---|---|---|---|")
    for spec in specs:
        key = spec.config.model.hash
        if key not in costs:
            costs[key] = run_cost(spec)
        cost = costs[key]
        record = store.get(spec.run_id)
        state = store.state(spec.run_id).value if record else "new"
        flops = cost["flops"] / 1e9 if cost.get("flops") is not None else float("nan")
        print(f"| {spec.variant} | {spec.seed} | {spec.run_id} | {state} | "
              f"{cost['params'] / 1e6:.3f} | {flops:.4f} |", flush=True)
