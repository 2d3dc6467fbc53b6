"""Where a race stands: the leader, and each rival against it by the sequential rule.

A race (:mod:`dat_lab.results.race`) holds several configurations of a study, each with the
values of its seeds (one run per seed). At a look the *leader* is the configuration with the
best mean; every other is a *rival*, compared with the leader on the seeds both have (paired
differences ``leader - rival``, signed so that positive is better) by
:func:`dat_lab.results.sequential.decide_family`: an anytime-valid confidence sequence per
rival, Holm over the rivals, so the error bound holds however many rounds look. With a margin
``M > 0`` a rival whose interval lies inside ``(-M, M)`` is *equivalent* to the leader.

Everything here is a function of the values: ``--status``, the report and the race itself
compute the same standings from the same stored runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from dat_lab.results.sequential import ALPHA, Decision, Verdict, decide_family

SYMBOL = {Verdict.BETTER: ">", Verdict.WORSE: "<", Verdict.EQUIVALENT: "≡"}


@dataclass(frozen=True)
class Standings:
    """One look at a race. ``values``: per configuration (in the race's order), seed -> value
    (in the metric's shown units, higher better after ``sign``); ``decisions``: per rival."""

    values: dict[str, dict[int, float]]
    leader: str
    decisions: dict[str, Decision]
    margin: float = 0.0
    sign: float = 1.0  # -1: the metric is minimised (val/loss)

    @property
    def decided(self) -> bool:
        """Whether the leader is decided better than, or equivalent to, every rival."""
        return all(d.decided for d in self.decisions.values())

    def mean(self, config: str) -> float:
        seeds = self.values[config]
        return float(np.mean(list(seeds.values()))) if seeds else math.nan

    def order_text(self) -> str:
        """``D_34 > D_234 (decided, 5 seeds each); D_34 vs D_1234 undecided (4 seeds each)``."""
        parts = []
        for rival, d in self.decisions.items():
            seeds = f"{d.n} seeds each"
            if d.verdict is Verdict.UNDECIDED:
                parts.append(f"{self.leader} vs {rival} undecided ({seeds})")
            elif d.verdict is Verdict.EQUIVALENT:
                parts.append(f"{self.leader} ≡ {rival} within {self.margin:g} (decided, {seeds})")
            else:
                parts.append(f"{self.leader} {SYMBOL[d.verdict]} {rival} (decided, {seeds})")
        return "; ".join(parts) or f"{self.leader} alone"

    def rival_line(self, rival: str) -> str:
        """``D_34 vs D_234: better [+0.20, +1.40] (mean +0.80, n 5), Holm p 0.004``."""
        d = self.decisions[rival]
        return (
            f"{self.leader} vs {rival}: {d.verdict} {interval_text(d)} "
            f"(mean {_signed(d.mean)}, n {d.n}), Holm p {d.p_adjusted:.3g}"
        )

    def table(self) -> list[list[str]]:
        """Per configuration: seeds, mean, the interval of ``leader - it`` and the verdict."""
        rows = [["configuration", "seeds", "mean", "leader - it", "verdict"]]
        for config, seeds in self.values.items():
            d = self.decisions.get(config)
            rows.append(
                [
                    config,
                    str(len(seeds)),
                    _number(self.mean(config)),
                    "-" if d is None else f"{_signed(d.mean)} {interval_text(d)}",
                    "leader" if d is None else str(d.verdict),
                ]
            )
        return rows


def standings(
    values: Mapping[str, Mapping[int, float]],
    margin: float = 0.0,
    sign: float = 1.0,
    alpha: float = ALPHA,
) -> Standings:
    """The race at this look (see the module docstring). ``values`` in the race's order; a
    tie for the best mean goes to the configuration listed first."""
    table: dict[str, dict[int, float]] = {k: dict(v) for k, v in values.items()}
    if not table:
        raise ValueError("a race needs at least one configuration")
    means = {k: sign * np.mean(list(v.values())) if v else -math.inf for k, v in values.items()}
    leader = max(values, key=lambda k: means[k])  # max keeps the first of equal means
    diffs = {
        rival: [
            sign * (values[leader][s] - seeds[s]) for s in sorted(seeds) if s in values[leader]
        ]
        for rival, seeds in values.items()
        if rival != leader
    }
    deltas = {rival: margin for rival in diffs}
    decisions = decide_family(diffs, deltas=deltas, alpha=alpha)
    return Standings(table, leader, decisions, margin, sign)


def interval_text(d: Decision) -> str:
    if not (math.isfinite(d.low) and math.isfinite(d.high)):
        return "[-inf, +inf]"
    return f"[{_signed(d.low)}, {_signed(d.high)}]"


def _signed(x: float) -> str:
    return f"{x:+.2f}" if math.isfinite(x) else "-"


def _number(x: float) -> str:
    return f"{x:.2f}" if math.isfinite(x) else "-"


def race_metric(metric: str, scale: float) -> str:
    """The raced metric in its shown units, for the race's header and the report's caption:
    ``val/acc1 (points)``."""
    return f"{metric} (points)" if scale != 1.0 else metric


def race_rule(alpha: float, margin: float) -> str:
    """The rule the race's verdicts follow: ``Holm at alpha 0.05, equivalence margin 5``."""
    equivalence = f", equivalence margin {margin:g}" if margin else ""
    return f"Holm at alpha {alpha:g}{equivalence}"


__all__ = ["Standings", "interval_text", "race_metric", "race_rule", "standings"]
