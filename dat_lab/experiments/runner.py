"""One run's lifecycle against the run store: lock, skip, resume, train, record.

``run_spec`` trains one run under the store's lock. A run that finished is never retrained;
one that was interrupted (its worker killed) resumes from its last checkpoint, which restores
the optimizer, scheduler, loop and RNG state; a failed run is retried only when asked, and
then at most once per invocation. A non-finite loss or any exception marks the run failed
with the reason, and the experiment goes on with the next run. Ctrl-C (or SIGTERM) leaves
the run interrupted (resumable) and stops.

Walking an experiment's runs, in one process or several, is ``pool``'s job.
"""

from __future__ import annotations

import logging
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Timer

from dat_lab.data.datamodule import build_datamodule
from dat_lab.experiments import provenance, ranks
from dat_lab.experiments.durable import is_write_failure, store_writes
from dat_lab.experiments.locking import LeaseKeeper, LockLost
from dat_lab.experiments.processes import die_with_parent
from dat_lab.experiments.quarantine import journal_note, readable
from dat_lab.experiments.records import (
    DamagedDocument,
    RunIdentity,
    RunOutcome,
    RunRecord,
    RunState,
)
from dat_lab.experiments.resume import choose_resume
from dat_lab.experiments.run_callbacks import LeaseCheck, MetricsSnapshot
from dat_lab.experiments.run_config import RunConfig, RunSpec
from dat_lab.experiments.stale import other_code
from dat_lab.experiments.store import RunStore
from dat_lab.experiments.weights import init_from_source
from dat_lab.flops import count_flops
from dat_lab.models import build_model
from dat_lab.text import print_line
from dat_lab.train.callbacks import NonFiniteLossError
from dat_lab.train.loggers import RunTags
from dat_lab.train.module import DatLitModule
from dat_lab.train.trainer import VAL_TOP1, VAL_TOP1_BEST, build_trainer, fit

Log = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    """What happened to one run in this invocation.

    ``result``: see :class:`RunOutcome`.
    """

    run_id: str
    variant: str
    seed: int
    result: RunOutcome
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.result in (RunOutcome.FINISHED, RunOutcome.SKIPPED)


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
        record = store.get(spec.run_id, lenient=True)  # a damaged run is retrained anyway
        if record is not None and record.state is RunState.FAILED:
            out[spec.run_id] = record.attempts
    return out


class RunStopped(Exception):
    """Raised by a caller's callback (a sweep's pruner) to stop a run before its last epoch.
    The run is not failed: like an interrupted one it stays resumable from its last
    checkpoint, so a later request for the same config trains it to the end."""


class _LockAttempt:
    """The result of trying to take one run: an Outcome, or the held lock and stored record."""

    def __init__(
        self, outcome: Outcome | None = None, lock: Any = None, record: RunRecord | None = None
    ):
        self.outcome, self.lock, self.record = outcome, lock, record


def run_spec(
    spec: RunSpec,
    store: RunStore,
    retry: Mapping[str, int] | None = None,
    log: Log = print_line,
    label: str = "",
    quiet: bool = False,
    extra_callbacks: Sequence[pl.Callback] = (),
    ask: Ask | None = None,
) -> Outcome:
    """Train (or resume, or skip) one run, recording everything in ``store``.

    Args:
        retry: failed runs to retrain, ``{run_id: attempts}`` (see :func:`failed_runs`).
        label: the prefix of this run's progress lines (default: variant, seed, run id).
        quiet: no Lightning progress bar (parallel workers share one terminal).
        extra_callbacks: added to the run's Trainer (a sweep's pruning callback); one that
            raises :class:`RunStopped` leaves the run resumable and the exception reaches
            the caller.
        ask: ``--rerun-stale`` and when the invocation began (see :class:`Ask`).

    Returns ``Outcome(result=RunOutcome.BUSY)`` without waiting when another live process holds it.
    """
    label = label or run_label(spec)
    ask = ask or Ask()
    with store_writes(store.root, spec.run_id):  # a full disk: StoreWriteError, one line
        attempt = _try_lock(spec, store, retry or {}, ask, lambda m: log(f"{label}: {m}"))
        if attempt.outcome is not None:
            return attempt.outcome
        return _train_locked(spec, store, attempt, label, log, quiet, extra_callbacks, ask)


def _train_locked(
    spec: RunSpec,
    store: RunStore,
    attempt: _LockAttempt,
    label: str,
    log: Log,
    quiet: bool,
    extra_callbacks: Sequence[pl.Callback],
    ask: Ask,
) -> Outcome:
    """:func:`run_spec` once the run's lock is held."""
    assert attempt.record is not None  # an attempt without an outcome holds the lock and record
    with attempt.lock, LeaseKeeper(attempt.lock, store.foreign_lock_timeout) as lease:
        record = _restart_if_stale(spec, store, attempt.record, ask.rerun_stale, label, log)
        choice = choose_resume(store, record, spec.config.model, lambda m: log(f"{label}: {m}"))
        resume = choice.checkpoint
        store.mark_running(spec.run_id)
        log(f"{label}: {_start_text(record, resume, bool(choice.set_aside))}")
        callbacks = [LeaseCheck(lease), *extra_callbacks]
        try:
            final = _train(spec, store, record.path, resume, quiet, callbacks)
        except RunStopped:
            raise  # not failed: the run stays resumable (running, with its lock released)
        except LockLost as err:  # another host took the run over: it is theirs to record now
            log(f"{label}: stopped: {err}")
            return _outcome(spec, RunOutcome.LOST, str(err))
        except Exception as err:  # noqa: BLE001 - any failure is recorded, the experiment goes on
            if is_write_failure(err):
                raise  # not the run's fault: it stays interrupted (store_writes says so)
            reason = _reason(err)
            store.mark_failed(spec.run_id, reason)
            log(f"{label}: FAILED: {reason}")
            return _outcome(spec, RunOutcome.FAILED, reason)
        store.mark_finished(spec.run_id, final)
        log(f"{label}: finished in {final['train_time_s']:.1f} s, {_top1(final)}")
        return _outcome(spec, RunOutcome.FINISHED, _top1(final))


@dataclass(frozen=True)
class Ask:
    """What one ``dat-lab run`` asked beyond retries, the same for all its workers.

    Attributes:
        rerun_stale: train again from scratch a run that other code made (finished, or a
            checkpoint to resume; see :mod:`dat_lab.experiments.stale`).
        since: when the invocation began (ISO time, ``locking.now_iso``): a run finished
            after it was finished by another worker, and is reported so.
        workers: how many workers share the runs (for the time-left estimate).
    """

    rerun_stale: bool = False
    since: str | None = None
    workers: int = 1


def _try_lock(
    spec: RunSpec, store: RunStore, retry: Mapping[str, int], ask: Ask, say: Log
) -> _LockAttempt:
    record = readable(store, spec.run_id, lambda: _record(spec, store), say)
    if record is None:
        return _LockAttempt(_outcome(spec, RunOutcome.BUSY, "damaged, and held by a live process"))
    if record.journal_damage:
        say(journal_note(record))
    early = _settled(spec, record, retry, ask)
    if early is not None:
        return _LockAttempt(early)
    lock = store.try_lock(spec.run_id)
    if lock is None:
        holder = store.lock_holder(spec.run_id)
        who = f"pid {holder.pid} on {holder.host}" if holder else "another process"
        return _LockAttempt(_outcome(spec, RunOutcome.BUSY, f"held by {who}"))
    try:
        record = store.require(spec.run_id)  # re-read under the lock: it may have changed
    except DamagedDocument:  # damaged meanwhile: set aside (needs the lock) and start again
        lock.release()
        return _try_lock(spec, store, retry, ask, say)
    settled = _settled(spec, record, retry, ask)
    if settled is not None:
        lock.release()
        return _LockAttempt(settled)
    return _LockAttempt(lock=lock, record=record)


def _record(spec: RunSpec, store: RunStore) -> RunRecord:
    """The run's stored record, created first if need be.

    A run another process holds is polled every few seconds; once it is stored with this
    config and identity, reading it is enough (``create`` fsyncs the directory and publishes
    the config again each time)."""
    identity = RunIdentity(spec.experiment, spec.variant, spec.seed)
    config = spec.config.to_dict()
    record = store.get(spec.run_id)
    if record is not None and identity in record.identities and record.config == config:
        return record
    return store.create(spec.run_id, config, identity)


def _settled(
    spec: RunSpec, record: RunRecord, retry: Mapping[str, int], ask: Ask
) -> Outcome | None:
    """The Outcome of a run that needs no training now, else None."""
    if record.state is RunState.FINISHED:
        stale = other_code(record.provenance)
        if stale and ask.rerun_stale:
            return None
        return _outcome(spec, RunOutcome.SKIPPED, _finished_text(record, ask.since, stale))
    if record.state is RunState.FAILED and retry.get(spec.run_id) != record.attempts:
        return _outcome(spec, RunOutcome.NOT_RETRIED, f"failed before: {record.reason}")
    return None


def _finished_text(record: RunRecord, since: str | None, stale: str | None) -> str:
    """``finished before, val top-1 ...`` or ``finished by another worker (pid P on H) ...``,
    with what made it when that was other code."""
    if since is not None and record.updated >= since:
        who = f"pid {record.pid} on {record.host}" if record.pid else "another process"
        text = f"finished by another worker ({who}), {_top1(record.final or {})}"
    else:
        text = f"finished before, {_top1(record.final or {})}"
    return f"{text}; {stale}; --rerun-stale retrains it" if stale else text


def _restart_if_stale(
    spec: RunSpec, store: RunStore, record: RunRecord, rerun: bool, label: str, log: Log
) -> RunRecord:
    """With ``rerun``, a run (or checkpoint) that other code made starts again from scratch;
    its earlier output is kept under ``superseded/``. Called under the run's lock."""
    stale = other_code(record.provenance) if rerun else None
    if stale is None or (record.state is RunState.PENDING and record.last_checkpoint is None):
        return record  # nothing trained by other code to throw away
    log(f"{label}: {stale}: training again from scratch (--rerun-stale)")
    return store.restart(spec.run_id, f"--rerun-stale: {stale}")


def _start_text(record: RunRecord, resume: Path | None, set_aside: bool = False) -> str:
    if resume is None:
        return "training from scratch (no checkpoint loads)" if set_aside else "training"
    stale = other_code(record.provenance)
    note = f" (checkpoint {stale}; --rerun-stale restarts it from scratch)" if stale else ""
    return f"resuming from {_rel(resume, record.path)}{note}"


def _outcome(spec: RunSpec, result: RunOutcome, detail: str = "") -> Outcome:
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
    if isinstance(err, NonFiniteLossError):
        return str(err)  # "non-finite loss at step N"
    tail = traceback.format_exception_only(type(err), err)[-1].strip()
    return tail[:2000]


def follow(run: ranks.RankRun) -> int:
    """Train ``run`` as a non-zero rank of its DDP group (see :mod:`.ranks`): the leader holds
    the lock and records the run; this process only trains with it, and (when the leader
    started it) dies with it."""
    if not ranks.launched_externally():
        die_with_parent(run.leader)
    quiet_lightning()
    store = RunStore(run.store)
    record = store.require(run.run_id)
    spec = RunSpec(
        record.identity.experiment,
        record.identity.variant,
        record.identity.seed,
        RunConfig.from_dict(record.config),
    )
    resume = Path(run.resume) if run.resume else None
    _train(spec, store, record.path, resume, quiet=True, lead=False)
    return 0


def _train(
    spec: RunSpec,
    store: RunStore,
    run_dir: Path,
    resume: Path | None,
    quiet: bool,
    extra_callbacks: Sequence[pl.Callback] = (),
    lead: bool = True,
) -> dict[str, float]:
    """Build data, model and trainer for one run and fit it; returns the final metrics.

    ``lead``: this process holds the run (records provenance and cost); a DDP group's other
    ranks only train. The leader of a DDP run names it for the ranks Lightning starts."""
    cfg = spec.config
    if lead:
        _record_start(spec, store, resume)
    datamodule = build_datamodule(cfg.data)
    snapshot, timer = MetricsSnapshot(), Timer()  # both checkpointed, so resumes add up
    callbacks = [snapshot, timer, *extra_callbacks]
    tags = RunTags(spec.run_id, spec.experiment, spec.variant, spec.seed)
    trainer = build_trainer(cfg.train, run_dir, callbacks, tags)  # seeds the run
    if quiet and trainer.progress_bar_callback is not None:
        trainer.progress_bar_callback.disable()
    model = build_model(cfg.model)  # after the seeding
    init_from_source(model, spec, store, resume)  # train.init_from: weights, provenance
    module = DatLitModule(model, cfg.train, datamodule.num_classes, batch_size=cfg.data.batch_size)
    group = lead and cfg.train.distributed
    if group and ranks.launched_externally():  # srun started the ranks: tell them the run
        ranks.announce(store, spec.run_id, resume)
    local_group = group and not ranks.launched_externally()
    naming = ranks.leading(store.root, spec.run_id, resume) if local_group else nullcontext()
    try:
        with naming:
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
    if lead:
        _record_end(spec, store, final)
    return final


def _record_start(spec: RunSpec, store: RunStore, resume: Path | None) -> None:
    """Provenance and cost; a resume keeps the first start's provenance and notes its own."""
    prov = store.read_json(spec.run_id, "provenance")
    now = provenance.collect(spec.config.train.seed)
    if prov is None or resume is None:
        prov = now
    else:
        keep = ("started", "dat_lab", "code", "packages", "machine")
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


def quiet_lightning() -> None:
    """Hide Lightning's per-run banners (devices, model summary, tips) in experiment logs,
    and two warnings that say nothing here: a resumed run's checkpoint folder is not empty by
    design, and Lightning 2.6's own use of a deprecated torch pytree API. Other warnings and
    errors still show."""
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # Once SLURM is installed Lightning warns on every local run that srun is not used.
    warnings.filterwarnings("ignore", message=r"The `srun` command is available")
    # DDP on channels-last-like conv weights (the offset network's 1x1 convs): speed only.
    warnings.filterwarnings("ignore", message=r"Grad strides do not match bucket view strides")


def stored_outcome(spec: RunSpec, store: RunStore) -> Outcome:
    """A run's outcome as the store has it now (used after parallel workers)."""
    record = store.get(spec.run_id, lenient=True)
    if record is None:
        return _outcome(spec, RunOutcome.PENDING)
    state = store.live_state(record)
    if state is RunState.FINISHED:
        return _outcome(spec, RunOutcome.FINISHED, _top1(record.final or {}))
    return _outcome(spec, RunOutcome.of(state), record.reason or "")


__all__ = [
    "Ask",
    "Outcome",
    "RunStopped",
    "failed_runs",
    "follow",
    "quiet_lightning",
    "run_cost",
    "run_label",
    "run_spec",
    "stored_outcome",
]
