"""``dat-lab run --until-decided``: add seeds, in rounds, until the file's claims are decided.

The file's seeds run first. Then every round looks at the claims with the sequential rule, by
the report's own code (:func:`dat_lab.results.claims.judge`: paired differences in seed order,
an anytime-valid confidence sequence per claim, Holm over the claims at every look, so the
error bound holds however many rounds run, and the verdicts are the report's),
and adds the next seed to the two variants of every claim still undecided, the claim closest
to a decision (smallest anytime p) first. It stops when every claim is decided, when the
undecided claims' variants have ``max_seeds`` seeds, or when the training time of the
experiment's runs (their own ``cost.json``, so a resumed command keeps counting) reaches the
budget.

Every added seed is an ordinary run of the store (:func:`resolve_run`: the same run id as in a
file that lists the seed), trained by the same executor as ``dat-lab run``'s (the worker pool,
or SLURM). Nothing else is stored: the rounds are a function of the stored results, so
rerunning the command replays the finished rounds without training (finished runs are
skipped), resumes an interrupted run and goes on; no seed is trained twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dat_lab.experiments.records import RunState
from dat_lab.experiments.runner import VAL_TOP1
from dat_lab.experiments.spec import DataFacts, ExperimentFile, RunSpec, resolve_run
from dat_lab.experiments.stopping import UntilDecided
from dat_lab.experiments.store import RunStore
from dat_lab.results.claims import ClaimTerms, judge
from dat_lab.results.power import fixed_seeds
from dat_lab.results.sequential import ALPHA, Decision
from dat_lab.results.tables import points_scale

Log = Callable[[str], None]
# Runs the specs (train, resume or skip each) and says whether all of them finished.
Execute = Callable[[list[RunSpec]], bool]


@dataclass
class SeedLists:
    """The seeds of each variant so far, in the order they were added (the looks' order)."""

    seeds: dict[str, list[int]]
    rounds: int = 0

    def add(self, variant: str) -> int:
        """The next seed of ``variant``: the smallest one it does not have yet."""
        seed = 0
        while seed in self.seeds[variant]:
            seed += 1
        self.seeds[variant].append(seed)
        return seed


@dataclass(frozen=True)
class SequentialResult:
    """How the sequential run ended: the last decisions, why it stopped, the seeds spent."""

    decisions: dict[str, Decision]
    stopped: str
    seeds: dict[str, list[int]]
    spent_s: float
    ok: bool


class UntilDecidedRun:
    """One ``--until-decided`` invocation over one experiment file."""

    def __init__(
        self,
        exp: ExperimentFile,
        path: Path,
        overrides: Mapping[str, Any],
        store: RunStore,
        limits: UntilDecided,
        log: Log,
    ):
        self.exp, self.path, self.overrides, self.store = exp, path, dict(overrides), store
        self.limits, self.log = limits, log
        self.tests = [ClaimTerms.of(c.as_mapping()) for c in exp.claims]
        self.state = SeedLists({v: list(exp.seeds) for v in exp.variants})
        self._specs: dict[tuple[str, int], RunSpec] = {}
        self._facts = DataFacts()

    def spec(self, variant: str, seed: int) -> RunSpec:
        key = (variant, seed)
        if key not in self._specs:
            config = resolve_run(self.exp, self.path, variant, seed, self.overrides, self._facts)
            self._specs[key] = RunSpec(self.exp.name, variant, seed, config)
        return self._specs[key]

    def seed_specs(self, initial: Sequence[RunSpec]) -> None:
        """The file's runs, already resolved by ``load_experiment``."""
        for spec in initial:
            self._specs[(spec.variant, spec.seed)] = spec

    # -- what the store says ----------------------------------------------------------

    def value(self, variant: str, seed: int) -> float | None:
        """The finished run's val top-1 (a fraction), else None."""
        record = self.store.get(self.spec(variant, seed).run_id)
        if record is None or record.state is not RunState.FINISHED or not record.final:
            return None
        value = record.final.get(VAL_TOP1)
        return float(value) if value is not None and math.isfinite(value) else None

    def values(self) -> dict[str, pd.Series]:
        """Per variant, the finished seeds' values indexed by seed (the report's form)."""
        out = {}
        for variant, seeds in self.state.seeds.items():
            got = {s: v for s in seeds if (v := self.value(variant, s)) is not None}
            out[variant] = pd.Series(got, dtype=float)
        return out

    def judged(self) -> list[tuple[np.ndarray, Decision]]:
        """Each claim's paired differences and decision, by the report's own rule."""
        return judge(self.tests, self.values(), VAL_TOP1)

    def decisions(self) -> dict[str, Decision]:
        return {t.text(): d for t, (_, d) in zip(self.tests, self.judged(), strict=True)}

    def spent_s(self) -> float:
        """Training seconds of this procedure's runs so far, from their cost.json."""
        total = 0.0
        for variant, seeds in self.state.seeds.items():
            for seed in seeds:
                record = self.store.get(self.spec(variant, seed).run_id)
                cost = (record.cost or {}) if record is not None else {}
                total += float(cost.get("train_time_s") or 0.0)
        return total

    # -- the rounds ---------------------------------------------------------------------

    def next_round(self, decisions: Mapping[str, Decision]) -> tuple[list[str], str | None]:
        """The variants to add a seed to, closest claim first; or why it stops."""
        undecided = [t for t in self.tests if not decisions[t.text()].decided]
        if not undecided:
            return [], "every claim is decided"
        budget = self.limits.budget_s
        if budget is not None and self.spent_s() >= budget:
            return [], f"the budget is spent ({self.spent_s():.0f} s of {budget:.0f} s)"
        undecided.sort(key=lambda t: decisions[t.text()].p_value)
        variants: list[str] = []
        for test in undecided:
            if all(
                len(self.state.seeds[v]) < self.limits.max_seeds for v in (test.first, test.second)
            ):
                variants += [v for v in (test.first, test.second) if v not in variants]
        if not variants:
            return [], f"--max-seeds ({self.limits.max_seeds}) is reached"
        return variants, None

    def run(self, execute: Execute, dry: bool = False) -> SequentialResult:
        """The file's seeds, then rounds until a stop (see the module docstring). ``dry``:
        ``execute`` only says whether the runs have finished; the first round with runs
        still to train ends it (what ``--dry-run`` shows)."""
        pending = [self.spec(v, s) for v in self.exp.variants for s in self.exp.seeds]
        while True:
            ok = execute(pending)
            decisions = self.decisions()
            self.report_round(decisions)
            if not ok:
                if dry:
                    todo = [s for s in pending if self.value(s.variant, s.seed) is None]
                    return self.result(
                        decisions,
                        f"next: {len(todo)} runs to train (" + ", ".join(map(_label, todo)) + ")",
                    )
                return self.result(decisions, "some runs did not finish", ok=False)
            variants, stop = self.next_round(decisions)
            if stop is not None:
                return self.result(decisions, stop)
            self.state.rounds += 1
            pending = [self.spec(v, self.state.add(v)) for v in variants]
            self.log(f"round {self.state.rounds}: adding " + ", ".join(map(_label, pending)))

    def finished(self, specs: Sequence[RunSpec]) -> bool:
        """Whether every run of ``specs`` has finished (the dry run's executor)."""
        return all(self.value(s.variant, s.seed) is not None for s in specs)

    def result(
        self, decisions: dict[str, Decision], stopped: str, ok: bool = True
    ) -> SequentialResult:
        seeds = {v: list(s) for v, s in self.state.seeds.items()}
        return SequentialResult(decisions, stopped, seeds, self.spent_s(), ok)

    # -- what it prints -----------------------------------------------------------------

    def report_round(self, decisions: Mapping[str, Decision]) -> None:
        look = "file's seeds" if self.state.rounds == 0 else f"round {self.state.rounds}"
        for test in self.tests:
            self.log(f"{look}: {claim_line(test, decisions[test.text()], self.state.seeds)}")

    def summary(self, outcome: SequentialResult) -> list[str]:
        """The end: why it stopped, each claim, the seeds spent beside a fixed design's."""
        lines = [f"stopped: {outcome.stopped}"]
        lines.append("seeds: " + ", ".join(f"{v} {s}" for v, s in outcome.seeds.items()))
        lines += [claim_line(t, outcome.decisions[t.text()], outcome.seeds) for t in self.tests]
        done = {v: [s for s in seeds if self.value(v, s) is not None]
                for v, seeds in outcome.seeds.items()}  # fmt: skip
        per_variant = ", ".join(f"{v} {len(s)}" for v, s in done.items())
        lines.append(
            f"seeds spent: {sum(map(len, done.values()))} finished runs ({per_variant}); "
            f"{outcome.spent_s:.0f} s of training"
        )
        lines.append(self.fixed_line(outcome))
        return lines

    def fixed_line(self, outcome: SequentialResult) -> str:
        """What a fixed design (every variant the same seeds, chosen in advance) would need
        for 80% power on every claim, at the observed differences and spreads."""
        alpha = ALPHA / max(1, len(self.tests))  # Bonferroni: a fixed design has one look
        needs = {t.text(): _fixed(x, d, alpha) for t, (x, d) in zip(self.tests, self.judged(),
                                                                   strict=True)}  # fmt: skip
        known = [n for n in needs.values() if n is not None]
        text = "; ".join(f"{k} {n if n is not None else '?'}" for k, n in needs.items())
        if not known or len(known) < len(needs):
            return (
                f"fixed design (paired t, 80% power, Bonferroni over the claims, at the "
                f"observed difference and spread): seeds per variant {text} (? = unknown: "
                "no spread or no difference)"
            )
        n = max(known)
        return (
            f"fixed design (paired t, 80% power, Bonferroni over the claims, at the "
            f"observed difference and spread): {n} seeds per variant x "
            f"{len(self.exp.variants)} variants = {n * len(self.exp.variants)} runs "
            f"(per claim: {text})"
        )


def _label(spec: RunSpec) -> str:
    return f"{spec.variant} seed {spec.seed}"


def _fixed(x: np.ndarray, d: Decision, alpha: float) -> int | None:
    """A fixed design's seeds per variant for one claim at its observed mean and spread."""
    if len(x) < 2:
        return None
    return fixed_seeds(d.mean, float(np.std(x, ddof=1)), True, alpha, d.margin, d.delta)


def claim_line(test: ClaimTerms, d: Decision, seeds: Mapping[str, Sequence[int]]) -> str:
    """``s2 better than s0: better [+3.10, +9.20] points, seeds 5/5 (Holm p 0.004)``."""
    scale = points_scale(VAL_TOP1)
    interval = (
        f"[{d.low * scale:+.2f}, {d.high * scale:+.2f}]"
        if math.isfinite(d.low) and math.isfinite(d.high)
        else "[-inf, +inf]"
    )
    mean = f"mean {d.mean * scale:+.2f}" if math.isfinite(d.mean) else "no pairs yet"
    return (
        f"{test.text()}: {d.verdict} {interval} points ({mean}, n {d.n}), seeds "
        f"{len(seeds[test.first])}/{len(seeds[test.second])}, Holm p {d.p_adjusted:.3g}"
    )
