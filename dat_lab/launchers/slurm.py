"""``--launcher slurm``: the runs of an experiment, or the workers of a sweep, as SLURM jobs.

Submission goes through submitit: one job array, one task per pending run (``dat-lab run``)
or per worker (``dat-lab sweep``). Each task is a process of this same package on a cluster
node, working on the same store (a shared filesystem; a sweep's study in a journal file on it
or in PostgreSQL) exactly as a local worker does, so the locks, leases and resume logic are
the local ones. Each job writes its logs under ``STORE/slurm/JOBID/``.

A run task (:class:`RunTask`) is submitit-checkpointable: at its time limit or on preemption
SLURM sends USR2 (``signal_delay_s`` before the kill); submitit calls :meth:`RunTask.checkpoint`
(which writes the live trainer's ``last.ckpt``) and requeues the task, and the requeued task
resumes the run from that checkpoint. Lightning's own SLURM auto-requeue is turned off
(``train.trainer``) so that only one of them acts. A task killed without warning (``scancel``,
``scontrol requeue``, a node lost) resumes from the last checkpoint written.

A submitted run records its job in the store (``runs/ID/slurm_job.json``); submitting again
skips every run whose recorded job is still pending or running, so rerunning the command never
submits a run twice. Job states come from ``squeue`` (the controller), not ``sacct``: many
small clusters keep no accounting database.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import submitit

from dat_lab.experiments import ranks
from dat_lab.experiments.records import RunIdentity, RunState
from dat_lab.experiments.resources import SlurmResources
from dat_lab.experiments.run_callbacks import SaveOnSignal
from dat_lab.experiments.run_config import RunConfig, RunSpec
from dat_lab.experiments.runner import follow, quiet_lightning, run_label, run_spec
from dat_lab.experiments.store import RunStore
from dat_lab.schema import ConfigError

JOB_DOC = "slurm_job"  # runs/ID/slurm_job.json: the job last submitted for the run
LOG_DIR = "slurm"  # STORE/slurm/JOBID/: submitit's pickles and each task's stdout/stderr
ALIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED")
Log = Callable[[str], None]


def check_available() -> None:
    """A clear error, before anything is submitted, where SLURM cannot be reached."""
    try:
        subprocess.run(["sinfo", "-h", "-o", "%P"], check=True, capture_output=True, timeout=30)
    except FileNotFoundError:
        raise ConfigError("no SLURM here: `sinfo` is not on PATH", "--launcher") from None
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        detail = getattr(err, "stderr", b"") or b""
        raise ConfigError(
            f"SLURM does not answer (`sinfo` failed: {detail.decode().strip() or err})",
            "--launcher",
        ) from None


def executor(
    store_root: Path, resources: SlurmResources, name: str, tasks_per_node: int = 1
) -> submitit.SlurmExecutor:
    """A submitit executor for ``resources``; each job logs to ``STORE/slurm/JOBID/``."""
    ex = submitit.SlurmExecutor(folder=Path(store_root).absolute() / LOG_DIR / "%j")
    params: dict[str, Any] = {
        "job_name": name,
        "nodes": resources.nodes,
        "ntasks_per_node": tasks_per_node,
        "cpus_per_task": resources.cpus_per_task,
        "time": resources.time_min,
        "signal_delay_s": min(90, max(10, resources.time_min * 60 // 10)),
        "additional_parameters": {"requeue": True},
    }
    if resources.gpus_per_node:
        params["gpus_per_node"] = resources.gpus_per_node
    optional = {"partition": resources.partition, "account": resources.account,
                "qos": resources.qos}  # fmt: skip
    params.update({k: v for k, v in optional.items() if v is not None})
    if resources.mem_gb is not None:
        params["mem"] = f"{int(resources.mem_gb * 1024)}M"
    ex.update_parameters(**params)
    return ex


def job_states(job_ids: Sequence[str]) -> dict[str, str]:
    """``{job id: state}`` of the jobs the controller still knows (``squeue``); a job it no
    longer lists has ended long ago and is absent."""
    if not job_ids:
        return {}
    out = subprocess.run(
        ["squeue", "-h", "--states=all", "-r", "-o", "%i|%A|%T", "-j", ",".join(job_ids)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    states: dict[str, str] = {}
    for line in out.stdout.splitlines():
        task, array, state = (part.strip() for part in line.split("|"))
        states[task] = state
        states.setdefault(array, state)  # submitit names an array of one task by its job id
    return states


def recorded_job(store: RunStore, run_id: str) -> dict[str, Any] | None:
    """The job last submitted for the run (``slurm_job.json``), or None."""
    return store.read_json(run_id, JOB_DOC) if store.get(run_id) is not None else None


def submit_runs(
    specs: Sequence[RunSpec],
    store: RunStore,
    resources: SlurmResources,
    retry_failed: bool = False,
    log: Log = print,
) -> list[str]:
    """Submit one array task per run that needs training and has no live job; the job ids."""
    _check_run_resources(specs, resources)
    todo, retry = [], {}
    states = job_states([j["job_id"] for s in specs if (j := recorded_job(store, s.run_id))])
    for spec in specs:
        record = store.get(spec.run_id)
        job = recorded_job(store, spec.run_id)
        if job and states.get(job["job_id"]) in ALIVE:
            log(f"{spec.variant} seed {spec.seed} ({spec.run_id}): job {job['job_id']} "
                f"{states[job['job_id']].lower()}; not submitted again")  # fmt: skip
            continue
        if record is not None and record.state is RunState.FINISHED:
            continue
        if record is not None and record.state is RunState.FAILED:
            if not retry_failed:
                continue
            retry[spec.run_id] = record.attempts
        todo.append(spec)
    if not todo:
        log("nothing to submit")
        return []
    for spec in todo:  # pending in the store: `--status` and other hosts see them
        store.create(spec.run_id, spec.config.to_dict(), identity_of(spec))
    train = todo[0].config.train
    ex = executor(store.root, resources, todo[0].experiment, tasks_per_node=train.devices)
    ex.update_parameters(array_parallelism=len(todo))
    task = RunTask(str(store.root.absolute()), store.foreign_lock_timeout, retry)
    jobs = ex.map_array(task, [s.run_id for s in todo])
    when = datetime.now(UTC).isoformat(timespec="seconds")
    for spec, submitted in zip(todo, jobs, strict=True):
        doc = {"job_id": submitted.job_id, "submitted": when,
               "log_dir": str(submitted.paths.folder)}  # fmt: skip
        store.write_json(spec.run_id, JOB_DOC, doc)
    log(f"submitted job array {jobs[0].job_id.split('_')[0]}: {len(jobs)} run(s); logs under "
        f"{store.root / LOG_DIR}")  # fmt: skip
    return [j.job_id for j in jobs]


def _check_run_resources(specs: Sequence[RunSpec], resources: SlurmResources) -> None:
    """One array has one shape: every run's DDP layout must match the resources."""
    layouts = {(s.config.train.devices, s.config.train.num_nodes) for s in specs}
    if len(layouts) > 1:
        raise ConfigError(
            f"runs differ in (train.devices, train.num_nodes): {sorted(layouts)}; one job array "
            "has one shape: submit them as separate experiments",
            "train.devices",
        )
    ((devices, nodes),) = layouts
    if nodes != resources.nodes:
        raise ConfigError(
            f"got {resources.nodes} but the runs have train.num_nodes={nodes}; they must match",
            "slurm.nodes",
        )
    if resources.gpus_per_node and resources.gpus_per_node != devices:
        raise ConfigError(
            f"got {resources.gpus_per_node} but the runs use train.devices={devices} per node "
            "(one task per device); they must match",
            "slurm.gpus_per_node",
        )


def identity_of(spec: RunSpec) -> RunIdentity:
    return RunIdentity(spec.experiment, spec.variant, spec.seed)


class RunTask(submitit.helpers.Checkpointable):
    """One array task: train one run of the store (or follow its rank 0, under DDP)."""

    def __init__(self, store_root: str, lease_s: float, retry: Mapping[str, int]) -> None:
        self.store_root, self.lease_s, self.retry = store_root, lease_s, dict(retry)
        self._saver: Any = None

    def __call__(self, run_id: str) -> str:
        quiet_lightning()
        store = RunStore(self.store_root, foreign_lock_timeout=self.lease_s)
        record = store.require(run_id)
        spec = RunSpec(record.identity.experiment, record.identity.variant,
                       record.identity.seed, RunConfig.from_dict(record.config))  # fmt: skip
        if ranks.global_rank() != 0:  # a DDP rank started by srun: train with rank 0
            announced = ranks.wait_for_leader(store, run_id)
            return "followed" if announced is not None and follow(announced) == 0 else "idle"
        self._saver = SaveOnSignal()
        outcome = run_spec(spec, store, self.retry, label=run_label(spec), quiet=True,
                           extra_callbacks=[self._saver])  # fmt: skip
        # "busy": a live process elsewhere holds the run and will finish it.
        print(f"{run_label(spec)}: {outcome.result} {outcome.detail}", flush=True)
        return outcome.result.value

    def checkpoint(self, run_id: str) -> submitit.helpers.DelayedSubmission:
        """Time limit or preemption: write the run's checkpoint now, then requeue."""
        if self._saver is not None:
            self._saver.save()
        return submitit.helpers.DelayedSubmission(
            RunTask(self.store_root, self.lease_s, self.retry), run_id
        )

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_saver": None}  # a live trainer does not pickle


def status_lines(specs: Sequence[RunSpec], store: RunStore) -> list[str]:
    """One line per run: its stored state and its SLURM job's id and state."""
    jobs = {s.run_id: recorded_job(store, s.run_id) for s in specs}
    states = job_states([j["job_id"] for j in jobs.values() if j])
    lines = [
        "| variant | seed | run id | run state | job | job state |",
        "|---|---:|---|---|---|---|",
    ]
    for spec in specs:
        record = store.get(spec.run_id, lenient=True)
        run_state = store.live_state(record).value if record else "pending"
        job = jobs[spec.run_id]
        job_id = job["job_id"] if job else "-"
        job_state = states.get(job_id, "ENDED (no longer listed)") if job else "-"
        lines.append(
            f"| {spec.variant} | {spec.seed} | {spec.run_id} | {run_state} | {job_id} | "
            f"{job_state} |"
        )
    return lines


def wait(job_ids: Sequence[str], poll_s: float = 5.0, log: Log = print) -> None:
    """Block until none of ``job_ids`` is pending or running any more."""
    said = ""
    while True:
        states = job_states(job_ids)
        alive = {j: s for j, s in states.items() if s in ALIVE}
        if not alive:
            return
        line = f"waiting for {len(alive)} job(s): " + ", ".join(sorted(set(alive.values())))
        if line != said:
            log(line)
            said = line
        time.sleep(poll_s)


def submit_workers(
    argv: Sequence[str],
    n_workers: int,
    store_root: Path,
    resources: SlurmResources,
    name: str,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """Submit ``n_workers`` array tasks, each running the sweep worker command ``argv``."""
    ex = executor(store_root, resources, name)
    ex.update_parameters(array_parallelism=n_workers)
    task = WorkerTask(list(argv), dict(env or {}))
    jobs = ex.map_array(task, list(range(n_workers)))
    return [j.job_id for j in jobs]


class WorkerTask(submitit.helpers.Checkpointable):
    """One sweep worker: the local worker's command line, run in the job (requeued at its
    time limit: a worker stopped by SIGTERM fails and re-enqueues its trial, and the
    requeued worker goes on with the study)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv, self.env = argv, env

    def __call__(self, index: int) -> int:
        env = {**os.environ, **self.env, "DAT_LAB_WORKER_INDEX": str(index)}
        return subprocess.run(self.argv, env=env, check=False).returncode


__all__ = [
    "JOB_DOC",
    "LOG_DIR",
    "RunTask",
    "WorkerTask",
    "check_available",
    "job_states",
    "recorded_job",
    "status_lines",
    "submit_runs",
    "submit_workers",
    "wait",
]
