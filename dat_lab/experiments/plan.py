"""The plan of an experiment (``--dry-run``) and its results table, read from the run store.

The plan lists every run with its state in the store and what this invocation would do with
it, and the parameters and FLOPs of each variant's model (counted once per distinct model).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

from dat_lab.experiments.records import DamagedDocument, RunState
from dat_lab.experiments.run_config import RunSpec
from dat_lab.experiments.runner import run_cost
from dat_lab.experiments.stale import other_code
from dat_lab.experiments.store import RunStore
from dat_lab.text import print_line, si
from dat_lab.train.trainer import VAL_TOP1, VAL_TOP1_BEST

Log = Callable[[str], None]

DAMAGED = "damaged"
# What `dat-lab run` does with a run in each live state.
ACTIONS = {
    "new": "train",
    RunState.PENDING.value: "train",
    RunState.INTERRUPTED.value: "resume",  # from last.ckpt, or from the start without one
    RunState.RUNNING.value: "wait (another process is training it)",
    RunState.FINISHED.value: "skip",
    RunState.FAILED.value: "skip (--retry-failed retrains it)",
    DAMAGED: "quarantine, then train",  # a document is unreadable: the run is not trusted
}


def live_state(spec: RunSpec, store: RunStore) -> str:
    """``new`` if the store has no such run, ``damaged`` if a document of it is unreadable,
    else its live state (``interrupted`` for a run whose worker died)."""
    try:
        record = store.get(spec.run_id)
    except DamagedDocument:
        return DAMAGED
    return store.live_state(record).value if record is not None else "new"


def action(state: str, retry_failed: bool) -> str:
    if state == RunState.FAILED.value and retry_failed:
        return "retrain"
    return ACTIONS[state]


def _stale_action(spec: RunSpec, store: RunStore, state: str, rerun_stale: bool) -> str | None:
    """For a finished or resumable run that other code made: what happens to it, else None."""
    record = store.get(spec.run_id, lenient=True)
    resumable = state == RunState.INTERRUPTED.value and record and record.last_checkpoint
    if record is None or not (state == RunState.FINISHED.value or resumable):
        return None
    stale = other_code(record.provenance)
    if stale is None:
        return None
    what = stale.split(";")[0]  # "made by other code (code X, started at commit Y)"
    if rerun_stale:
        return f"retrain from scratch ({what})"
    return f"{action(state, False)} ({what}; --rerun-stale retrains it)"


def variant_costs(specs: list[RunSpec]) -> dict[str, dict]:
    """Params and FLOPs of each variant's model, counted once per distinct model config."""
    by_model: dict[str, dict] = {}
    out: dict[str, dict] = {}
    for spec in specs:
        key = spec.config.model.hash
        if key not in by_model:
            by_model[key] = run_cost(spec)
        out.setdefault(spec.variant, by_model[key])
    return out


def print_plan(
    specs: list[RunSpec],
    store: RunStore,
    retry_failed: bool = False,
    log: Log = print_line,
    rerun_stale: bool = False,
) -> None:
    """Per variant: params and FLOPs; per run: state and what ``dat-lab run`` would do
    (a run that other code made is named so: retrained with ``--rerun-stale``)."""
    log("| variant | params | FLOPs (fvcore) | FLOPs (paper formula) |")
    log("|---|---:|---:|---:|")
    for variant, cost in variant_costs(specs).items():
        log(f"| {variant} | {_si(cost['params'])} | {_si(cost['flops'])} | "
            f"{_si(cost['flops_formula'])} |")  # fmt: skip
    log("")
    log("| variant | seed | run id | state | action |")
    log("|---|---:|---|---|---|")
    counts: Counter[str] = Counter()
    for spec in specs:
        state = live_state(spec, store)
        todo = _stale_action(spec, store, state, rerun_stale) or action(state, retry_failed)
        counts[todo.split(" ")[0]] += 1
        record = store.get(spec.run_id, lenient=True)
        why = record.reason if record is not None and state == RunState.FAILED.value else None
        why = why or (_damage(spec, store) if state == DAMAGED else None)
        log(f"| {spec.variant} | {spec.seed} | {spec.run_id} | {state}"
            f"{f' ({why})' if why else ''} | {todo} |")  # fmt: skip
    log("plan: " + ", ".join(f"{n} to {a}" for a, n in sorted(counts.items())))


def print_results(specs: list[RunSpec], store: RunStore, log: Log = print_line) -> None:
    """One row per run as the store has it now: state, final val top-1, training time."""
    log("| variant | seed | run id | state | val top-1 | best val top-1 | train time (s) |")
    log("|---|---:|---|---|---:|---:|---:|")
    for spec in specs:
        record = store.get(spec.run_id, lenient=True)
        final: Mapping[str, float] = (record.final if record else None) or {}
        state = live_state(spec, store)
        if record is not None and record.reason and state == RunState.FAILED.value:
            state = f"failed: {record.reason}"
        log(f"| {spec.variant} | {spec.seed} | {spec.run_id} | {state} | "
            f"{_num(final.get(VAL_TOP1))} | {_num(final.get(VAL_TOP1_BEST))} | "
            f"{_num(final.get('train_time_s'), 1)} |")  # fmt: skip


def _damage(spec: RunSpec, store: RunStore) -> str | None:
    try:
        store.get(spec.run_id)
    except DamagedDocument as err:
        return err.line
    return None


def _si(n: float | None) -> str:
    return si(n, missing="-")


def _num(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
