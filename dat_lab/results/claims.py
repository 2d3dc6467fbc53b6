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
from dat_lab.results.tables import DASH, Table, is_accuracy

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
    diffs = [
        difference(values.get(c["better"], empty), values.get(c["than"], empty), ci)
        for c in claims
    ]
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
        out.append(
            Verdict(
                claim["better"],
                claim["than"],
                verdict,
                d.test,
                d.n_a,
                d.n_b,
                d.diff,
                d.ci_low,
                d.ci_high,
                d.p,
                float(p_holm),
                why,
            )
        )
    return out


def claims_table(verdicts: Sequence[Verdict], metric: str, group: str) -> Table:
    """The claims of one experiment as a table: verdict and the numbers behind it."""
    scale = 100.0 if is_accuracy(metric) else 1.0
    header = ["Claim", "Verdict", "Δ [95% CI]", "n", "Test", "p", "p (Holm)", "Why"]
    cells, records = [], []
    for v in verdicts:
        delta = f"{v.diff * scale:+.2f}" if math.isfinite(v.diff) else DASH
        if math.isfinite(v.ci_low):
            delta += f" [{v.ci_low * scale:+.2f}, {v.ci_high * scale:+.2f}]"
        p_text = f"{v.p:.3g}" if math.isfinite(v.p) else DASH
        holm_text = f"{v.p_holm:.3g}" if math.isfinite(v.p_holm) else DASH
        cells.append(
            [
                f"{v.better} better than {v.than}",
                v.verdict,
                delta,
                f"{v.n_better}/{v.n_than}",
                v.test or DASH,
                p_text,
                holm_text,
                v.why or DASH,
            ]
        )
        records.append(
            {
                "better": v.better,
                "than": v.than,
                "verdict": v.verdict,
                "metric": metric,
                "diff": v.diff,
                "ci95_low": v.ci_low,
                "ci95_high": v.ci_high,
                "n_better": v.n_better,
                "n_than": v.n_than,
                "test": v.test,
                "p": v.p,
                "p_holm": v.p_holm,
                "why": v.why,
            }
        )
    direction = "higher" if higher_is_better(metric) else "lower"
    caption = (
        f"Each claim of the experiment file tested on {metric.removeprefix('final.')} "
        f"({direction} is better): Δ = better - than with its 95% CI, paired t on shared "
        f"seeds else Welch t, p Holm-adjusted over the claims; supported / contradicted when "
        f"the adjusted p < {ALPHA} with the claimed / the opposite sign, else inconclusive."
    )
    return Table(
        "claims", f"{group}: claims", caption, header, cells, pd.DataFrame.from_records(records)
    )
