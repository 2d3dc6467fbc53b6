"""Claims of an experiment file judged by the sequential rule: supported, contradicted, undecided.

A claim ``{better: s2, than: s0}`` says that variant ``s2`` scores better than ``s0`` on the
report's metric (higher, or lower for a loss or error metric); ``by: m`` asks for more than
``m`` points; ``within: w`` on a better claim, or ``{same: A, as: B, within: w}``, makes
"the two are within ``w`` points" a decision too (points of the metric: percent for an
accuracy). Every claim is judged by :mod:`dat_lab.results.sequential` on the seeds both
variants finished, in seed order, with Holm over the experiment's claims, however many seeds
the experiment has and however often it was looked at (docs/decisions.md):

- *supported*: the rule's verdict is the claimed one (better; equivalent for a same claim);
- *contradicted*: the opposite one (worse; better or worse for a same claim);
- *equivalent*: a better claim with ``within`` whose two variants are within the margin;
- *undecided*: no verdict yet (the reason is given), including too few seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from dat_lab.results import sequential
from dat_lab.results.power import fixed_and_sequential, seeds_to_decision_text
from dat_lab.results.sequential import Decision, Verdict
from dat_lab.results.tables import Table, difference_range, points_scale
from dat_lab.text import DASH


class Outcome(StrEnum):
    SUPPORTED = "supported"
    CONTRADICTED = "contradicted"
    EQUIVALENT = "equivalent"
    UNDECIDED = "undecided"


def higher_is_better(metric: str) -> bool:
    """Accuracy-like metrics grow; losses and error rates shrink."""
    name = metric.rsplit("/", 1)[-1].lower()
    return not any(word in name for word in ("loss", "err"))


@dataclass(frozen=True)
class ClaimTerms:
    """One claim in the report's terms: ``first`` against ``second``; ``same``: an
    equivalence claim; ``by`` / ``within``: margins in points of the metric (0: none)."""

    first: str
    second: str
    same: bool = False
    by: float = 0.0
    within: float = 0.0

    @classmethod
    def of(cls, claim: Mapping[str, Any] | Any) -> ClaimTerms:
        """From an experiment design's claim mapping (the file's own keys: ``better``,
        ``than``, ``by``, ``within``; ``same``, ``as``, ``within``) or a parsed claim object
        with those attributes (``a`` / ``b`` / ``kind`` also read)."""
        get = claim.get if isinstance(claim, Mapping) else lambda k, d=None: getattr(claim, k, d)
        same = get("same") is not None or str(get("kind", "")) == "same"
        first = get("a") or (get("same") if same else get("better"))
        second = get("b") or (get("as") if same else get("than"))
        return cls(str(first), str(second), same, float(get("by") or 0.0),
                   float(get("within") or 0.0))  # fmt: skip

    def text(self) -> str:
        if self.same:
            return f"{self.first} same as {self.second} within {self.within:g}"
        text = f"{self.first} better than {self.second}"
        text += f" by {self.by:g}" if self.by else ""
        return text + (f" (or within {self.within:g})" if self.within else "")


@dataclass(frozen=True)
class ClaimVerdict:
    """One claim's outcome and the numbers behind it. ``decision`` is in metric units, signed
    so that positive is better (``sign`` = -1 for a loss); ``diff``, ``ci_low``, ``ci_high``
    are ``first - second`` in metric units, the interval clipped to the metric's range."""

    claim: ClaimTerms
    outcome: Outcome
    decision: Decision
    sign: float
    n_first: int
    n_second: int
    sd: float
    effect: float  # the difference the seed figures assume (signed, metric units)
    effect_source: str  # "observed" or "--effect"
    seeds_to_decision: float
    decided_share: float
    fixed_seeds: float
    ci_low: float
    ci_high: float
    why: str = ""

    @property
    def diff(self) -> float:
        return self.sign * self.decision.mean


def _outcome(claim: ClaimTerms, verdict: Verdict) -> Outcome:
    if verdict is Verdict.UNDECIDED:
        return Outcome.UNDECIDED
    if claim.same:
        return Outcome.SUPPORTED if verdict is Verdict.EQUIVALENT else Outcome.CONTRADICTED
    return {Verdict.BETTER: Outcome.SUPPORTED, Verdict.WORSE: Outcome.CONTRADICTED,
            Verdict.EQUIVALENT: Outcome.EQUIVALENT}[verdict]  # fmt: skip


def paired_differences(first: pd.Series, second: pd.Series, sign: float = 1.0) -> np.ndarray:
    """``sign * (first - second)`` on the seeds both have, in seed order (the rule's looks)."""
    shared = sorted(set(first.index) & set(second.index))
    return sign * (first.loc[shared].to_numpy(float) - second.loc[shared].to_numpy(float))


def judge(
    claims: Sequence[ClaimTerms], values: Mapping[str, pd.Series], metric: str
) -> list[tuple[np.ndarray, Decision]]:
    """Each claim's paired differences (metric units, signed so that positive is better) and
    the rule's decision on them, Holm over ``claims``: what the report and ``--until-decided``
    both read. ``values``: seed-indexed values per variant (``seed_values``)."""
    scale = points_scale(metric)
    sign = 1.0 if higher_is_better(metric) else -1.0
    empty = pd.Series(dtype=float)
    diffs = {
        str(i): paired_differences(values.get(c.first, empty), values.get(c.second, empty), sign)
        for i, c in enumerate(claims)
    }
    family = sequential.decide_family(
        diffs,
        deltas={str(i): c.within / scale for i, c in enumerate(claims)},
        margins={str(i): c.by / scale for i, c in enumerate(claims)},
    )
    return [(diffs[k], family[k]) for k in diffs]


def evaluate(
    claims: Sequence[Mapping[str, Any] | Any],
    values: Mapping[str, pd.Series],
    metric: str,
    effect: float | None = None,
) -> list[ClaimVerdict]:
    """The verdict of each claim, from seed-indexed values per variant (``seed_values``);
    ``effect``: the difference (points for an accuracy) the seed figures assume, None: the
    observed one."""
    parsed = [ClaimTerms.of(c) for c in claims]
    sign = 1.0 if higher_is_better(metric) else -1.0
    return [
        _verdict(c, d, x, values, metric, sign, effect)
        for c, (x, d) in zip(parsed, judge(parsed, values, metric), strict=True)
    ]


def _verdict(
    claim: ClaimTerms,
    d: Decision,
    x: np.ndarray,
    values: Mapping[str, pd.Series],
    metric: str,
    sign: float,
    effect: float | None,
) -> ClaimVerdict:
    scale = points_scale(metric)
    n_first, n_second = (len(values.get(v, ())) for v in (claim.first, claim.second))
    sd = float(np.std(x, ddof=1)) if len(x) >= 2 else math.nan
    assumed, source = (effect / scale, "--effect") if effect is not None else (d.mean, "observed")
    fixed, rule, share = fixed_and_sequential(assumed, sd, True, d.level, d.margin, d.delta)
    lo, hi = sorted((sign * d.low, sign * d.high))
    bounds = difference_range(metric)
    lo, hi = (float(np.clip(v, *bounds)) for v in (lo, hi))  # unbounded: the whole range
    why = ""
    if len(x) < sequential.FIRST_LOOK:
        why = (f"needs >= 2 seeds finished by both variants (has {len(x)}; {n_first} and "
               f"{n_second} finished)")  # fmt: skip
    elif not d.decided:
        why = f"not decided at Holm level {d.level:.3g}: more seeds needed"
    return ClaimVerdict(claim, _outcome(claim, d.verdict), d, sign, n_first, n_second, sd,
                        sign * assumed, source, rule, share, fixed, lo, hi, why)  # fmt: skip


def _interval(v: ClaimVerdict, scale: float) -> str:
    if not math.isfinite(v.decision.mean):
        return DASH
    text = f"{v.diff * scale:+.2f}"
    low = f"{v.ci_low * scale:+.2f}" if math.isfinite(v.ci_low) else "-inf"
    high = f"{v.ci_high * scale:+.2f}" if math.isfinite(v.ci_high) else "+inf"
    return f"{text} [{low}, {high}]"


def claims_table(verdicts: Sequence[ClaimVerdict], metric: str, group: str) -> Table:
    """The claims of one experiment as a table: outcome, the rule's verdict and its numbers."""
    scale = points_scale(metric)
    unit = " points" if scale == 100.0 else ""
    header = ["Claim", "Outcome", "Rule", "Δ [confidence sequence]", "Seeds", "Looks",
              "p (anytime)", "p (Holm)", "Seeds to a decision", "Fixed design", "Why"]  # fmt: skip
    cells, records = [], []
    for v in verdicts:
        d = v.decision
        effect = (f" at Δ {v.effect * scale:+.2f}{unit} ({v.effect_source})"
                  if math.isfinite(v.effect) else "")  # fmt: skip
        rule = seeds_to_decision_text({"seeds_to_decision": v.seeds_to_decision,
                                       "decided_share": v.decided_share})  # fmt: skip
        fixed = str(int(v.fixed_seeds)) if math.isfinite(v.fixed_seeds) else DASH
        cells.append([v.claim.text(), v.outcome.value, d.verdict.value, _interval(v, scale),
                      f"{d.n} ({v.n_first}/{v.n_second})", str(d.looks), f"{d.p_value:.3g}",
                      f"{d.p_adjusted:.3g}", rule + (effect if rule != DASH else ""), fixed,
                      v.why or DASH])  # fmt: skip
        records.append({
            "claim": v.claim.text(), "first": v.claim.first, "second": v.claim.second,
            "same": v.claim.same, "by": v.claim.by, "within": v.claim.within,
            "outcome": v.outcome.value, "verdict": d.verdict.value, "metric": metric,
            "diff": v.diff, "cs_low": v.ci_low, "cs_high": v.ci_high, "level": d.level,
            "seeds": d.n, "looks": d.looks, "n_first": v.n_first, "n_second": v.n_second,
            "p": d.p_value, "p_holm": d.p_adjusted, "sd": v.sd, "effect": v.effect,
            "effect_source": v.effect_source, "seeds_to_decision": v.seeds_to_decision,
            "decided_share": v.decided_share, "fixed_design_seeds": v.fixed_seeds,
            "why": v.why,
        })  # fmt: skip
    direction = "higher" if higher_is_better(metric) else "lower"
    caption = (
        f"Each claim of the experiment file judged on {metric.removeprefix('final.')} "
        f"({direction} is better) by the sequential rule (docs/decisions.md): Δ = first - "
        f"second on the seeds both finished, with its anytime-valid confidence sequence at the "
        f"claim's Holm level (95% overall; clipped to the metric's range); Rule: better / "
        f"worse / equivalent / undecided, the same however often the seeds were looked at; "
        f"Seeds: paired seeds (finished by each); Looks: seeds after the first, each a point "
        f"the rule could have decided at; p: anytime p-value of the verdict, Holm-adjusted over "
        f"the claims. Seeds to a decision: the rule's expected seeds (seeded simulation, up to "
        f"30) at the observed spread and at the difference shown (the observed one, or "
        f"--effect); Fixed design: seeds of a fixed-n paired t-test (two one-sided tests for "
        f"an equivalence) with 80% power at the same difference and level."
    )
    return Table(
        "claims", f"{group}: claims", caption, header, cells, pd.DataFrame.from_records(records)
    )
