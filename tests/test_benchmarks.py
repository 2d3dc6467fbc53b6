"""The benchmark scripts still run against the package (they are not timed here)."""

from __future__ import annotations

import argparse
import importlib
import math
import queue
import re
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    """``benchmarks/bench_backbone.py`` as a module its spawned measuring processes can import."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # spawn passes sys.path on to the children
    return importlib.import_module("bench_backbone")


def _tiny_args() -> argparse.Namespace:
    return argparse.Namespace(
        batch=1, size=224, steps=1, repeats=1, device="cpu", threads=1, dtype="fp32"
    )


@pytest.mark.slow
def test_bench_backbone_times_each_part_of_d_and_prints_the_floor(bench, capsys):
    bench.print_parts(_tiny_args())
    text = capsys.readouterr().out
    for part in (
        "offset network",
        "key sampling",
        "relative position term",
        "attention core with learned bias",
        "G: attention core (SDPA)",
        "D: whole module",
        "G: whole module",
    ):
        row = re.search(rf"\| [^|]*{re.escape(part)}[^|]* \| ([0-9.]+) \| ([0-9.]+) \|", text)
        assert row, f"no row for {part!r} in:\n{text}"
        assert float(row.group(1)) > 0
    floor = re.search(r"a floor of ([0-9.]+)x G", text)
    assert floor and float(floor.group(1)) > 1.0, text


@pytest.mark.slow
def test_bench_backbone_measures_d_and_g_in_their_own_processes(bench):
    for name in ("D@14x14x384", "G@14x14x384"):
        images_per_s, peak = bench.measure(name, "fwd+bwd", _tiny_args())
        assert math.isfinite(images_per_s) and images_per_s > 0
        assert math.isfinite(peak)


def test_bench_backbone_reports_timed_images_over_timed_seconds(bench, monkeypatch):
    """2 steps of batch 3 between clock readings 10.0 and 11.5: 6 images in 1.5 s = 4/s (the
    warm-up step before the first reading is not counted)."""
    clock = iter([10.0, 11.5])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    out = queue.SimpleQueue()
    bench._measure("G@14x14x384", "fwd", 3, 224, 2, "cpu", 1, "fp32", out)
    images_per_s, _peak = out.get_nowait()
    assert images_per_s == pytest.approx(4.0)


@pytest.mark.slow
def test_bench_backbone_compares_dat_pp_tiny_with_dat_tiny_in_one_run(bench, capsys):
    argv = "--pairs datpp --batch 1 --size 64 --steps 1 --repeats 1 --threads 1 --device cpu"
    assert bench.main(argv.split()) == 0  # no target on this pair
    text = capsys.readouterr().out
    for mode in ("fwd", "fwd+bwd"):
        for name in ("dat_pp_tiny", "dat_tiny"):
            assert re.search(rf"\| {name} \| {re.escape(mode)} \| [0-9.]+ ", text), text
        ratio = re.search(rf"dat_pp_tiny vs dat_tiny {re.escape(mode)}: ([0-9.]+)x the time", text)
        assert ratio and float(ratio.group(1)) > 0, text
    assert "swin_tiny" not in text and "D's parts" not in text  # only the pair asked for


def test_bench_sequential_table_keeps_the_error_bounds_and_beats_equal_power(monkeypatch, capsys):
    """2,000 studies: the rule's false-positive rate <= 5% while the naive repeated t-test's is
    above it, coverage >= 95% at every look at once, and at 1 sd fewer expected seeds than a
    fixed-n t-test of equal power."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = importlib.import_module("bench_sequential")
    assert bench.main(["--studies", "2000", "--seed", "1"]) == 0
    text = capsys.readouterr().out
    for kind in ("gaussian", "t3"):
        null = re.search(rf"\| {kind} \| ([0-9.]+) \| ([0-9.]+) \| [0-9.]+ \| ([0-9.]+) "
                         rf"\| ([0-9.]+) \|", text)  # fmt: skip
        assert null, text
        fpr, naive, family, covered = map(float, null.groups())
        assert fpr <= 0.05 < naive and family <= 0.05 and covered >= 0.95
        one = re.search(rf"\| {kind} \| 1 \| [0-9.]+ \| ([0-9.]+) \| ([0-9]+) \|", text)
        assert one and float(one.group(1)) < int(one.group(2)), text
    wrong = re.search(r"any wrong verdict .* in ([0-9.]+) of them", text)
    assert wrong and float(wrong.group(1)) <= 0.05, text


@pytest.mark.slow
def test_bench_neighborhood_prints_exactness_within_target_and_the_d_position_candidate(
    monkeypatch, capsys
):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench_n = importlib.import_module("bench_neighborhood")
    monkeypatch.setattr(bench_n, "D_STAGES", [(7, 8)])  # the smallest shape: seconds
    assert bench_n.print_exactness()
    bench_n.print_d_position(argparse.Namespace(batch=1, steps=1, repeats=1))
    text = capsys.readouterr().out
    assert "largest float64 difference" in text and "ok" in text
    row = re.search(r"\| 7\^2 \| 8 \| [^|]+ \| [^|]+ \| ([0-9.e+-]+) \| ([0-9.e+-]+) \|", text)
    assert row and max(float(row.group(1)), float(row.group(2))) < 1e-10, text
