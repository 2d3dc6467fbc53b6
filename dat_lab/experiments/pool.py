"""Work through an experiment's runs: in this process, or in a pool of worker processes.

``run_experiment`` works through the specs in one process, or in ``workers`` processes that
split the CPU threads. Every worker (and every other ``dat-lab run`` on the same store) walks
the same list and claims a run by taking its lock (``runner.run_spec``), so no two train the
same run; a run held by someone else is waited for, and taken over if its holder dies.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Mapping, Sequence

import torch

from dat_lab.experiments.durable import STORE_WRITE_EXIT, StoreWriteError
from dat_lab.experiments.locking import now_iso
from dat_lab.experiments.processes import die_with_parent, host_name, parent_pid, usable_cpus
from dat_lab.experiments.progress import Progress
from dat_lab.experiments.records import RunOutcome
from dat_lab.experiments.run_config import RunSpec
from dat_lab.experiments.runner import (
    Ask,
    Log,
    Outcome,
    failed_runs,
    quiet_lightning,
    run_label,
    run_spec,
    stored_outcome,
)
from dat_lab.experiments.store import RunStore
from dat_lab.schema import ConfigError
from dat_lab.text import print_line

_TRAINED = (RunOutcome.FINISHED, RunOutcome.FAILED)  # logged by run_spec itself
_HELD_ELSEWHERE = (RunOutcome.BUSY, RunOutcome.LOST)  # lost: another host took it over

POLL_S = 5.0  # how often a worker looks again at runs that another process holds


def work_through(
    specs: list[RunSpec],
    store: RunStore,
    retry: Mapping[str, int],
    log: Log = print_line,
    quiet: bool = False,
    poll_s: float = POLL_S,
    quiet_siblings: bool = False,
    ask: Ask | None = None,
) -> list[Outcome]:
    """Run every spec in order; then wait for those another process holds, taking over any
    whose holder dies, until every run is settled. Outcomes in the order of ``specs``.

    ``quiet_siblings``: a parallel worker does not say it waits for runs that its sibling
    workers hold (their own lines report those runs); it still names any other holder.
    ``ask``: ``--rerun-stale``, and when the invocation began (default: now)."""
    ask = ask or Ask(since=now_iso())
    progress = Progress(specs, store, ask.workers)
    outcomes: dict[str, Outcome] = {}
    pending = list(specs)
    waited: set[str] = set()  # runs found held by another process
    said: set[str] = set()  # ... of which we said so
    while pending:
        busy = []
        for spec in pending:
            label = f"{progress.label(spec.run_id)} {run_label(spec)}"
            progress.start(spec.run_id)
            outcome = run_spec(spec, store, retry, log, label, quiet, ask=ask)
            progress.finish(spec.run_id, trained=outcome.result in _TRAINED)
            if outcome.result in _HELD_ELSEWHERE:  # lost: another host took it over
                busy.append(spec)
                if spec.run_id not in waited:
                    waited.add(spec.run_id)
                    if not quiet_siblings or _held_outside(store, spec.run_id):
                        said.add(spec.run_id)
                        log(f"{label}: {outcome.detail}; will wait for it")
                continue
            if spec.run_id in waited and outcome.result is RunOutcome.SKIPPED:
                if spec.run_id in said:
                    log(f"{label}: finished by the other process")
            elif outcome.result not in _TRAINED:  # those were logged by run_spec
                log(f"{label}: {outcome.result}: {outcome.detail}")
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
    log: Log = print_line,
    poll_s: float = POLL_S,
    rerun_stale: bool = False,
) -> list[Outcome]:
    """Run every spec; with ``workers > 1`` in that many processes sharing the CPU threads.
    ``rerun_stale``: train again from scratch the runs that other code made."""
    quiet_lightning()
    retry = failed_runs(specs, store) if retry_failed else {}
    ask = Ask(rerun_stale, now_iso(), max(1, workers))
    if workers <= 1:
        return work_through(specs, store, retry, log, poll_s=poll_s, ask=ask)
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
                ask,
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
    if any(proc.exitcode == STORE_WRITE_EXIT for proc in procs):  # the worker said why
        raise SystemExit(STORE_WRITE_EXIT)
    for k, proc in enumerate(procs, start=1):
        if proc.exitcode != 0:  # its runs stay running/interrupted in the store: say why
            log(f"worker {k} died (exit code {proc.exitcode}); rerun to resume its runs")
    return [stored_outcome(spec, store) for spec in specs]


def _stop(procs: Sequence[mp.process.BaseProcess]) -> None:
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


def default_workers(specs: list[RunSpec]) -> int:
    """Workers for ``--workers auto``: one per CPU core for CPU runs, one process otherwise.

    Small CPU models use one core badly: two 1-thread processes finished an experiment of
    dat_nano runs ~2x faster than one 2-thread process here, and a 2-thread process is much
    slower still when anything else loads the machine (OpenMP threads wait on each other).
    """
    on_gpu = torch.cuda.is_available() and any(s.config.train.accelerator != "cpu" for s in specs)
    if on_gpu or any(s.config.train.distributed for s in specs):
        return 1  # a DDP run is already one process per device
    return max(1, min(usable_cpus(), len(specs)))


def check_workers(specs: list[RunSpec], workers: int) -> None:
    """Refuse several workers for DDP runs: Lightning starts a DDP run's ranks again from
    the command line, which a pool worker (a spawned process) cannot be started from."""
    ddp = [s for s in specs if s.config.train.distributed]
    if workers > 1 and ddp:
        raise ConfigError(
            f"got {workers}; DDP runs (train.devices x train.num_nodes = "
            f"{ddp[0].config.train.world_size}) train one at a time: use --workers 1",
            "--workers",
        )


def _worker_main(
    index: int,
    specs: list[RunSpec],
    root: str,
    foreign_lock_timeout: float | None,
    retry: Mapping[str, int],
    threads: int,
    poll_s: float,
    ask: Ask,
) -> None:
    """One parallel worker: the same walk as a single process, without a progress bar."""
    parent = mp.parent_process()
    die_with_parent(parent.pid if parent is not None else None)
    torch.set_num_threads(threads)
    quiet_lightning()
    store = RunStore(root, foreign_lock_timeout=foreign_lock_timeout)

    def log(message: str) -> None:
        print(f"[worker {index}] {message}", flush=True)

    try:
        work_through(
            specs, store, retry, log, quiet=True, poll_s=poll_s, quiet_siblings=True, ask=ask
        )
    except KeyboardInterrupt:
        pass  # the parent stops everyone; the run stays resumable
    except StoreWriteError as err:  # one line, and the parent exits with the same code
        log(f"error: {err}")
        raise SystemExit(STORE_WRITE_EXIT) from None


__all__ = [
    "POLL_S",
    "check_workers",
    "default_workers",
    "run_experiment",
    "work_through",
]
