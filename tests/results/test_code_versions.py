"""Report rows whose runs come from other or several code versions are marked, versions listed."""

from __future__ import annotations

import json

import pytest
from results_helpers import add_run, experiment_configs

from dat_lab.experiments.store import RunStore
from dat_lab.fingerprint import result_code_fingerprint
from dat_lab.results import load_runs
from dat_lab.results.code_versions import code_versions, version_notes
from dat_lab.results.report import build_report

OLD = "0123456789ab"
NOW = result_code_fingerprint()


def _provenance(store: RunStore, run_id: str, code: str | None, resumed: str | None = None):
    prov = {"started": "2026-12-01T10:00:00+00:00",
            "dat_lab": {"commit": "feedfacecafe0011", "dirty": code == OLD}}  # fmt: skip
    if code is not None:
        prov["code"] = {"fingerprint": code}
    if resumed is not None:
        prov["resumed"] = [
            {"started": "2026-12-01T11:00:00+00:00", "code": {"fingerprint": resumed}}
        ]
    (store.run_dir(run_id) / "provenance.json").write_text(json.dumps(prov))


@pytest.fixture
def store(tmp_path):
    """offset_range runs: s0 all of the installed code; s1 one seed of old code; s2 one run
    resumed under the installed code after an old start; s4 from before fingerprints; s8
    without provenance."""
    store = RunStore(tmp_path / "store")
    configs = dict(experiment_configs("offset_range"))
    plan = {
        ("s0", 0): (NOW, None),
        ("s0", 1): (NOW, None),
        ("s1", 0): (NOW, None),
        ("s1", 1): (OLD, None),
        ("s2", 0): (OLD, NOW),
        ("s4", 0): (None, None),
    }
    for (variant, seed), (code, resumed) in plan.items():
        add_run(store, "offset_range", variant, seed, configs[variant], final={"val/acc1": 0.5})
        _provenance(store, f"offset_range-{variant}-{seed}", code, resumed)
    add_run(store, "offset_range", "s8", 0, configs["s8"], final={"val/acc1": 0.5})
    return store


def test_rows_of_other_or_several_code_versions_are_marked(store) -> None:
    table = code_versions(load_runs(store.root)).set_index("variant")
    assert table.loc["s0", "versions"] == (NOW,) and not table.loc["s0", "marked"]
    assert table.loc["s1", "versions"] == (NOW, OLD) and table.loc["s1", "marked"]
    assert table.loc["s2", "versions"] == (OLD, NOW) and table.loc["s2", "marked"]
    assert table.loc["s4", "versions"] == ("unknown",) and table.loc["s4", "marked"]
    assert table.loc["s8", "versions"] == () and not table.loc["s8", "marked"]


def test_a_table_of_installed_code_only_gets_no_mark_and_no_notes(store) -> None:
    runs = load_runs(store.root)
    only_now = runs[runs["variant"] == "s0"]
    assert not code_versions(only_now)["marked"].any()
    assert version_notes(only_now) == []


def test_the_report_marks_the_rows_and_lists_the_versions(store, tmp_path) -> None:
    report = build_report(store.root, ["offset_range"], ("md", "csv"), tmp_path / "out",
                          log=lambda m: None)  # fmt: skip
    md = report.markdown
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines()
            if line.startswith("| s")}  # fmt: skip
    assert {k for k in rows if k.endswith("‡")} == {"s1 ‡", "s2 ‡", "s4 ‡"}
    assert "s0" in rows and "s8" in rows
    assert f"‡ code {NOW}: 4 run(s), installed; started at commit feedfaceca" in md
    assert f"‡ code {OLD}: 2 run(s), not installed; started at commit feedfaceca + " in md
    assert "‡ code unknown: 1 run(s), not recorded (runs from before code fingerprints)" in md
    csv_text = (tmp_path / "out" / "offset_range" / "offset_range.csv").read_text()
    assert "code_versions" in csv_text.splitlines()[0]


def test_the_report_follows_the_installed_code(store, tmp_path, monkeypatch) -> None:
    """Installed code that matches the old runs turns the marks around (cache included)."""
    out = tmp_path / "out"
    build_report(store.root, ["offset_range"], ("md",), out, log=lambda m: None)
    import dat_lab.results.code_versions as cv
    import dat_lab.results.report as report_module

    monkeypatch.setattr(cv, "result_code_fingerprint", lambda: OLD)
    monkeypatch.setattr(report_module, "result_code_fingerprint", lambda: OLD)
    md = build_report(store.root, ["offset_range"], ("md",), out, log=lambda m: None).markdown
    assert "| s0 ‡ |" in md and "| s1 ‡ |" in md
    assert f"‡ code {OLD}: 2 run(s), installed" in md
