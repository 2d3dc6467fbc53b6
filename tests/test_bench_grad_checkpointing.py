"""benchmarks/bench_grad_checkpointing.py still runs, and checkpointing lowers the step's peak."""

from __future__ import annotations

import importlib

BENCH = "bench_grad_checkpointing"


def test_checkpointed_step_holds_less_tensor_memory(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    bench = importlib.import_module(BENCH)
    # dat_micro (0.4M parameters): the activations, not the optimizer state, set the peak.
    plain = bench.measure(False, 8, 64, "cpu", 1, preset="dat_micro")
    ckpt = bench.measure(True, 8, 64, "cpu", 1, preset="dat_micro")
    assert 0 < ckpt["peak_mib"] < plain["peak_mib"]
