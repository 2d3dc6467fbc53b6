"""A ``with`` block that does one thing every few seconds from a background thread.

The shape of the run lock's lease renewal (:class:`~dat_lab.experiments.locking.LeaseKeeper`)
and a sweep trial's heartbeat (:class:`~dat_lab.sweeps.liveness.Heartbeat`): a daemon thread
that waits ``interval_s`` between ticks, stops when the block ends or a tick says so, and is
joined on exit.
"""

from __future__ import annotations

import threading
from typing import Any


class Periodic:
    """Calls :meth:`tick` every ``interval_s`` seconds (never if None) inside ``with``."""

    def __init__(self, interval_s: float | None, name: str) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def tick(self) -> bool:
        """Do the thing once; False stops the thread."""
        raise NotImplementedError

    def _loop(self) -> None:
        while self.interval_s is not None and not self._stop.wait(self.interval_s):
            if not self.tick():
                return

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


__all__ = ["Periodic"]
