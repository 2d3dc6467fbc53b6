"""The ranks of one DDP run: one process claims the run, all of them train it.

Lightning's DDP launcher starts ranks 1..N-1 of a run by running the launching command line
again (``python -m dat_lab.cli run EXP ...``) with ``LOCAL_RANK`` set. Left alone, each rank
would walk the experiment itself and claim a *different* run, and the group would average
the gradients of unrelated runs. So the process that claimed the run (rank 0, the lock
holder) names it in the environment before Lightning starts the other ranks:

    DAT_LAB_RANK_RUN={"store": ROOT, "run_id": ID, "resume": CKPT or null, "leader": PID}

and ``dat-lab`` started with that variable set does nothing but train that run as a follower
(:func:`dat_lab.experiments.runner.follow`): no claim, no store writes (Lightning already
writes checkpoints and logs from global rank 0 only), and it dies with its leader.

Under SLURM the ranks are tasks started by ``srun``, not by Lightning: the job names the run
for every task the same way (see ``dat_lab.launchers.slurm``), and only global rank 0 claims.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dat_lab.experiments.records import RunState

if TYPE_CHECKING:
    from dat_lab.experiments.store import RunStore

RANK_RUN_ENV = "DAT_LAB_RANK_RUN"


@dataclass(frozen=True)
class RankRun:
    """The run a DDP group trains, as rank 0 hands it to the other ranks."""

    store: str
    run_id: str
    resume: str | None
    leader: int  # the pid of rank 0 (the lock holder)

    def to_env(self) -> str:
        return json.dumps(asdict(self))


def from_env() -> RankRun | None:
    """The run to follow, when this process is a rank that its leader started; else None."""
    raw = os.environ.get(RANK_RUN_ENV)
    if not raw:
        return None
    run = RankRun(**json.loads(raw))
    return None if run.leader == os.getpid() else run


@contextlib.contextmanager
def leading(store_root: Path, run_id: str, resume: Path | None) -> Iterator[RankRun]:
    """Name the run in this process's environment while Lightning starts its other ranks;
    afterwards leave this process as it was, so that the next run starts a group of its own.

    Lightning leaves its rendezvous variables (``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_PORT``
    ...) in the launching process's environment and the process group initialised; the next
    run's Trainer would take them as "ranks already started" and talk to the dead group.
    """
    run = RankRun(str(store_root), run_id, str(resume) if resume else None, os.getpid())
    before = dict(os.environ)
    os.environ[RANK_RUN_ENV] = run.to_env()
    try:
        yield run
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        os.environ.clear()
        os.environ.update(before)


LEADER_DOC = "ranks"  # runs/ID/ranks.json: the SLURM job whose rank 0 trains the run now
LEADER_WAIT_S = 600.0


def _job_key() -> dict[str, str]:
    return {k: os.environ.get(k, "") for k in ("SLURM_JOB_ID", "SLURM_RESTART_COUNT")}


def announce(store: RunStore, run_id: str, resume: Path | None) -> None:
    """Rank 0 of ranks that srun started: tell them it holds the run and will train it now."""
    doc = {**_job_key(), "resume": str(resume) if resume else None, "leader": os.getpid()}
    store.write_json(run_id, LEADER_DOC, doc)


def wait_for_leader(
    store: RunStore, run_id: str, timeout_s: float = LEADER_WAIT_S
) -> RankRun | None:
    """A non-zero rank started by srun: wait until rank 0 of this job (and this restart)
    announces the run; None when the run needs no training (finished, failed, held by
    another job), so the rank exits instead of waiting at a rendezvous nobody comes to."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        doc = store.read_json(run_id, LEADER_DOC) or {}
        if {k: doc.get(k) for k in _job_key()} == _job_key():
            return RankRun(str(store.root), run_id, doc.get("resume"), int(doc["leader"]))
        if store.state(run_id) in (RunState.FINISHED, RunState.FAILED):
            return None
        time.sleep(1.0)
    return None


def launched_externally() -> bool:
    """Whether this process's ranks were started by the cluster (SLURM tasks via ``srun``,
    ``torchrun``) rather than by Lightning from this process."""
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1 or "TORCHELASTIC_RUN_ID" in os.environ


def global_rank() -> int:
    """This process's rank in its DDP group as the launcher set it (0 when not distributed)."""
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


__all__ = [
    "RANK_RUN_ENV",
    "announce",
    "wait_for_leader",
    "RankRun",
    "from_env",
    "global_rank",
    "launched_externally",
    "leading",
]
