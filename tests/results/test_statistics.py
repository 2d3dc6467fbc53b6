"""Comparisons against the baseline, Holm, and seeds needed, checked against scipy and simulation.

The null-calibration and power tests simulate thousands of tables, so they call the
statistics on seed-indexed values directly; the tests on constructed run stores check that
the report reads the same values from a real store and chooses paired or Welch by the seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from results_helpers import add_run, experiment_configs
from scipy import stats

from dat_lab.experiments.store import RunStore
from dat_lab.results import load_runs, memberships, summarize
from dat_lab.results.analyses.base import Group
from dat_lab.results.compare import (
    ALPHA,
    PAIRED,
    WELCH,
    compare_to_baseline,
    difference,
    holm,
    seed_values,
)
from dat_lab.results.power import fixed_seeds, power, seeds_needed, tost_power

RNG_SEED = 20221


def _series(values, seeds) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=float), index=list(seeds))


def test_paired_t_on_shared_seeds_equals_scipy_ttest_rel():
    a, b = _series([0.71, 0.74, 0.73, 0.70], range(4)), _series([0.69, 0.70, 0.72, 0.66], range(4))
    d = difference(a, b)
    ref = stats.ttest_rel(a.to_numpy(), b.to_numpy())
    ci = ref.confidence_interval(0.95)
    assert d.test == PAIRED
    assert d.p == pytest.approx(ref.pvalue)
    assert (d.ci_low, d.ci_high) == pytest.approx((ci.low, ci.high))
    assert d.diff == pytest.approx(a.mean() - b.mean())


def test_paired_t_matches_seeds_not_storage_order():
    a = _series([0.71, 0.74, 0.73], [0, 1, 2])
    b = _series([0.66, 0.69, 0.70], [2, 0, 1])  # same seeds, stored in another order
    ref = stats.ttest_rel([0.71, 0.74, 0.73], [0.69, 0.70, 0.66])
    assert difference(a, b).p == pytest.approx(ref.pvalue)


def test_welch_when_the_seeds_differ_equals_scipy_ttest_ind():
    a, b = _series([0.71, 0.74, 0.73], [0, 1, 2]), _series([0.69, 0.70, 0.60, 0.66], [0, 1, 3, 4])
    d = difference(a, b)
    ref = stats.ttest_ind(a.to_numpy(), b.to_numpy(), equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert d.test == WELCH
    assert d.p == pytest.approx(ref.pvalue)
    assert (d.ci_low, d.ci_high) == pytest.approx((ci.low, ci.high))


def test_no_test_with_fewer_than_two_seeds_or_no_spread():
    one = difference(_series([0.7], [0]), _series([0.6, 0.65], [0, 1]))
    assert one.test == "" and np.isnan(one.p) and "2 finished seeds" in one.why
    flat = difference(_series([0.7, 0.7], [0, 1]), _series([0.6, 0.6], [0, 1]))
    assert np.isnan(flat.p) and "spread" in flat.why


def test_bootstrap_ci_is_scipys_percentile_bootstrap_of_the_paired_differences():
    a = _series([0.71, 0.74, 0.73, 0.70, 0.75], range(5))
    b = _series([0.69, 0.70, 0.72, 0.66, 0.70], range(5))
    d = difference(a, b, ci="bootstrap", rng=np.random.default_rng(3))
    ref = stats.bootstrap(
        ((a - b).to_numpy(),),
        np.mean,
        n_resamples=2000,
        method="percentile",
        rng=np.random.default_rng(3),
    )
    assert (d.ci_low, d.ci_high) == pytest.approx(
        (ref.confidence_interval.low, ref.confidence_interval.high)
    )
    assert d.p == pytest.approx(stats.ttest_rel(a, b).pvalue)  # the test is still the t-test


def test_holm_matches_its_definition_and_a_worked_example():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(RNG_SEED)
    for _ in range(50):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 9))
        m, order = len(p), np.argsort(p)
        expected = np.empty(m)
        for k, i in enumerate(order):  # max over j <= k of (m - j) p_(j), capped at 1
            expected[i] = min(1.0, max((m - j) * p[order[j]] for j in range(k + 1)))
        assert holm(p) == pytest.approx(expected)
    out = holm([0.01, np.nan, 0.02])
    assert np.isnan(out[1]) and out[[0, 2]] == pytest.approx([0.02, 0.02])  # m counts tests


def test_table_applies_holm_across_its_rows_and_marks_by_adjusted_p():
    seeds = range(4)
    base = _series([0.70, 0.71, 0.69, 0.70], seeds)
    values = {
        "base": base,
        "big": base + _series([0.05, 0.06, 0.055, 0.05], seeds),
        "small": base + _series([0.012, 0.003, 0.010, 0.006], seeds),
        "none": base + _series([0.01, -0.01, 0.005, -0.004], seeds),
    }
    table = compare_to_baseline(values, list(values), "base").set_index("variant")
    raw = {v: stats.ttest_rel(values[v], base).pvalue for v in ("big", "small", "none")}
    assert table.loc[["big", "small", "none"], "p"].to_numpy() == pytest.approx(list(raw.values()))
    assert table.loc[["big", "small", "none"], "p_holm"].to_numpy() == pytest.approx(
        holm(list(raw.values()))
    )
    assert raw["small"] < ALPHA <= table.loc["small", "p_holm"]  # significant only unadjusted
    assert table["significant"].to_dict() == {
        "base": False,
        "big": True,
        "small": False,
        "none": False,
    }
    assert table.loc["base", "why"] == "baseline"


def _null_tables(n_tables: int, n_variants: int, paired: bool, rng) -> list[pd.DataFrame]:
    """Tables whose variants all equal the baseline in truth: seed effects + noise."""
    out = []
    for _ in range(n_tables):
        seed_effect = rng.normal(0, 0.02, size=5)
        values = {}
        for i in range(n_variants + 1):
            seeds = range(5) if paired or i == 0 else range(5 * i, 5 * i + 5)
            shift = seed_effect if paired else rng.normal(0, 0.02, size=5)
            values[f"v{i}"] = _series(0.8 + shift + rng.normal(0, 0.01, size=5), seeds)
        out.append(compare_to_baseline(values, list(values), "v0"))
    return out


@pytest.mark.parametrize("paired", [True, False], ids=["paired", "welch"])
def test_with_no_true_difference_about_5_percent_are_marked(paired):
    # 2,000 one-comparison tables per design: the marked fraction is a binomial proportion
    # with standard error sqrt(0.05 * 0.95 / 2000) = 0.0049; accept 5% +- 4 SE (a false
    # failure has probability 6e-5). Observed with this seed: 4.90% paired, 3.70% Welch
    # (Welch's test is slightly conservative at 5 seeds a side).
    tables = _null_tables(2000, 1, paired, np.random.default_rng(RNG_SEED))
    tests = {t.loc[1, "test"] for t in tables}
    assert tests == {PAIRED if paired else WELCH}
    rate = np.mean([t.loc[1, "significant"] for t in tables])
    print(f"null tables marked significant ({'paired' if paired else 'Welch'}): {rate:.2%}")
    assert abs(rate - 0.05) < 4 * np.sqrt(0.05 * 0.95 / 2000)


def test_holm_keeps_the_familywise_rate_of_null_tables_at_or_below_5_percent():
    # 600 tables of 4 null variants each: unadjusted, about 1 - 0.95^4 = 19% of tables would
    # have a mark (less, as rows share the baseline); with Holm at most 5% (+ 4 SE of 600).
    # Observed with this seed: 4.00% with Holm, 18.5% unadjusted.
    tables = _null_tables(600, 4, True, np.random.default_rng(RNG_SEED + 1))
    any_marked = np.mean([t["significant"].any() for t in tables])
    any_raw = np.mean([(t["p"] < ALPHA).any() for t in tables])
    print(f"null tables with a mark: Holm {any_marked:.2%}, unadjusted {any_raw:.2%}")
    assert any_marked <= 0.05 + 4 * np.sqrt(0.05 * 0.95 / 600)
    assert any_raw > 0.10  # the adjustment is doing something


def test_a_large_true_difference_is_detected_in_every_table():
    rng = np.random.default_rng(RNG_SEED + 2)
    for _ in range(200):
        base = _series(0.80 + rng.normal(0, 0.005, 3), range(3))
        better = _series(0.85 + rng.normal(0, 0.005, 3), range(3))
        table = compare_to_baseline({"b": base, "x": better}, ["b", "x"], "b")
        assert table.loc[1, "significant"] and table.loc[1, "ci_low"] > 0


@pytest.mark.parametrize("paired", [True, False], ids=["paired", "welch"])
def test_power_estimate_matches_a_simulation_of_the_reports_test(paired):
    rng = np.random.default_rng(RNG_SEED + 3)
    sd, effect, n, sims = 1.0, 1.0, 8, 4000
    rejected = 0
    for _ in range(sims):
        if paired:
            diffs = rng.normal(effect, sd, n)  # sd of the seed-wise differences
            p = stats.ttest_1samp(diffs, 0).pvalue
            rejected += p < ALPHA
        else:
            a, b = rng.normal(effect, sd, n), rng.normal(0, sd, n)
            rejected += stats.ttest_ind(a, b, equal_var=False).pvalue < ALPHA
    rate = rejected / sims
    expected = power(n, effect, sd, paired)
    print(f"power ({'paired' if paired else 'Welch'}) n={n}: nct {expected:.3f}, sim {rate:.3f}")
    # Binomial SE at ~0.5-0.8 is <= 0.008; Welch's test is a shade less powerful than the
    # Student test the formula describes, so allow 4 SE. Observed: paired 0.681 (nct) vs
    # 0.690 (simulated), Welch 0.461 vs 0.454.
    assert abs(rate - expected) < 4 * np.sqrt(expected * (1 - expected) / sims)


def test_seeds_needed_is_the_smallest_n_with_80_percent_power():
    for paired in (True, False):
        for effect, sd in ((0.5, 1.0), (0.003, 0.002), (1.4, 0.6)):
            n = seeds_needed(effect, sd, paired)
            assert n is not None and power(n, effect, sd, paired) >= 0.8
            assert n == 2 or power(n - 1, effect, sd, paired) < 0.8
    assert seeds_needed(0.5, 1.0, False) == 64  # the textbook figure for d = 0.5
    assert seeds_needed(0.0, 1.0, True) is None and seeds_needed(0.1, float("nan"), True) is None
    assert seeds_needed(1e-6, 1.0, True) is None  # beyond MAX_SEEDS


# -- on constructed run stores ------------------------------------------------------------


@pytest.fixture(scope="module")
def compared_store(tmp_path_factory):
    """offset_range runs: s2 (baseline) and s0 share seeds 0-3, s4 has seeds 0, 1, 5, 6,
    s8 is far better on seeds 0-3, s16 has one seed."""
    root = tmp_path_factory.mktemp("compared")
    store = RunStore(root)
    configs = dict(experiment_configs("offset_range"))
    accs = {
        "s2": {0: 0.80, 1: 0.82, 2: 0.79, 3: 0.81},
        "s0": {0: 0.79, 1: 0.825, 2: 0.78, 3: 0.815},
        "s4": {0: 0.78, 1: 0.80, 5: 0.77, 6: 0.83},
        "s8": {0: 0.90, 1: 0.925, 2: 0.89, 3: 0.915},
        "s16": {0: 0.70},
    }
    for variant, by_seed in accs.items():
        for seed, acc in by_seed.items():
            add_run(
                store, "offset_range", variant, seed, configs[variant], final={"val/acc1": acc}
            )
    add_run(store, "offset_range", "s0", 4, configs["s0"], state="failed")
    runs = memberships(load_runs(root))
    return Group("offset_range", runs, design={"baseline": "s2"}), accs


def test_store_comparison_uses_paired_on_shared_seeds_and_welch_otherwise(compared_store):
    group, accs = compared_store
    table = group.comparison(list(group.summary["variant"])).set_index("variant")
    base = accs["s2"]
    assert table.loc["s0", "test"] == PAIRED  # its failed seed 4 is not counted
    assert table.loc["s0", "p"] == pytest.approx(
        stats.ttest_rel([accs["s0"][s] for s in range(4)], [base[s] for s in range(4)]).pvalue
    )
    assert table.loc["s4", "test"] == WELCH
    assert table.loc["s4", "p"] == pytest.approx(
        stats.ttest_ind(list(accs["s4"].values()), list(base.values()), equal_var=False).pvalue
    )
    assert table.loc["s16", "test"] == "" and table.loc["s16", "n"] == 1
    assert table.loc["s8", "significant"] and not table.loc["s0", "significant"]
    assert table.loc["s2", "why"] == "baseline"


def test_store_seed_values_are_the_finished_runs_by_seed(compared_store):
    group, accs = compared_store
    values = seed_values(group.runs, group.metric)
    assert set(values) == set(accs)
    for variant, by_seed in accs.items():
        assert values[variant].to_dict() == pytest.approx(by_seed)


def test_default_baseline_is_the_papers_setting_else_the_first_variant(compared_store):
    group, _ = compared_store
    assert Group("offset_range", group.runs).baseline == "s2"  # DAT's s = 2, not first
    others = group.runs[group.runs["variant"].isin(["s0", "s4"])].reset_index(drop=True)
    assert Group("offset_range", others).baseline == "s0"


def test_seed_figures_assume_the_observed_difference_unless_effect_is_given(compared_store):
    """Not the paper's ImageNet difference (0.34 points for s0): the one the seeds show."""
    group, _ = compared_store
    from dat_lab.results import paper
    from dat_lab.results.sequential import simulate

    table = group.comparison(["s2", "s0"], paper.offset_range).set_index("variant")
    diffs = [a - b for a, b in zip([0.79, 0.825, 0.78, 0.815], [0.80, 0.82, 0.79, 0.81],
                                   strict=True)]  # fmt: skip
    sd = np.std(diffs, ddof=1)
    assert table.loc["s0", "effect"] == pytest.approx(np.mean(diffs))
    assert table.loc["s0", "effect_source"] == "observed"
    assert table.loc["s0", "sd"] == pytest.approx(sd)
    assert table.loc["s0", "seeds_needed"] == seeds_needed(np.mean(diffs), sd, True)
    assert table.loc["s0", "seeds_to_decision"] == simulate(np.mean(diffs), sd).expected_seeds
    forced = Group("offset_range", group.runs, effect=0.5).comparison(["s2", "s0"])
    assert forced.loc[1, "effect"] == pytest.approx(0.005)
    assert forced.loc[1, "effect_source"] == "--effect"
    assert forced.loc[1, "seeds_needed"] == seeds_needed(0.005, sd, True)
    assert forced.loc[1, "seeds_to_decision"] == simulate(0.005, sd).expected_seeds


def test_equivalence_power_matches_a_simulation_of_two_one_sided_tests():
    rng = np.random.default_rng(4)
    n, effect, sd, within = 8, 0.2, 1.0, 1.0
    x = rng.normal(effect, sd, (20000, n))
    mean, se = x.mean(axis=1), x.std(axis=1, ddof=1) / np.sqrt(n)
    t_crit = stats.t.ppf(0.95, n - 1)
    simulated = ((mean - t_crit * se > -within) & (mean + t_crit * se < within)).mean()
    assert tost_power(n, effect, sd, within) == pytest.approx(simulated, abs=0.01)
    needed = seeds_needed(effect, sd, True, within=within)
    assert needed is not None and tost_power(needed, effect, sd, within) >= 0.8
    assert tost_power(needed - 1, effect, sd, within) < 0.8
    assert seeds_needed(1.5, sd, True, within=within) is None  # outside the margin


def test_a_fixed_design_tests_equivalence_inside_the_margin_and_a_difference_outside():
    sd, within, margin = 1.0, 1.0, 0.5
    inside = fixed_seeds(0.7, sd, True, margin=margin, within=within)
    assert inside == seeds_needed(0.2, sd, True, within=within)  # TOST about the margin
    outside = fixed_seeds(2.5, sd, True, margin=margin, within=within)
    assert outside == seeds_needed(2.0, sd, True)  # the paired t-test of a difference
    bonferroni = fixed_seeds(2.5, sd, True, alpha=0.025, margin=margin, within=within)
    assert bonferroni is not None and outside is not None and bonferroni > outside
    assert fixed_seeds(0.7, 0.0, True, within=within) is None  # no spread: unknown


def test_accuracy_intervals_stay_inside_the_metric_range():
    runs = pd.DataFrame({"variant": "a", "seed": [0, 1, 2], "state": "finished",
                         "created": 0.0, "run_id": ["r0", "r1", "r2"], "reason": None,
                         "final.val/acc1": [0.99, 1.0, 0.90]})  # fmt: skip
    row = summarize(runs).iloc[0]
    assert row["ci_high"] == 1.0 and 0.0 <= row["ci_low"] < row["mean"]
    loss = summarize(runs.rename(columns={"final.val/acc1": "final.val/loss"}), "final.val/loss")
    assert loss.iloc[0]["ci_high"] > 1.0  # a loss is not bounded above
