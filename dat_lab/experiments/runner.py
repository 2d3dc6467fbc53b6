"""Run an experiment's RunSpecs against the run store: skip, resume, train, record.

``run_spec`` trains one run under the store's lock. A run that finished is never retrained;
one that was interrupted (its worker killed) resumes from its last checkpoint, which restores
the optimizer, scheduler, loop and RNG state; a failed run is retried only when asked. A
non-finite loss or any exception marks the run failed with the reason, and the experiment
goes on with the next run. Ctrl-C leaves the run interrupted (resumable) and stops.

``run_experiment`` runs the specs in one process or in ``workers`` processes; workers claim
runs through the store's locks, so no two train the same run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch

from dat_lab.experiments import provenance
from dat_lab.experiments.spec import RunSpec, describe
from dat_lab.experiments.store import RunIdentity, RunState, RunStore
from dat_lab.flops import count_flops

OUTCOMES = ("finished", "skipped", "failed", "busy", "not retried")


@dataclass(frozen=True)
class Outcome:
    """What happened to one run in this invocation."""

    run_id: str
    variant: str
    seed: int
    result: str  # one of OUTCOMES
    detail: str = ""


def run_cost(spec: RunSpec) -> dict[str, float | int | None]:
    """Parameters and FLOPs of a run's model (FLOPs at the data's image size, batch 1)."""
    report = count_flops(spec.config.model)
    return {"params": report.params, "flops": report.total, "flops_formula": report.formula_total}


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

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[self.KEY] = {k: float(v) for k, v in trainer.callback_metrics.items()}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self.restored = dict(checkpoint.get(self.KEY, {}))


def run_spec(spec: RunSpec, store: RunStore, retry_failed: bool = False, log=print) -> Outcome:
    """Train (or resume, or skip) one run, recording everything in ``store``."""
    identity = RunIdentity(spec.experiment, spec.variant, spec.seed)
    record = store.create(spec.run_id, spec.config.to_dict(), identity)
    out = lambda result, detail="": Outcome(spec.run_id, spec.variant, spec.seed, result, detail)  # noqa: E731
    if record.state is RunState.FINISHED:
        return out("skipped", "already finished")
    if record.state is RunState.FAILED and not retry_failed:
        return out("not retried", f"failed before: {record.reason} (use --retry-failed)")
    lock = store.try_lock(spec.run_id)
    if lock is None:
        return out("busy", "another worker holds this run")
    with lock:
        record = store.require(spec.run_id)  # re-read under the lock
        if record.state is RunState.FINISHED:
            return out("skipped", "finished by another worker")
        if record.state is RunState.FAILED and not retry_failed:
            return out("not retried", record.reason or "")
        resume = record.last_checkpoint
        store.mark_running(spec.run_id)
        log(f"{'resuming' if resume else 'training'} {describe(spec)}" + (f" from {resume.name}" if resume else ""))
        try:
            final = _train(spec, store, record.path, resume)
        except KeyboardInterrupt:
            raise  # the run stays "running" with a dead lock: the next invocation resumes it
        except Exception as err:  # noqa: BLE001 - any failure is recorded, the experiment goes on
            reason = _reason(err)
            store.mark_failed(spec.run_id, reason)
            log(f"FAILED {describe(spec)}: {reason}")
            return out("failed", reason)
        store.mark_finished(spec.run_id, final)
        acc = final.get("val/acc1_best")
        log(f"finished {describe(spec)}" + (f": val/acc1_best {acc:.4f}" if acc is not None else ""))
        return out("finished")


def _reason(err: BaseException) -> str:
    from dat_lab.train.callbacks import NonFiniteLossError

    if isinstance(err, NonFiniteLossError):
        return str(err)
    tail = traceback.format_exception_only(type(err), err)[-1].strip()
    return tail[:2000]


def _train(spec: RunSpec, store: RunStore, run_dir: Path, resume: Path | None) -> dict[str, float]:
    """Build data, model and trainer for one run and fit it; returns the final metrics."""
    from dat_lab.data.datamodule import build_datamodule
    from dat_lab.models import build_model
    from dat_lab.train.module import DatLitModule
    from dat_lab.train.trainer import build_trainer, fit

    cfg = spec.config
    started = time.time()
    if store.read_json(spec.run_id, "provenance") is None or resume is None:
        store.write_json(spec.run_id, "provenance", provenance.collect(cfg.train.seed))
    if store.read_json(spec.run_id, "cost") is None:
        store.write_json(spec.run_id, "cost", run_cost(spec))
    datamodule = build_datamodule(cfg.data)
    snapshot = MetricsSnapshot()
    trainer = build_trainer(cfg.train, run_dir, extra_callbacks=[snapshot])  # seeds the run
    model = build_model(cfg.model)  # after the seeding
    module = DatLitModule(model, cfg.train, datamodule.num_classes, batch_size=cfg.data.batch_size)
    metrics = {**snapshot.restored, **fit(module, datamodule, trainer, ckpt_path=resume)}
    final = {k: v for k, v in metrics.items() if k.startswith(("val/", "train/"))}
    final["epochs"] = float(trainer.current_epoch)
    final["steps"] = float(trainer.global_step)
    final["wall_s"] = time.time() - started
    return final


def run_experiment(
    specs: list[RunSpec],
    store: RunStore,
    workers: int = 1,
    retry_failed: bool = False,
    log=print,
) -> list[Outcome]:
    """Run every spec; with ``workers > 1`` in that many processes sharing the CPU threads."""
    if workers <= 1:
        return [_run_logged(i, len(specs), spec, store, retry_failed, log) for i, spec in enumerate(specs)]
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(threads,)) as pool:
        jobs = [
            pool.apply_async(_run_in_worker, (i, len(specs), spec, str(store.root), retry_failed))
            for i, spec in enumerate(specs)
        ]
        return [job.get() for job in jobs]


def _run_logged(i: int, n: int, spec: RunSpec, store: RunStore, retry_failed: bool, log) -> Outcome:
    log(f"[{i + 1}/{n}] {describe(spec)}")
    outcome = run_spec(spec, store, retry_failed, log)
    if outcome.result in ("skipped", "not retried", "busy"):
        log(f"[{i + 1}/{n}] {outcome.result}: {outcome.detail}")
    return outcome


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _run_in_worker(i: int, n: int, spec: RunSpec, root: str, retry_failed: bool) -> Outcome:
    pid = os.getpid()
    return _run_logged(i, n, spec, RunStore(root), retry_failed, lambda msg: print(f"[worker {pid}] {msg}", flush=True))
