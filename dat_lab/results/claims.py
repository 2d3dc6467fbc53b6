"""Claims of an experiment file checked against its runs: supported, contradicted, inconclusive.

A claim ``{better: s2, than: s0}`` says that variant ``s2`` scores better than ``s0`` on the
report's metric (higher, or lower for a loss or error metric). It is tested like a table row
(:func:`dat_lab.results.compare.difference`: paired t on shared seeds, else Welch), the
p-values of one experiment's claims are Holm-adjusted together, and the verdict is:

- *supported*: adjusted p < ALPHA and the difference has the claimed sign;
- *contradicted*: adjusted p < ALPHA and the opposite sign;
- *inconclusive*: anything else, including too few seeds for a test (the reason is given).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from dat_lab.results.compare import ALPHA, difference, holm

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"


def higher_is_better(metric: str) -> bool:
    """Accuracy-like metrics grow; losses and error rates shrink."""
    name = metric.rsplit("/", 1)[-1].lower()
    return not any(word in name for word in ("loss", "err"))


@dataclass(frozen=True)
class Verdict:
    """One claim's verdict and the numbers behind it (``diff`` = better - than)."""

    better: str
    than: str
    verdict: str
    test: str
    n_better: int
    n_than: int
    diff: float
    ci_low: float
    ci_high: float
    p: float
    p_holm: float
    why: str

    def text(self, scale: float = 1.0, unit: str = "") -> str:
        """``"s2 better than s0: supported (+1.20 [0.40, 2.00] points, paired t, n 3/3,
        Holm p 0.012)"``."""
        head = f"{self.better} better than {self.than}: **{self.verdict}**"
        if not math.isfinite(self.diff):
            return f"{head} ({self.why})"
        numbers = f"{self.diff * scale:+.2f}{unit}"
        if math.isfinite(self.ci_low):
            numbers += f" [{self.ci_low * scale:+.2f}, {self.ci_high * scale:+.2f}]"
        numbers += f", n {self.n_better}/{self.n_than}"
        if self.test:
            numbers += f", {self.test}, p {self.p:.3g}, Holm p {self.p_holm:.3g}"
        if self.why:
            numbers += f"; {self.why}"
        return f"{head} ({numbers})"


def evaluate(
    claims: Sequence[Mapping[str, str]],
    values: Mapping[str, pd.Series],
    metric: str,
    ci: str = "t",
) -> list[Verdict]:
    """The verdict of each claim, from seed-indexed values per variant (``seed_values``)."""
    empty = pd.Series(dtype=float)
    diffs = [difference(values.get(c["better"], empty), values.get(c["than"], empty), ci)
             for c in claims]  # fmt: skip
    adjusted = holm([d.p for d in diffs])
    sign = 1.0 if higher_is_better(metric) else -1.0
    out = []
    for claim, d, p_holm in zip(claims, diffs, adjusted, strict=True):
        if math.isfinite(p_holm) and p_holm < ALPHA:
            verdict = SUPPORTED if sign * d.diff > 0 else CONTRADICTED
            why = d.why
        else:
            verdict = INCONCLUSIVE
            why = d.why or f"Holm-adjusted p >= {ALPHA}: the difference may be seed noise"
        out.append(Verdict(claim["better"], claim["than"], verdict, d.test, d.n_a, d.n_b,
                           d.diff, d.ci_low, d.ci_high, d.p, float(p_holm), why))  # fmt: skip
    return out
