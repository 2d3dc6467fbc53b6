"""Train one round of runs and wait for it: the executor that ``run --until-decided`` and
``sweep --race`` hand their rounds to.

A round is trained exactly as ``dat-lab run`` trains an experiment: locally by the worker pool
(``--workers``), or as SLURM array tasks, waited for. The sequential loops above it only decide
which runs a round holds; this is the one place that says how a round is trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dat_lab.experiments.pool import run_experiment
from dat_lab.experiments.records import RunState
from dat_lab.experiments.resources import SlurmResources
from dat_lab.experiments.run_config import RunSpec
from dat_lab.experiments.runner import stored_outcome
from dat_lab.experiments.stale import other_code
from dat_lab.experiments.store import RunStore
from dat_lab.launchers import slurm


@dataclass(frozen=True)
class RoundExecutor:
    """``executor(specs) -> bool``: trains the runs of ``specs`` that need it and says whether
    every one of them has finished. ``slurm``: submit array tasks instead of training here."""

    store: RunStore
    workers: int = 1
    retry_failed: bool = False
    rerun_stale: bool = False
    slurm: SlurmResources | None = None

    def __call__(self, specs: Sequence[RunSpec]) -> bool:
        todo = [s for s in specs if not finished_by_this_code(s, self.store)]
        if not todo:
            return True
        if self.slurm is not None:
            return self._on_slurm(todo, self.slurm)
        outcomes = run_experiment(
            todo,
            self.store,
            workers=min(self.workers, len(todo)),
            retry_failed=self.retry_failed,
            rerun_stale=self.rerun_stale,
        )
        return all(o.ok for o in outcomes)

    def _on_slurm(self, todo: list[RunSpec], resources: SlurmResources) -> bool:
        slurm.submit_runs(todo, self.store, resources, retry_failed=self.retry_failed)
        # Wait on every run's recorded job, not only the ones submitted now: a run whose job
        # an earlier, interrupted command submitted is still running and is not resubmitted.
        jobs = [j["job_id"] for s in todo if (j := slurm.recorded_job(self.store, s.run_id))]
        slurm.wait(jobs)
        return all(stored_outcome(s, self.store).ok for s in todo)


def finished_by_this_code(spec: RunSpec, store: RunStore) -> bool:
    """A run the installed code finished: a replayed round passes it by without a word (a run
    other code made still goes to the pool, which names it, or retrains it with
    ``--rerun-stale``)."""
    record = store.get(spec.run_id)
    return (
        record is not None
        and record.state is RunState.FINISHED
        and other_code(record.provenance) is None
    )


__all__ = ["RoundExecutor", "finished_by_this_code"]
