"""The sequential rule (dat_lab.results.sequential) in simulated studies, a look after each seed.

Each study draws paired differences seed by seed, Gaussian or heavy-tailed (Student t with 3
dof, scaled to unit sd), and the rule looks after every seed from n = 2 to ``--max-seeds``
(30). The table gives, per noise:

- under the null (mean 0): the share of studies the rule ever calls better or worse (its
  false-positive rate), beside a naive two-sided t-test at 0.05 repeated at every look (and
  at looks 2..10 only), and the family-wise error of three null claims under Holm;
- the simultaneous coverage: the share of studies whose confidence sequence holds the true
  mean at every look at once (the rule is shift-equivariant: the same at any mean);
- three claims judged together (Holm) with true differences 0, +0.5 and -0.5 sd: the share
  of studies with any wrong verdict;
- at effects of 0.5, 1 and 2 sd: the rule's power (studies decided ``better`` by the last
  seed), its expected seeds (an undecided study counts ``--max-seeds``), and the seeds of a
  fixed-n paired t-test of equal power (the smallest n whose rejection rate in the same
  simulated noise is at least the rule's power), and for 80% power (the report's fixed design).

    python benchmarks/bench_sequential.py [--studies 20000] [--seed 0] [--max-seeds 30]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from scipy import stats

from dat_lab.results import sequential
from dat_lab.results.sequential import Verdict, decide_family, run_rule

ALPHA = sequential.ALPHA
EFFECTS = (0.5, 1.0, 2.0)
FIXED_MAX = 120  # seeds simulated for the fixed-n test of equal power
FAMILY = (0.0, 0.5, -0.5)  # true differences (sd) of a family of claims judged together
FAMILY_STUDIES = 2000  # at most (decide_family per study is a loop): a tenth of --studies


def noise(kind: str, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    if kind == "gaussian":
        return rng.standard_normal(shape)
    return rng.standard_t(3, shape) / np.sqrt(3.0)  # t3 has variance 3: unit sd


def t_rejects(x: np.ndarray, side: float = 0.0) -> np.ndarray:
    """The two-sided one-sample t-test at ALPHA on every prefix n = 2..N (studies x N-1):
    rejects (``side`` 0), or rejects with the sign of ``side``."""
    n = np.arange(1, x.shape[1] + 1, dtype=float)
    mean = np.cumsum(x, axis=1) / n
    var = np.maximum(np.cumsum(x**2, axis=1) - n * mean**2, 0.0) / np.maximum(n - 1, 1)
    t = mean[:, 1:] / np.sqrt(var[:, 1:] / n[1:])
    stat = side * t if side else np.abs(t)
    return stat > stats.t.ppf(1 - ALPHA / 2, n[1:] - 1)


def holm_family_error(x: np.ndarray, claims: int = 3) -> float:
    """Three independent null claims per study, Holm over their anytime p-values at the last
    look (the p-values only fall, so the last look is every look): P(any claim decided)."""
    studies = x.shape[0] // claims
    y = x[: studies * claims].reshape(studies, claims, -1)
    n = np.arange(1, y.shape[2] + 1, dtype=float)
    log_e = sequential._log_e(n, np.cumsum(y, axis=2), np.cumsum(y**2, axis=2))
    p = np.minimum(1.0, np.exp(-log_e[:, :, 1:].max(axis=2)))  # looks n >= 2
    return float((p.min(axis=1) <= ALPHA / claims).mean())  # Holm's first step


def family_wrong_verdicts(z: np.ndarray, effects: tuple[float, ...], studies: int) -> float:
    """Claims with true differences ``effects`` (sd units) judged together (``decide_family``,
    Holm) on the noise ``z``: the share of studies with any wrong verdict by the last seed
    (better when the truth is <= 0, worse when it is >= 0)."""
    k, seeds = len(effects), z.shape[1]
    rows = z[: studies * k].reshape(studies, k, seeds) + np.asarray(effects)[None, :, None]
    wrong = 0
    for study in rows:
        family = decide_family({str(i): study[i] for i in range(k)})
        wrong += any(
            (d.verdict is Verdict.BETTER and effects[i] <= 0)
            or (d.verdict is Verdict.WORSE and effects[i] >= 0)
            for i, d in enumerate(family[str(j)] for j in range(k))
        )
    return wrong / studies


def coverage(x: np.ndarray, mean: float) -> float:
    path = sequential._path(x, ALPHA)
    return float(((path.low <= mean) & (path.high >= mean)).all(axis=1).mean())


def fixed_n(z: np.ndarray, effect: float, power: float) -> str:
    """The smallest n whose t-test rejects in the claimed direction in >= ``power`` of the
    studies, from the same noise draws as the rule (extended to FIXED_MAX seeds)."""
    rate = t_rejects(z + effect, side=1.0).mean(axis=0)
    enough = np.flatnonzero(rate >= power)
    return str(int(enough[0]) + 2) if len(enough) else f"> {FIXED_MAX}"


def null_row(kind: str, z: np.ndarray, max_seeds: int) -> list[str]:
    null = z[:, :max_seeds]
    rule = run_rule(null)
    naive = t_rejects(null)
    return [kind, f"{(rule.verdicts != Verdict.UNDECIDED.value).mean():.4f}",
            f"{naive.any(axis=1).mean():.4f}", f"{naive[:, :9].any(axis=1).mean():.4f}",
            f"{holm_family_error(null):.4f}", f"{coverage(null, 0.0):.4f}"]  # fmt: skip


def effect_rows(kind: str, z: np.ndarray, max_seeds: int) -> list[list[str]]:
    out = []
    for effect in EFFECTS:
        sim = run_rule(z[:, :max_seeds] + effect)
        power = float((sim.verdicts == Verdict.BETTER.value).mean())
        out.append([kind, f"{effect:g}", f"{power:.3f}", f"{sim.expected_seeds:.2f}",
                    fixed_n(z, effect, power), fixed_n(z, effect, 0.8)])  # fmt: skip
    return out


def table(header: list[str], lines: list[list[str]]) -> str:
    rows = [header, ["---"] * len(header), *lines]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seeds", type=int, default=30)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print(f"Sequential rule: alpha {ALPHA}, mixing c^2 = {sequential.MIXING}, a look after every "
          f"seed n = 2..{args.max_seeds}; {args.studies} studies per row, numpy seed "
          f"{args.seed} (rng = default_rng(seed)).\n")  # fmt: skip
    nulls, effects = [], []
    for kind in ("gaussian", "t3"):
        z = noise(
            kind, np.random.default_rng(args.seed), (args.studies, max(args.max_seeds, FIXED_MAX))
        )
        nulls.append(null_row(kind, z, args.max_seeds))
        effects += effect_rows(kind, z, args.max_seeds)
    print("Under the null (mean 0):\n")
    every = f"naive t at every look 2..{args.max_seeds}"
    print(table(["noise", "rule: false-positive rate", every, "naive t at every look 2..10",
                 "3 null claims, Holm: family-wise error",
                 "rule: coverage at every look at once"], nulls))  # fmt: skip
    print(f"\nWith a true difference (in sd of the paired differences), stopping at the first "
          f"verdict or at {args.max_seeds} seeds:\n")  # fmt: skip
    print(table(["noise", "effect (sd)", f"rule: power (better by {args.max_seeds})",
                 "rule: expected seeds", "fixed-n t: seeds of equal power",
                 "fixed-n t: seeds for 80% power"], effects))  # fmt: skip
    studies = max(100, min(FAMILY_STUDIES, args.studies // 10))
    z = noise("gaussian", np.random.default_rng(args.seed), (studies * 3, args.max_seeds))
    wrong = family_wrong_verdicts(z, FAMILY, studies)
    print(f"\nThree claims judged together (Holm at every look), true differences "
          f"{', '.join(f'{e:+g}' for e in FAMILY)} sd, Gaussian, {studies} studies: "
          f"any wrong verdict (better when <= 0, worse when >= 0) by seed {args.max_seeds} in "
          f"{wrong:.4f} of them.")  # fmt: skip
    print(f"\n({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
