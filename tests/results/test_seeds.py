"""Seeds needed in ``dat-lab run --dry-run``: from the spread of the runs already stored."""

from __future__ import annotations

from results_helpers import EXPERIMENTS, add_run, experiment_configs

from dat_lab.cli import main
from dat_lab.experiments.spec import load_experiment
from dat_lab.experiments.store import RunStore
from dat_lab.results.power import seeds_needed
from dat_lab.results.seeds import seeds_needed_lines
from dat_lab.results.sequential import simulate

S2 = [0.80, 0.82, 0.79]
S0 = [0.795, 0.818, 0.783]  # paired differences 0.005, 0.002, 0.007


def _bundled(name: str) -> str:
    """A bundled experiment file's text, its ``extends:`` base made absolute (for copies)."""
    text = (EXPERIMENTS / f"{name}.yaml").read_text()
    return text.replace("extends: ", f"extends: {EXPERIMENTS}/")


def _two_variant_file(tmp_path):
    """offset_range with s0 and s2 only (the same run ids as the bundled file's)."""
    text = _bundled("offset_range")
    head, rest = text.split("variants:\n")
    lines = [line for line in rest.splitlines() if line.startswith(("  s0:", "  s2:"))]
    path = tmp_path / "offset_range.yaml"
    path.write_text(head + "variants:\n" + "\n".join(lines) + "\nbaseline: s2\n")
    return path


def _store(root):
    store = RunStore(root)
    configs = dict(experiment_configs("offset_range"))
    for variant, accs in (("s2", S2), ("s0", S0)):
        for seed, acc in enumerate(accs):
            add_run(store, "offset_range", variant, seed, configs[variant],
                    final={"val/acc1": acc})  # fmt: skip
    return store


def test_seeds_to_a_decision_from_the_stored_spread_and_difference(tmp_path):
    _store(tmp_path)
    exp, _ = load_experiment(_two_variant_file(tmp_path))
    (line,) = seeds_needed_lines(tmp_path, exp.name, exp.design())
    diffs = [0.005, 0.002, 0.007]  # s2 - s0 by seed; s0 - s2 is what the s0 row shows
    sd = 0.0025166114784235805  # their sample std
    rule = simulate(-sum(diffs) / 3, sd).expected_seeds
    fixed = seeds_needed(-sum(diffs) / 3, sd, paired=True)
    assert fixed is not None and rule > 2
    assert f"s0 {rule:.1f} (Δ -0.47 points; fixed design {fixed})" in line
    assert "observed difference" in line and line.endswith("the experiment has 1 seed")
    more = {**exp.design(), "seeds": list(range(int(rule) + 1))}
    assert seeds_needed_lines(tmp_path, exp.name, more) == []  # enough seeds: nothing to say


def test_seeds_needed_is_unknown_before_any_run_finished(tmp_path):
    exp, _ = load_experiment(_two_variant_file(tmp_path))
    (line,) = seeds_needed_lines(tmp_path / "empty", exp.name, exp.design())
    assert line.startswith("seeds needed: unknown")


def test_dry_run_prints_seeds_needed_and_records_no_plan(tmp_path, capsys):
    store = _store(tmp_path / "store")
    path = _two_variant_file(tmp_path)
    assert main(["run", str(path), "--dry-run", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert (
        "seeds to a decision (sequential rule vs s2, observed difference and spread): s0 " in out
    )
    assert store.designs() == {}  # a dry run writes nothing


def test_store_keeps_the_last_plan_of_each_experiment(tmp_path):
    store = RunStore(tmp_path)
    store.write_design("sweep/x", {"baseline": "a", "claims": []})
    store.write_design("sweep/x", {"baseline": "b", "claims": []})
    assert store.designs() == {"sweep/x": {"experiment": "sweep/x", "baseline": "b", "claims": []}}
