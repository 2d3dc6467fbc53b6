"""Start local worker processes: ``--workers N`` on the CPU, or ``--gpus 0,1`` one per GPU.

Each worker is the same ``dat-lab sweep`` command (so a worker here is no different from one
joining from another machine) with its own environment: ``CUDA_VISIBLE_DEVICES`` set to its
GPU, ``OMP_NUM_THREADS`` to its share of the CPU cores, and the storage URL in
``DAT_LAB_STORAGE`` rather than on its command line (where ``ps`` would show a password).
Ctrl-C reaches the workers (same process group); each fails and re-enqueues its current
trial and exits, and this parent waits for them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from dat_lab.experiments.runner import die_with_parent
from dat_lab.sweeps.storage import STORAGE_ENV

STOP_GRACE_S = 60.0


def worker_envs(
    n: int, gpus: Sequence[str] | None, storage_url: str | None, cpu_count: int | None = None
) -> list[dict[str, str]]:
    """The environment of each of ``n`` workers."""
    threads = max(1, (cpu_count or os.cpu_count() or 1) // n)
    envs = []
    for i in range(n):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), DAT_LAB_WORKER_INDEX=str(i))
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(gpus[i])
        if storage_url:
            env[STORAGE_ENV] = storage_url
        envs.append(env)
    return envs


def run_workers(worker_args: Sequence[str], envs: Sequence[dict[str, str]], log=print) -> int:
    """Run ``dat-lab sweep WORKER_ARGS`` once per environment; the worst exit status."""
    command = [sys.executable, "-m", "dat_lab.cli", "sweep", *worker_args]
    # Workers die with the launcher (a `kill -9` must not leave them running); a SIGTERM to
    # the launcher stops them as Ctrl-C does.
    procs = [subprocess.Popen(command, env=env, preexec_fn=die_with_parent) for env in envs]
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    log(f"started {len(procs)} workers: pids {', '.join(str(p.pid) for p in procs)}")
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:  # they got the terminal's SIGINT too; this covers `kill -INT <parent>`
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    return max(codes, default=0)


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


__all__ = ["run_workers", "worker_envs"]
