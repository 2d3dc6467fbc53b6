"""benchmarks/bench_grad_checkpointing.py still runs, and checkpointing lowers the step's peak."""

from __future__ import annotations

import importlib

BENCH = "bench_grad_checkpointing"


def test_checkpointed_step_holds_less_tensor_memory(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    bench = importlib.import_module(BENCH)
    plain = bench.measure(False, 2, 64, "cpu", 1)
    ckpt = bench.measure(True, 2, 64, "cpu", 1)
    assert 0 < ckpt["peak_mib"] < plain["peak_mib"]
