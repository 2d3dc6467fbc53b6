"""The anytime-valid t rule: its formula against a direct numerical computation, its verdicts,
and its error guarantees in cheap seeded simulations (the full table: bench_sequential.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from dat_lab.results import sequential
from dat_lab.results.sequential import (
    Verdict,
    confidence_sequence,
    decide,
    decide_family,
    e_value,
    run_rule,
    simulate,
)

ALPHA = 0.05


def _log_mixture(t: np.ndarray, n: np.ndarray) -> np.ndarray:
    """log E at t-statistics ``t`` of ``n`` points, integrated directly: the N(0, 1/c^2)
    mixture over theta of the t statistic's likelihood ratio (noncentral t with n - 1 dof and
    noncentrality sqrt(n) theta against central t; t is the sufficient part of the
    scale-invariant data), by adaptive quadrature."""
    c2 = sequential.MIXING

    def integrand(theta: float) -> np.ndarray:
        prior = math.sqrt(c2 / (2 * math.pi)) * math.exp(-c2 * theta * theta / 2)
        ratio = stats.nct.logpdf(t, n - 1, np.sqrt(n) * theta) - stats.t.logpdf(t, n - 1)
        return prior * np.exp(ratio)

    # |theta| <= 30: the integrand decays at least like the prior (sd 1/c < 2)
    value = integrate.quad_vec(integrand, -30, 30, epsabs=1e-9, epsrel=1e-9, norm="max")[0]
    return np.log(value)


def _random_inputs(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [
        rng.normal(rng.normal(0, 2), rng.uniform(0.3, 3), int(rng.integers(4, 13)))
        for _ in range(count)
    ]


def test_bounds_match_a_direct_numerical_root_of_the_mixture_on_20_inputs():
    inputs = _random_inputs(20, np.random.default_rng(0))
    lows = [confidence_sequence(x)[0][-1] for x in inputs]
    highs = [confidence_sequence(x)[1][-1] for x in inputs]
    formula = np.array(lows + highs)
    assert np.isfinite(formula).all()
    samples = inputs + inputs
    n = np.array([len(x) for x in samples], dtype=float)

    def gap(points: np.ndarray) -> np.ndarray:  # log E(point) - log(1/alpha), every input
        t = np.array([math.sqrt(len(x)) * (x.mean() - p) / x.std(ddof=1)
                      for x, p in zip(samples, points, strict=True)])  # fmt: skip
        return _log_mixture(t, n) - math.log(1 / ALPHA)

    se = np.array([x.std(ddof=1) for x in samples]) / np.sqrt(n)
    # The secant method from two points either side: the root is the integral's own.
    root = optimize.newton(gap, formula + 0.05 * se, x1=formula - 0.05 * se, tol=1e-10)
    np.testing.assert_allclose(root, formula, rtol=0, atol=1e-6)


def test_e_value_is_the_mixture_at_each_look():
    x = np.random.default_rng(3).normal(0.7, 1.5, 9)
    for n in (2, 5, 9):
        y = x[:n] - 0.2
        t = np.array([math.sqrt(n) * y.mean() / y.std(ddof=1)])
        direct = math.exp(_log_mixture(t, np.array([float(n)]))[0])
        assert e_value(x, 0.2)[n - 1] == pytest.approx(direct, rel=1e-7)


def test_decide_intersects_the_interval_of_every_look():
    x = [3.0, -1.0, 4.0, 1.5, 0.5, 2.5, 9.0, 2.0]
    lows, highs = confidence_sequence(x)
    d = decide(x)
    assert d.low == pytest.approx(lows.max()) and d.high == pytest.approx(highs.min())
    assert d.mean == pytest.approx(np.mean(x)) and d.n == 8 and d.looks == 7


def test_one_seed_or_none_is_undecided_with_an_unbounded_interval():
    for x in ([], [5.0]):
        d = decide(x)
        assert d.verdict is Verdict.UNDECIDED
        assert d.low == -math.inf and d.high == math.inf and d.p_value == 1.0


def test_verdicts_follow_the_sign_and_the_equivalence_margin():
    steady = [7.7, 5.0, 12.0, 9.0, 8.0, 6.0]
    assert decide(steady).verdict is Verdict.BETTER
    assert decide([-v for v in steady]).verdict is Verdict.WORSE
    assert decide([1.0, -1.0, 2.0, 0.5]).verdict is Verdict.UNDECIDED
    small = list(np.random.default_rng(1).normal(0.0, 0.1, 20))
    assert decide(small).verdict is Verdict.UNDECIDED
    eq = decide(small, delta=0.5)
    assert eq.verdict is Verdict.EQUIVALENT and -0.5 < eq.low and eq.high < 0.5


def test_a_margin_is_deciding_the_shifted_differences_with_the_interval_in_metric_units():
    x = [7.7, 5.0, 12.0, 9.0, 8.0, 6.0, 8.5]
    for margin in (2.0, 6.0, 12.0):
        with_margin = decide(x, margin=margin)
        shifted = decide([v - margin for v in x])
        assert with_margin.verdict is shifted.verdict
        assert with_margin.p_value == pytest.approx(shifted.p_value)
        assert with_margin.low == pytest.approx(shifted.low + margin)
    assert decide(x, margin=2.0).verdict is Verdict.BETTER
    assert decide(x, margin=12.0).verdict is Verdict.WORSE  # high < 12: not better by 12


def test_the_p_value_is_the_smallest_alpha_that_gives_a_verdict():
    rng = np.random.default_rng(5)
    for effect, delta in ((0.8, 0.0), (-0.8, 0.0), (0.0, 1.0), (1.2, 0.3)):
        x = rng.normal(effect, 1.0, 25)
        p = decide(x, delta).p_value
        assert 0 < p < 0.5
        assert decide(x, delta, alpha=p * 1.001).decided
        assert not decide(x, delta, alpha=p * 0.999).decided


def test_under_the_null_peeking_after_every_seed_keeps_false_verdicts_below_alpha():
    """2,000 Gaussian studies, a look after every seed 2..30: the naive t-test at 0.05
    repeated at each look flags well over 5% of them; the rule stays at or below 5%."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2000, 30))
    rule = run_rule(x)
    false_rate = float((rule.verdicts != Verdict.UNDECIDED.value).mean())
    n = np.arange(1, 31)
    mean = np.cumsum(x, axis=1) / n
    var = (np.cumsum(x**2, axis=1) - n * mean**2) / np.maximum(n - 1, 1)
    t = mean[:, 1:] / np.sqrt(var[:, 1:] / n[1:])
    naive = float((np.abs(t) > stats.t.ppf(0.975, n[1:] - 1)).any(axis=1).mean())
    assert false_rate <= ALPHA
    assert naive > 2 * ALPHA  # the comparison the rule exists for


def test_the_intervals_cover_the_mean_at_every_look_at_once():
    rng = np.random.default_rng(12)
    for noise in (rng.standard_normal((2000, 30)), rng.standard_t(3, (2000, 30))):
        x = 1.5 + 2.0 * noise  # mean 1.5
        path = sequential._path(x, ALPHA)
        covered = ((path.low < 1.5) & (path.high > 1.5)).all(axis=1).mean()
        assert covered >= 1 - ALPHA


def test_the_vectorised_rule_stops_where_decide_first_decides():
    x = np.random.default_rng(2).normal(0.8, 1.0, (40, 15))
    sim = run_rule(x, delta=0.2)
    for row, seeds, verdict in zip(x, sim.seeds, sim.verdicts, strict=True):
        first = next((n for n in range(2, 16) if decide(row[:n], 0.2).decided), 15)
        assert seeds == first and verdict == decide(row[:first], 0.2).verdict.value


def test_expected_seeds_is_seeded_and_falls_with_the_effect():
    one = simulate(1.0, 1.0).expected_seeds
    again, scaled = simulate(1.0, 1.0).expected_seeds, simulate(5.0, 5.0).expected_seeds
    assert one == again == scaled  # seeded and scale-invariant
    assert simulate(2.0, 1.0).expected_seeds < one < simulate(0.5, 1.0).expected_seeds <= 30
    assert simulate(1.0, 1.0).decided > 0.9


def test_holm_reads_each_claim_at_its_step_down_level():
    claims = {
        "steady": [7.7, 5.0, 12.0, 9.0, 8.0, 6.0],
        "noise": [1.0, -1.0, 2.0, 0.5],
        "clear": [3.0, 4.0, 3.5, 5.0, 4.0],
    }
    family = decide_family(claims)
    alone = {k: decide(v) for k, v in claims.items()}
    order = sorted(claims, key=lambda k: alone[k].p_value)
    assert [family[k].level for k in order] == pytest.approx([ALPHA / 3, ALPHA / 2, ALPHA])
    for name, d in family.items():
        assert d.p_value == alone[name].p_value
        assert d.decided == (d.p_adjusted <= ALPHA)
        assert (d.high - d.low) >= (alone[name].high - alone[name].low) - 1e-12
    assert family["noise"].verdict is Verdict.UNDECIDED
    assert family["steady"].verdict is Verdict.BETTER


def test_the_family_wise_error_of_three_null_claims_stays_below_alpha():
    rng = np.random.default_rng(13)
    wrong = 0
    for _ in range(500):
        x = rng.standard_normal((3, 30))
        family = decide_family({str(i): x[i] for i in range(3)})
        wrong += any(d.decided for d in family.values())
    assert wrong / 500 <= ALPHA


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="finite"):
        decide([1.0, math.nan, 2.0])
    with pytest.raises(ValueError, match="alpha"):
        decide([1.0, 2.0], alpha=1.5)
    with pytest.raises(ValueError, match="delta"):
        decide([1.0, 2.0], delta=-1.0)
