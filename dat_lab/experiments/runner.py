"""Run an experiment's RunSpecs against the run store: skip, resume, train, record.

``run_spec`` trains one run under the store's lock. A run that finished is never retrained;
one that was interrupted (its worker killed) resumes from its last checkpoint, which restores
the optimizer, scheduler, loop and RNG state; a failed run is retried only when asked, and
then at most once per invocation. A non-finite loss or any exception marks the run failed
with the reason, and the experiment goes on with the next run. Ctrl-C (or SIGTERM) leaves
the run interrupted (resumable) and stops.

``run_experiment`` works through the specs in one process, or in ``workers`` processes that
split the CPU threads. Every worker (and every other ``dat-lab run`` on the same store) walks
the same list and claims a run by taking its lock, so no two train the same run; a run held
by someone else is waited for, and taken over if its holder dies.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from dat_lab.experiments import provenance
from dat_lab.experiments.locking import host_name, parent_pid
from dat_lab.experiments.spec import RunSpec
from dat_lab.experiments.store import RunIdentity, RunRecord, RunState, RunStore
from dat_lab.flops import count_flops

Log = Callable[[str], None]
POLL_S = 5.0  # how often a worker looks again at runs that another process holds
VAL_TOP1 = "val/acc1"
VAL_TOP1_BEST = "val/acc1_best"


def _print(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class Outcome:
    """What happened to one run in this invocation.

    ``result``: ``finished`` (trained now), ``skipped`` (finished before, or by another
    worker), ``failed`` (now), ``not retried`` (failed before), or, when read back from the
    store after parallel workers, the run's stored state.
    """

    run_id: str
    variant: str
    seed: int
    result: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.result in ("finished", "skipped")


def run_cost(spec: RunSpec) -> dict[str, Any]:
    """Parameters and FLOPs of a run's model (fvcore, batch 1 at the data's image size)."""
    report = count_flops(spec.config.model)
    return {
        "params": report.params,
        "flops": report.total,
        "flops_formula": report.formula_total,
        "flops_size": list(report.size),
    }


def failed_runs(specs: list[RunSpec], store: RunStore) -> dict[str, int]:
    """``{run_id: attempts}`` of the runs that have failed: what ``--retry-failed`` retrains.

    Taken once when an invocation starts: a failed run is retried only while its attempt
    count is still the one seen here, so a run that fails again is not retrained by a second
    worker of the same invocation.
    """
    out = {}
    for spec in specs:
        record = store.get(spec.run_id)
        if record is not None and record.state is RunState.FAILED:
            out[spec.run_id] = record.attempts
    return out


class RunStopped(Exception):
    """Raised by a caller's callback (a sweep's pruner) to stop a run before its last epoch.
    The run is not failed: like an interrupted one it stays resumable from its last
    checkpoint, so a later request for the same config trains it to the end."""


class MetricsSnapshot(pl.Callback):
    """Store the metrics in each checkpoint, and keep those of the checkpoint resumed from.

    A worker killed after its last epoch's checkpoint but before the store marked the run
    finished leaves nothing to train: the resumed ``fit`` returns at once with no metrics.
    The snapshot gives that run the final metrics the killed worker had computed. Lightning
    saves ``last.ckpt`` in ModelCheckpoint's ``on_train_epoch_end``, which runs after the
    module's own (a monitoring callback), so the snapshot holds that epoch's metrics.
    """

    KEY = "dat_lab_metrics"

    def __init__(self) -> None:
        self.restored: dict[str, float] = {}

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        checkpoint[self.KEY] = {k: float(v) for k, v in trainer.callback_metrics.items()}

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        self.restored = dict(checkpoint.get(self.KEY, {}))


class _Claim:
    """The result of trying to take one run: an Outcome, or the held lock and stored record."""

    def __init__(
        self, outcome: Outcome | None = None, lock: Any = None, record: RunRecord | None = None
    ):
        self.outcome, self.lock, self.record = outcome, lock, record


def run_spec(
    spec: RunSpec,
    store: RunStore,
    retry: Mapping[str, int] | None = None,
    log: Log = _print,
    label: str = "",
    quiet: bool = False,
    extra_callbacks: Sequence[pl.Callback] = (),
) -> Outcome:
    """Train (or resume, or skip) one run, recording everything in ``store``.

    Args:
        retry: failed runs to retrain, ``{run_id: attempts}`` (see :func:`failed_runs`).
        label: the prefix of this run's progress lines (default: variant, seed, run id).
        quiet: no Lightning progress bar (parallel workers share one terminal).
        extra_callbacks: added to the run's Trainer (a sweep's pruning callback); one that
            raises :class:`RunStopped` leaves the run resumable and the exception reaches
            the caller.

    Returns ``Outcome(result="busy")`` without waiting when another live process holds it.
    """
    label = label or run_label(spec)
    claim = _claim(spec, store, retry or {})
    if claim.outcome is not None:
        return claim.outcome
    with claim.lock:
        record = claim.record
        resume = record.last_checkpoint
        store.mark_running(spec.run_id)
        log(f"{label}: {'resuming from ' + _rel(resume, record.path) if resume else 'training'}")
        try:
            final = _train(spec, store, record.path, resume, quiet, extra_callbacks)
        except RunStopped:
            raise  # not failed: the run stays resumable (running, with its lock released)
        except Exception as err:  # noqa: BLE001 - any failure is recorded, the experiment goes on
            reason = _reason(err)
            store.mark_failed(spec.run_id, reason)
            log(f"{label}: FAILED: {reason}")
            return _outcome(spec, "failed", reason)
        store.mark_finished(spec.run_id, final)
        log(f"{label}: finished in {final['train_time_s']:.1f} s, {_top1(final)}")
        return _outcome(spec, "finished", _top1(final))


def _claim(spec: RunSpec, store: RunStore, retry: Mapping[str, int]) -> _Claim:
    identity = RunIdentity(spec.experiment, spec.variant, spec.seed)
    record = store.create(spec.run_id, spec.config.to_dict(), identity)
    early = _settled(spec, record, retry)
    if early is not None:
        return _Claim(early)
    lock = store.try_lock(spec.run_id)
    if lock is None:
        holder = store.lock_holder(spec.run_id)
        who = f"pid {holder.pid} on {holder.host}" if holder else "another process"
        return _Claim(_outcome(spec, "busy", f"held by {who}"))
    record = store.require(spec.run_id)  # re-read under the lock: it may have changed
    settled = _settled(spec, record, retry)
    if settled is not None:
        lock.release()
        return _Claim(settled)
    return _Claim(lock=lock, record=record)


def _settled(spec: RunSpec, record: RunRecord, retry: Mapping[str, int]) -> Outcome | None:
    """The Outcome of a run that needs no training now, else None."""
    if record.state is RunState.FINISHED:
        return _outcome(spec, "skipped", f"finished before, {_top1(record.final or {})}")
    if record.state is RunState.FAILED and retry.get(spec.run_id) != record.attempts:
        return _outcome(spec, "not retried", f"failed before: {record.reason}")
    return None


def _outcome(spec: RunSpec, result: str, detail: str = "") -> Outcome:
    return Outcome(spec.run_id, spec.variant, spec.seed, result, detail)


def run_label(spec: RunSpec) -> str:
    return f"{spec.variant} seed {spec.seed} ({spec.run_id})"


def _top1(metrics: Mapping[str, float]) -> str:
    if VAL_TOP1 not in metrics:
        return "no val top-1"
    best = metrics.get(VAL_TOP1_BEST)
    return f"val top-1 {metrics[VAL_TOP1]:.4f}" + (
        f" (best {best:.4f})" if best is not None else ""
    )


def _rel(path: Path, base: Path) -> str:
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


def _reason(err: BaseException) -> str:
    from dat_lab.train.callbacks import NonFiniteLossError

    if isinstance(err, NonFiniteLossError):
        return str(err)  # "non-finite loss at step N"
    tail = traceback.format_exception_only(type(err), err)[-1].strip()
    return tail[:2000]


def _train(
    spec: RunSpec,
    store: RunStore,
    run_dir: Path,
    resume: Path | None,
    quiet: bool,
    extra_callbacks: Sequence[pl.Callback] = (),
) -> dict[str, float]:
    """Build data, model and trainer for one run and fit it; returns the final metrics."""
    from pytorch_lightning.callbacks import Timer

    from dat_lab.data.datamodule import build_datamodule
    from dat_lab.experiments.weights import init_from_source
    from dat_lab.models import build_model
    from dat_lab.train.module import DatLitModule
    from dat_lab.train.trainer import build_trainer, fit

    cfg = spec.config
    _record_start(spec, store, resume)
    datamodule = build_datamodule(cfg.data)
    snapshot, timer = MetricsSnapshot(), Timer()  # both checkpointed, so resumes add up
    callbacks = [snapshot, timer, *extra_callbacks]
    trainer = build_trainer(cfg.train, run_dir, extra_callbacks=callbacks)  # seeds the run
    if quiet and trainer.progress_bar_callback is not None:
        trainer.progress_bar_callback.disable()
    model = build_model(cfg.model)  # after the seeding
    init_from_source(model, spec, store, resume)  # train.init_from: weights, provenance
    module = DatLitModule(model, cfg.train, datamodule.num_classes, batch_size=cfg.data.batch_size)
    try:
        fitted = fit(module, datamodule, trainer, ckpt_path=resume)  # fills snapshot.restored
    except SystemExit as stop:
        # Lightning turns Ctrl-C into sys.exit(1) and SIGTERM into SIGTERMException (a
        # SystemExit) after its own clean-up: the run is interrupted, not failed.
        raise KeyboardInterrupt from stop
    metrics = {**snapshot.restored, **fitted}  # what this attempt computed wins
    final = {k: v for k, v in metrics.items() if k.startswith(("val/", "train/"))}
    final["epochs"] = float(trainer.current_epoch)
    final["steps"] = float(trainer.global_step)
    final["train_time_s"] = timer.time_elapsed("train")
    _record_end(spec, store, final)
    return final


def _record_start(spec: RunSpec, store: RunStore, resume: Path | None) -> None:
    """Provenance and cost; a resume keeps the first start's provenance and notes its own."""
    prov = store.read_json(spec.run_id, "provenance")
    now = provenance.collect(spec.config.train.seed)
    if prov is None or resume is None:
        prov = now
    else:
        keep = ("started", "dat_lab", "packages", "machine")
        prov.setdefault("resumed", []).append({k: now[k] for k in keep})
    store.write_json(spec.run_id, "provenance", prov)
    if store.read_json(spec.run_id, "cost") is None:
        store.write_json(spec.run_id, "cost", run_cost(spec))


def _record_end(spec: RunSpec, store: RunStore, final: Mapping[str, float]) -> None:
    prov = store.read_json(spec.run_id, "provenance") or {}
    prov["ended"] = datetime.now(UTC).isoformat(timespec="seconds")
    store.write_json(spec.run_id, "provenance", prov)
    cost = store.read_json(spec.run_id, "cost") or run_cost(spec)
    cost["train_time_s"] = final["train_time_s"]
    store.write_json(spec.run_id, "cost", cost)


def work_through(
    specs: list[RunSpec],
    store: RunStore,
    retry: Mapping[str, int],
    log: Log = _print,
    quiet: bool = False,
    poll_s: float = POLL_S,
    quiet_siblings: bool = False,
) -> list[Outcome]:
    """Run every spec in order; then wait for those another process holds, taking over any
    whose holder dies, until every run is settled. Outcomes in the order of ``specs``.

    ``quiet_siblings``: a parallel worker does not say it waits for runs that its sibling
    workers hold (their own lines report those runs); it still names any other holder."""
    n = len(specs)
    labels = {s.run_id: f"[{i + 1}/{n}] {run_label(s)}" for i, s in enumerate(specs)}
    outcomes: dict[str, Outcome] = {}
    pending = list(specs)
    waited: set[str] = set()  # runs found held by another process
    said: set[str] = set()  # ... of which we said so
    while pending:
        busy = []
        for spec in pending:
            outcome = run_spec(spec, store, retry, log, labels[spec.run_id], quiet)
            if outcome.result == "busy":
                busy.append(spec)
                if spec.run_id not in waited:
                    waited.add(spec.run_id)
                    if not quiet_siblings or _held_outside(store, spec.run_id):
                        said.add(spec.run_id)
                        log(f"{labels[spec.run_id]}: {outcome.detail}; will wait for it")
                continue
            if spec.run_id in waited and outcome.result == "skipped":
                if spec.run_id in said:
                    log(f"{labels[spec.run_id]}: finished by the other process")
            elif outcome.result not in ("finished", "failed"):  # those were logged by run_spec
                log(f"{labels[spec.run_id]}: {outcome.result}: {outcome.detail}")
            outcomes[spec.run_id] = outcome
        pending = busy
        if pending:
            time.sleep(poll_s)
    return [outcomes[s.run_id] for s in specs]


def _held_outside(store: RunStore, run_id: str) -> bool:
    """Whether a process other than this ``dat-lab run``'s own workers (same host, same
    parent) holds the run; where that cannot be told (another OS), True."""
    holder = store.lock_holder(run_id)
    if holder is None:  # released since: whoever held it will have reported it
        return False
    return holder.host != host_name() or parent_pid(holder.pid) != os.getppid()


def run_experiment(
    specs: list[RunSpec],
    store: RunStore,
    workers: int = 1,
    retry_failed: bool = False,
    log: Log = _print,
    poll_s: float = POLL_S,
) -> list[Outcome]:
    """Run every spec; with ``workers > 1`` in that many processes sharing the CPU threads."""
    quiet_lightning()
    retry = failed_runs(specs, store) if retry_failed else {}
    if workers <= 1:
        return work_through(specs, store, retry, log, poll_s=poll_s)
    threads = max(1, usable_cpus() // workers)
    log(f"{workers} workers, {threads} CPU thread(s) each")
    ctx = mp.get_context("spawn")  # a clean interpreter: no forked torch thread pools
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(
                k + 1,
                specs,
                str(store.root),
                store.foreign_lock_timeout,
                retry,
                threads,
                poll_s,
            ),
            name=f"dat-lab-worker-{k + 1}",
        )
        for k in range(workers)
    ]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        _stop(procs)
        raise
    for k, proc in enumerate(procs, start=1):
        if proc.exitcode != 0:  # its runs stay running/interrupted in the store: say why
            log(f"worker {k} died (exit code {proc.exitcode}); rerun to resume its runs")
    return [stored_outcome(spec, store) for spec in specs]


def _stop(procs: list[mp.process.BaseProcess]) -> None:
    """Stop the workers: SIGTERM (Lightning stops at the next batch), then SIGKILL. Either way
    their runs stay resumable."""
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + 20.0
    for proc in procs:
        proc.join(max(0.1, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()


def stored_outcome(spec: RunSpec, store: RunStore) -> Outcome:
    """A run's outcome as the store has it now (used after parallel workers)."""
    record = store.get(spec.run_id)
    if record is None:
        return _outcome(spec, RunState.PENDING.value)
    state = store.state(spec.run_id)
    if state is RunState.FINISHED:
        return _outcome(spec, "finished", _top1(record.final or {}))
    return _outcome(spec, state.value, record.reason or "")


def default_workers(specs: list[RunSpec]) -> int:
    """Workers for ``--workers auto``: one per CPU core for CPU runs, one process otherwise.

    Small CPU models use one core badly: two 1-thread processes finished an experiment of
    dat_nano runs ~2x faster than one 2-thread process here, and a 2-thread process is much
    slower still when anything else loads the machine (OpenMP threads wait on each other).
    """
    on_gpu = torch.cuda.is_available() and any(s.config.train.accelerator != "cpu" for s in specs)
    return 1 if on_gpu else max(1, min(usable_cpus(), len(specs)))


def usable_cpus() -> int:
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


def quiet_lightning() -> None:
    """Hide Lightning's per-run banners (devices, model summary, tips) in experiment logs,
    and two warnings that say nothing here: a resumed run's checkpoint folder is not empty by
    design, and Lightning 2.6's own use of a deprecated torch pytree API. Other warnings and
    errors still show."""
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def die_with_parent(parent_pid: int | None = None) -> None:
    """Linux: SIGKILL this worker when its parent dies (a `kill -9` of `dat-lab run` must not
    leave workers training behind it; their runs resume on the next invocation).

    ``parent_pid``: the parent this process was started by. A spawned worker calls this only
    after its imports; if the parent died meanwhile (the signal would never come), it exits.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # orphaned before the line above: nothing of ours to stop cleanly


def _worker_main(
    index: int,
    specs: list[RunSpec],
    root: str,
    foreign_lock_timeout: float | None,
    retry: Mapping[str, int],
    threads: int,
    poll_s: float,
) -> None:
    """One parallel worker: the same walk as a single process, without a progress bar."""
    die_with_parent(mp.parent_process().pid)
    torch.set_num_threads(threads)
    quiet_lightning()
    store = RunStore(root, foreign_lock_timeout=foreign_lock_timeout)
    log = lambda msg: print(f"[worker {index}] {msg}", flush=True)
    try:
        work_through(specs, store, retry, log, quiet=True, poll_s=poll_s, quiet_siblings=True)
    except KeyboardInterrupt:
        pass  # the parent stops everyone; the run stays resumable


__all__ = [
    "MetricsSnapshot",
    "Outcome",
    "RunStopped",
    "failed_runs",
    "run_cost",
    "run_experiment",
    "run_spec",
    "stored_outcome",
    "work_through",
]
