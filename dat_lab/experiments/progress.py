"""The ``[i/n]`` of ``dat-lab run``'s lines, with an estimate of the time left.

The estimate is the mean time of the runs finished so far times the runs still to train,
shared among the workers. Finished runs are the ones this process trained (wall time from
claim to finish, data and model set-up included) or, before the first of those, the runs the
store already holds finished (their training time). Runs that were finished when the walk
began are skipped in no time and are not counted as left. No estimate is shown before any
run of the experiment has finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from statistics import fmean

from dat_lab.experiments.records import RunState
from dat_lab.experiments.run_config import RunSpec
from dat_lab.experiments.store import RunStore


class Progress:
    """Labels ``[i/n]`` or ``[i/n, ~12 min left]`` for the runs of one walk."""

    def __init__(
        self,
        specs: Sequence[RunSpec],
        store: RunStore,
        workers: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.n = len(specs)
        self.index = {s.run_id: i for i, s in enumerate(specs)}
        self.workers = max(1, workers)
        self.clock = clock
        self.trained: list[float] = []  # wall seconds of the runs this process trained
        self.stored: list[float] = []  # training seconds of runs finished before the walk
        self.done_before: set[str] = set()
        for spec in specs:
            record = store.get(spec.run_id, lenient=True)
            if record is not None and record.state is RunState.FINISHED:
                self.done_before.add(spec.run_id)
                seconds = (record.final or {}).get("train_time_s")
                if seconds is not None:
                    self.stored.append(float(seconds))
        self._started: dict[str, float] = {}

    def start(self, run_id: str) -> None:
        self._started[run_id] = self.clock()

    def finish(self, run_id: str, trained: bool) -> None:
        """Note the end of a run's turn; ``trained``: it was trained now (not skipped)."""
        began = self._started.pop(run_id, None)
        if trained and began is not None:
            self.trained.append(self.clock() - began)

    def seconds_left(self, run_id: str) -> float | None:
        """The estimate when run ``run_id``'s turn comes (this run included), or None."""
        times = self.trained or self.stored
        if not times:
            return None
        first = self.index[run_id]
        left = sum(
            1 for rid, i in self.index.items() if i >= first and rid not in self.done_before
        )
        return fmean(times) * left / self.workers if left else None

    def label(self, run_id: str) -> str:
        count = f"{self.index[run_id] + 1}/{self.n}"
        left = self.seconds_left(run_id)
        return f"[{count}, ~{duration_text(left)} left]" if left is not None else f"[{count}]"


def duration_text(seconds: float) -> str:
    """``"40 s"``, ``"17 min"``, ``"2 h 05 min"``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


__all__ = ["Progress", "duration_text"]
