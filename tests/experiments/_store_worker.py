"""A separate process for the run-store tests (run as a script, never imported by pytest).

python _store_worker.py hold  ROOT RUN_ID READY_FILE          take the lock, then sleep
python _store_worker.py race  ROOT RUN_ID GO_AT RESULT_FILE N try_lock at time GO_AT
python _store_worker.py churn ROOT RUN_ID READY_FILE          rewrite files until killed
"""

import json
import logging
import random
import sys
import time
from pathlib import Path

from dat_lab.experiments import locking
from dat_lab.experiments.store import RunStore

logging.disable(logging.WARNING)  # "recovered stale lock" is expected here


def hold(store: RunStore, run_id: str, ready: Path) -> None:
    store.lock(run_id)  # never released: the test kills us
    ready.write_text("locked")
    time.sleep(600)


def _widen_race_windows() -> None:
    """Sleep a random few ms after every look at a lock file.

    On two cores the window between "this lock is stale" and "remove it" is too short to hit
    by chance; with this delay, deleting a stale lock without the break marker lets several
    racers win in most rounds (measured: 15 of 15 rounds of 6 racers), so the test can fail.
    """
    observe = locking._observe

    def slow_observe(path: Path):
        seen = observe(path)
        time.sleep(random.uniform(0.0, 0.03))
        return seen

    locking._observe = slow_observe


def race(store: RunStore, run_id: str, go_at: float, result: Path, racers: int) -> None:
    _widen_race_windows()
    while time.time() < go_at - 0.05:
        time.sleep(0.01)
    while time.time() < go_at:  # spin the last moments so the racers start together
        pass
    lock = store.try_lock(run_id)
    if lock is None:
        result.write_text("lost")
        return
    with lock:
        result.write_text("won")
        deadline = time.monotonic() + 60  # hold it until every racer has had its try
        while len(list(result.parent.glob("result*"))) < racers and time.monotonic() < deadline:
            time.sleep(0.02)


def churn(store: RunStore, run_id: str, ready: Path) -> None:
    """Rewrite documents and append journal lines as fast as possible, until SIGKILL."""
    payload = {f"layer{i}": [i * 0.5] * 200 for i in range(300)}  # ~0.5 MB of JSON
    with store.lock(run_id):
        for step in range(10**9):
            store.mark_running(run_id)
            store.write_json(run_id, "cost", {"step": step, **payload})
            store.mark_failed(run_id, f"step {step}")
            if step == 2:
                ready.write_text("churning")


def main() -> None:
    command, root, run_id, arg, *rest = sys.argv[1:]
    store = RunStore(Path(root))
    if command == "hold":
        hold(store, run_id, Path(arg))
    elif command == "race":
        race(store, run_id, float(arg), Path(rest[0]), int(rest[1]))
    elif command == "churn":
        churn(store, run_id, Path(arg))
    else:
        raise SystemExit(f"unknown command {command!r}: {json.dumps(sys.argv)}")


if __name__ == "__main__":
    main()
