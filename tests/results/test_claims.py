"""Claims of experiment files: validated when the file is read, checked against a run store."""

from __future__ import annotations

import pytest
from results_helpers import EXPERIMENTS, add_run, experiment_configs
from scipy import stats

from dat_lab.experiments.spec import load_experiment
from dat_lab.experiments.store import RunStore
from dat_lab.results import load_runs, memberships
from dat_lab.results.analyses.base import Group
from dat_lab.results.claims import CONTRADICTED, INCONCLUSIVE, SUPPORTED, higher_is_better
from dat_lab.results.compare import holm
from dat_lab.results.report import build_report
from dat_lab.schema import ConfigError

# s2 clearly beats s0; s14 clearly beats s2 (against the paper); s16 is within noise of s2.
ACCS = {
    "s2": [0.80, 0.82, 0.79, 0.81],
    "s0": [0.70, 0.73, 0.69, 0.72],
    "s14": [0.86, 0.885, 0.85, 0.87],
    "s16": [0.81, 0.80, 0.80, 0.82],
}
CLAIMS = [
    {"better": "s2", "than": "s0"},
    {"better": "s2", "than": "s14"},
    {"better": "s2", "than": "s16"},
]


def _bundled(name: str) -> str:
    """A bundled experiment file's text, its ``extends:`` base made absolute (for copies)."""
    text = (EXPERIMENTS / f"{name}.yaml").read_text()
    return text.replace("extends: ", f"extends: {EXPERIMENTS}/")


@pytest.fixture(scope="module")
def claims_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("claims")
    store = RunStore(root)
    configs = dict(experiment_configs("offset_range"))
    for variant, accs in ACCS.items():
        for seed, acc in enumerate(accs):
            add_run(
                store, "offset_range", variant, seed, configs[variant], final={"val/acc1": acc}
            )
    return root


def test_supported_contradicted_and_inconclusive_claims_on_a_store(claims_store):
    runs = memberships(load_runs(claims_store))
    group = Group("offset_range", runs, design={"baseline": "s2", "claims": CLAIMS})
    verdicts = {v.than: v for v in group.verdicts}
    assert verdicts["s0"].verdict == SUPPORTED
    assert verdicts["s14"].verdict == CONTRADICTED
    assert verdicts["s16"].verdict == INCONCLUSIVE
    raw = [stats.ttest_rel(ACCS["s2"], ACCS[v]).pvalue for v in ("s0", "s14", "s16")]
    for v, p, p_holm in zip(("s0", "s14", "s16"), raw, holm(raw), strict=True):
        assert verdicts[v].p == pytest.approx(p) and verdicts[v].p_holm == pytest.approx(p_holm)
        assert verdicts[v].diff == pytest.approx(sum(ACCS["s2"]) / 4 - sum(ACCS[v]) / 4)
        assert verdicts[v].n_better == verdicts[v].n_than == 4
    assert "seed noise" in verdicts["s16"].why


def test_claim_on_a_variant_without_runs_is_inconclusive_and_says_why(claims_store):
    runs = memberships(load_runs(claims_store))
    design = {"claims": [{"better": "s2", "than": "s5"}]}
    (verdict,) = Group("offset_range", runs, design=design).verdicts
    assert verdict.verdict == INCONCLUSIVE and "has 4 and 0" in verdict.why


def test_report_writes_the_claims_table_from_the_experiment_file(claims_store, tmp_path):
    exp = tmp_path / "offset_range.yaml"
    text = _bundled("offset_range")
    exp.write_text(
        text.split("\nbaseline:")[0]
        + "\nbaseline: s2\nclaims:\n"
        + "".join(f"  - {{better: {c['better']}, than: {c['than']}}}\n" for c in CLAIMS)
    )
    out = tmp_path / "out"
    build_report(claims_store, [str(exp)], ("md", "csv"), out, log=lambda m: None, jobs=1)
    md = (out / "offset_range" / "claims.md").read_text()
    assert "| s2 better than s0 | supported |" in md
    assert "| s2 better than s14 | contradicted |" in md
    assert "| s2 better than s16 | inconclusive |" in md
    table = (out / "offset_range" / "offset_range.md").read_text()
    assert "Δ vs s2 [95% CI]" in table and "Holm p (test, n / n baseline)" in table
    assert "(paired t, n 4/4)" in table


def test_loss_metrics_are_better_when_lower():
    assert higher_is_better("final.val/acc1") and not higher_is_better("final.val/loss")


def _write(tmp_path, extra: str):
    text = _bundled("stage_placement").split("\nbaseline:")[0]
    path = tmp_path / "x.yaml"
    path.write_text(text + "\n" + extra)
    return path


@pytest.mark.parametrize(
    ("extra", "key", "message"),
    [
        ("baseline: D_99\n", "baseline", "unknown variant 'D_99'; allowed: D_1234, D_234"),
        ("claims: [{better: D_34, than: nonee}]\n", "claims.0.than", "unknown variant 'nonee'"),
        ("claims: [{better: D_34, than: D_34}]\n", "claims.0", "with itself"),
        ("claims: [{better: D_34, worse: none}]\n", "claims.0.worse", "allowed: better, than"),
        ("claims: {better: D_34, than: none}\n", "claims", "expected a list"),
    ],
)
def test_bad_baseline_or_claims_name_the_file_key_and_allowed_variants(
    tmp_path, extra, key, message
):
    path = _write(tmp_path, extra)
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert err.value.key == key and message in err.value.message
    assert str(path) in str(err.value)


def test_bundled_experiments_state_the_papers_baseline_and_claims():
    designs = {
        n: load_experiment(EXPERIMENTS / f"{n}.yaml")[0].design()
        for n in ("offset_range", "stage_placement", "attention_ablation")
    }
    assert designs["offset_range"]["baseline"] == "s2"
    assert {"better": "s2", "than": "s0", "within": 1.0} in designs["offset_range"]["claims"]
    assert designs["stage_placement"]["baseline"] == "D_34"
    assert {"better": "D_34", "than": "none"} in designs["stage_placement"]["claims"]
    assert designs["attention_ablation"]["baseline"] == "DAT"
    assert len(designs["attention_ablation"]["claims"]) == 4
