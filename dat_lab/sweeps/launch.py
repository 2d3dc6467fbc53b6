"""Start local worker processes: ``--workers N`` on the CPU, or ``--gpus 0,1`` one per GPU
(one per ``train.devices`` GPUs for DDP trials: ``--gpus 0,1,2,3 train.devices=2`` is two
workers of two GPUs each).

Each worker is the same ``dat-lab sweep`` command (so a worker here is no different from one
joining from another machine) with its own environment: ``CUDA_VISIBLE_DEVICES`` set to its
GPUs, ``OMP_NUM_THREADS`` to its share of the CPU cores, and the storage URL in
``DAT_LAB_STORAGE`` rather than on its command line (where ``ps`` would show a password).

The launcher itself neither opens the storage nor creates the study: each worker creates or
loads it under the study lock (``worker.work``), the one place where that happens. Ctrl-C
reaches the workers (same process group); each fails and re-enqueues its current trial and
exits, and this parent waits for them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dat_lab.experiments.processes import die_with_parent
from dat_lab.schema import ConfigError
from dat_lab.sweeps.liveness import Liveness
from dat_lab.sweeps.spec import Study
from dat_lab.sweeps.status import load_stored_study, status_text
from dat_lab.sweeps.storage import STORAGE_ENV, StorageLocation

STOP_GRACE_S = 60.0
WORKER_INDEX_ENV = "DAT_LAB_WORKER_INDEX"  # set: this process is a launched worker
# What a trial on a GPU needs, unless the user gave it: grid_sample's CUDA backward (used by
# deformable attention) has no deterministic kernel and raises under deterministic=True.
GPU_OVERRIDES = {"train.accelerator": "gpu", "train.deterministic": False}


def gpu_overrides(given: Mapping[str, Any]) -> dict[str, Any]:
    """The trial overrides that ``--gpus`` adds: those of GPU_OVERRIDES not in ``given``."""
    return {k: v for k, v in GPU_OVERRIDES.items() if k not in given}


def gpus_per_worker(study: Study, gpus: Sequence[str]) -> int:
    """``--gpus``: each worker gets ``train.devices`` of the listed GPUs for its (DDP) trials;
    the list must split into such groups."""
    devices = study.base.train.devices * study.base.train.num_nodes
    if study.base.train.num_nodes != 1:
        raise ConfigError(
            f"got {study.base.train.num_nodes}; --gpus starts workers on this machine only: "
            "use --launcher slurm for multi-node trials",
            "train.num_nodes",
        )
    if len(gpus) % devices:
        raise ConfigError(
            f"got {devices} per trial but --gpus lists {len(gpus)} GPU(s); --gpus starts one "
            f"worker per {devices} GPUs (each sees only its own, CUDA_VISIBLE_DEVICES), so it "
            "must list a multiple of train.devices",
            "train.devices",
        )
    return devices


def override_arg(key: str, value: Any) -> str:
    """``KEY=VALUE`` as the command line writes it (YAML booleans are lower case)."""
    return f"{key}={str(value).lower() if isinstance(value, bool) else value}"


@dataclass(frozen=True)
class WorkerCommands:
    """The local workers of one launch: one command line for all, one environment each."""

    argv: list[str]
    envs: list[dict[str, str]]


def build_worker_commands(
    study_path: Path,
    options: Sequence[str],
    overrides: Sequence[str],
    location: StorageLocation,
    gpus: Sequence[str] | None,
    n_workers: int,
    cpu_count: int | None = None,
    devices: int = 1,
) -> WorkerCommands:
    """``dat-lab sweep --study STUDY_PATH OPTIONS [--storage JOURNAL] OVERRIDES`` for each
    worker. ``options`` must not hold ``--workers``/``--gpus`` (a worker is one process), and
    ``overrides`` are all trial overrides, the ones ``--gpus`` adds included, each once."""
    argv = [sys.executable, "-m", "dat_lab.cli", "sweep", "--study", str(study_path), *options]
    if location.url is None:  # a database URL goes in the environment, never on argv
        argv += ["--storage", str(location.journal)]
    argv += overrides
    n = len(gpus) // devices if gpus else n_workers
    return WorkerCommands(argv, worker_envs(n, gpus, location.url, cpu_count, devices))


def worker_envs(
    n: int,
    gpus: Sequence[str] | None,
    storage_url: str | None,
    cpu_count: int | None = None,
    devices: int = 1,
) -> list[dict[str, str]]:
    """The environment of each of ``n`` workers (worker i gets the ``devices`` GPUs
    ``gpus[i * devices : (i + 1) * devices]`` alone)."""
    threads = max(1, (cpu_count or os.cpu_count() or 1) // n)
    envs = []
    for i in range(n):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), **{WORKER_INDEX_ENV: str(i)})
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[i * devices : (i + 1) * devices])
        if storage_url:
            env[STORAGE_ENV] = storage_url
        envs.append(env)
    return envs


def launch(
    workers: WorkerCommands, study: Study, location: StorageLocation, liveness: Liveness, log=print
) -> int:
    """Run the workers, then print the study's status, judging liveness as the
    workers do (``liveness`` from ``--heartbeat``); the worst exit status."""
    code = run_workers(workers, log)
    log(status_text(study, load_stored_study(study, location), location, liveness))
    return code


def run_workers(workers: WorkerCommands, log=print) -> int:
    """Run one process per environment of ``workers``; the worst exit status."""
    # Workers die with the launcher (a `kill -9` must not leave them running); a SIGTERM to
    # the launcher stops them as Ctrl-C does.
    procs = [
        subprocess.Popen(workers.argv, env=env, preexec_fn=die_with_parent) for env in workers.envs
    ]
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    log(f"started {len(procs)} workers: pids {', '.join(str(p.pid) for p in procs)}")
    try:
        return max((p.wait() for p in procs), default=0)
    except KeyboardInterrupt:
        _stop(procs)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop(procs: Sequence[subprocess.Popen]) -> None:
    """Ctrl-C each worker still running (they got the terminal's SIGINT too; this covers
    ``kill -INT <launcher>``) and wait for it to re-enqueue its trial; kill it if it hangs."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            p.kill()


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


__all__ = [
    "GPU_OVERRIDES",
    "WorkerCommands",
    "gpus_per_worker",
    "gpu_overrides",
    "launch",
    "override_arg",
    "build_worker_commands",
    "run_workers",
    "worker_envs",
]
