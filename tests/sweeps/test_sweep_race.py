"""``dat-lab sweep --race``: seeds added to the best configurations until the winner is decided.

The planted study: three configurations of one tiny run. ``learns`` trains as usual,
``frozen`` has lr 1e-9 (it cannot learn: it stays at its initial accuracy) and ``twin`` differs
from ``learns`` only in ``train.log_every_n_steps``, which changes the run id but not one
number of the (deterministic) training: a planted equivalence.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from sweep_helpers import cli, worker_env

from dat_lab.commands.sweep_race import race_settings
from dat_lab.experiments.records import RunState
from dat_lab.experiments.stale import other_code
from dat_lab.experiments.store import RunStore
from dat_lab.results.race import Race, RaceSettings
from dat_lab.results.race_standings import standings
from dat_lab.results.sequential import Verdict
from dat_lab.schema import ConfigError
from dat_lab.sweeps.liveness import Liveness
from dat_lab.sweeps.ranking import Candidate, race_candidates, race_objective, ranked_trials
from dat_lab.sweeps.spec import load_study
from dat_lab.sweeps.storage import StorageLocation
from dat_lab.sweeps.worker import WorkerOptions, work

PLANTED = {
    "cfg": {
        "type": "categorical",
        "choices": {
            "learns": {},
            "twin": {"train.log_every_n_steps": 2},
            "frozen": {"train.lr": 1.0e-9},
        },
    }
}
MAX_SEEDS = 6
MARGIN = 5.0  # points of val top-1
RACE_ARGS = ["--race", "--max-seeds", str(MAX_SEEDS), "--margin", str(MARGIN)]


def _planted_study(study_file, experiment):
    return study_file("planted", exp=_planted_experiment(experiment), space=PLANTED,
                      sampler="grid")  # fmt: skip


def _planted_experiment(experiment):
    # Digits (10 classes): lr 3e-3 learns within 8 batches (about 55-65% val top-1 by seed),
    # lr 1e-9 stays at chance (about 10%).
    return experiment(
        data={"name": "digits", "train_size": None, "val_size": None, "batch_size": 64},
        train={"epochs": 1, "lr": 3e-3, "limit_train_batches": 8, "min_lr": 0.0,
               "warmup_lr": 0.0},
    )  # fmt: skip


# -- the rule's bookkeeping, on given values (no training) ------------------------------------


def test_standings_pick_the_best_mean_as_leader_and_decide_each_rival_against_it():
    values = {
        "a": {s: 50.0 + (s % 3) for s in range(6)},
        "b": {s: 90.0 + (s % 2) for s in range(6)},
        "c": {s: 90.0 + (s % 2) for s in range(6)},
    }
    now = standings(values, margin=2.0)
    assert now.leader == "b"  # the best mean; c ties with it and is listed later
    assert now.decisions["a"].verdict is Verdict.BETTER
    assert now.decisions["c"].verdict is Verdict.EQUIVALENT
    assert now.decided
    assert now.order_text() == (
        "b > a (decided, 6 seeds each); b ≡ c within 2 (decided, 6 seeds each)"
    )


def test_standings_undecided_before_the_rule_can_decide():
    values = {"a": {0: 1.0, 1: 2.0}, "b": {0: 90.0, 1: 91.0}}
    now = standings(values, margin=1.0)
    assert not now.decided
    assert now.order_text() == "b vs a undecided (2 seeds each)"


def test_race_settings_are_checked_naming_the_flag():
    with pytest.raises(ConfigError, match="--max-seeds"):
        RaceSettings(max_seeds=1)
    with pytest.raises(ConfigError, match="--margin"):
        RaceSettings(margin=-1.0)
    with pytest.raises(ConfigError, match="--top"):
        RaceSettings(top=0)
    flags = argparse.Namespace(top=2, max_seeds=4, margin=0.0, budget="soon")
    with pytest.raises(ConfigError, match="--budget.*a duration such as 2h"):
        race_settings(flags)
    assert race_settings(argparse.Namespace(**{**vars(flags), "budget": "1h30m"})).budget_s == 5400


def test_race_entries_of_the_study_file_are_validated(study_file, experiment):
    path = study_file("bad", space=PLANTED, sampler="grid", race=[{"cfg": "nope"}])
    with pytest.raises(ConfigError, match=r"race\.0\.cfg.*nope.*allowed"):
        load_study(path)
    path = study_file("bad2", space=PLANTED, sampler="grid", race=[{"other": 1}])
    with pytest.raises(ConfigError, match=r"race\.0\.other.*not a parameter"):
        load_study(path)
    path = study_file("bad3", space=PLANTED, sampler="grid", race=[{"cfg": "frozen"}],
                      objectives=[{"metric": "flops", "direction": "minimize"}])  # fmt: skip
    with pytest.raises(ConfigError, match="race"):
        load_study(path)


def test_an_extra_seed_is_the_trial_config_with_another_train_seed(study_file, experiment):
    study = load_study(_planted_study(study_file, experiment))
    trial = study.run_spec({"cfg": "learns"})
    extra = study.run_spec({"cfg": "learns"}, study.seed + 1)
    assert trial.config == study.run_config({"cfg": "learns"})  # what a trial trains
    assert trial.run_id != extra.run_id and extra.seed == study.seed + 1
    mine, theirs = trial.config.to_dict(), extra.config.to_dict()
    assert mine["train"].pop("seed") != theirs["train"].pop("seed")
    assert mine == theirs  # only the seed differs


def test_a_multi_objective_study_races_its_pareto_front_on_the_accuracy_objective(
    study_file, experiment
):
    objectives = [{"metric": "flops", "direction": "minimize"},
                  {"metric": "val/acc1", "direction": "maximize"}]  # fmt: skip
    exp = _planted_experiment(experiment)
    path = study_file("pareto", exp=exp, space=PLANTED, sampler="grid", objectives=objectives,
                      race=[{"cfg": "frozen"}])  # fmt: skip
    study = load_study(path)
    assert race_objective(study)[1].metric == "val/acc1"
    optuna_study = optuna.create_study(directions=["minimize", "maximize"])
    points = {"learns": (100.0, 0.90), "twin": (50.0, 0.80), "frozen": (200.0, 0.70)}
    choice = optuna.distributions.CategoricalDistribution(list(points))
    for config, values in points.items():  # frozen is dominated by learns: off the front
        run_id = study.run_spec({"cfg": config}).run_id
        optuna_study.add_trial(optuna.trial.create_trial(
            params={"cfg": config}, distributions={"cfg": choice}, values=list(values),
            user_attrs={"run_id": run_id},
        ))  # fmt: skip
    ranked = ranked_trials(optuna_study, study)
    assert [c.value for c in ranked] == [0.90, 0.80]  # the front, by accuracy; no flops seeds
    chosen = race_candidates(optuna_study, study, top=1)
    assert [c.trial for c in chosen] == [0, None]  # the best by accuracy, then race: frozen
    assert chosen[0].params == {"cfg": "learns"} and chosen[1].params == {"cfg": "frozen"}


# -- the planted race, through the CLI, with a kill -9 in the middle -------------------------


def _start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        args, stdout=log.open("w"), stderr=subprocess.STDOUT, env=worker_env(),
        start_new_session=True,
    )  # fmt: skip


def _wait_for_line(log: Path, pattern: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, log.read_text(), re.MULTILINE):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


@pytest.mark.slow
def test_planted_race_decides_winner_better_and_twin_equivalent_and_survives_kill_9(
    tmp_path, study_file, experiment
):
    path = _planted_study(study_file, experiment)
    store, journal = tmp_path / "store", tmp_path / "planted.journal"
    args = cli("--study", str(path), "--store", str(store), "--storage", str(journal), *RACE_ARGS)

    victim = _start(args, tmp_path / "killed.log")
    # Mid-race and mid-run: round 2 is training its first run (seed 2 of the leader).
    _wait_for_line(tmp_path / "killed.log", r"cfg=learns seed 2 \(\w+\): training$", victim)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()

    done = subprocess.run(args, capture_output=True, text=True, env=worker_env(), timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    order = next(line for line in out.splitlines() if line.startswith("order: "))
    assert "cfg=learns > cfg=frozen (decided" in order, out
    assert "cfg=learns ≡ cfg=twin within 5 (decided" in order, out

    # The seeds trained are those the rule asked for, fewer than --max-seeds, each one once.
    study = load_study(path)
    race = Race(study, [Candidate({"cfg": c}, "") for c in ("learns", "twin", "frozen")],
                RunStore(store), RaceSettings(3, MAX_SEEDS, MARGIN))  # fmt: skip
    replay = race.replay()
    assert replay.ok and replay.standings is not None
    assert replay.standings.order_text() == order.removeprefix("order: ")
    seeds = {c: len(v) for c, v in replay.standings.values.items()}
    assert max(seeds.values()) < MAX_SEEDS, seeds
    runs = RunStore(store).runs()
    assert len(runs) == sum(seeds.values())  # no run beyond the race's seeds
    assert all(r.state is RunState.FINISHED for r in runs)

    # A budget smaller than the trials' own training time stops the race at its first look.
    configs = [Candidate({"cfg": c}, "") for c in ("learns", "twin", "frozen")]
    short = Race(study, configs, RunStore(store), RaceSettings(3, MAX_SEEDS, MARGIN, 1.0))
    stopped = short.replay()
    assert stopped.stopped.startswith("the budget is spent") and stopped.standings is not None
    assert {len(v) for v in stopped.standings.values.values()} == {1}
    assert "cfg=learns seed 2" in out  # the killed run is trained again, none before it is
    assert not re.search(r"seed [01] \(\w+\): (training|resuming)", out), out

    status = subprocess.run([*cli("--study", str(path), "--store", str(store), "--storage",
                                  str(journal), "--status")],
                            capture_output=True, text=True, env=worker_env())  # fmt: skip
    assert order in status.stdout, status.stdout
    assert "cfg=learns" in status.stdout and "leader" in status.stdout


# -- --rerun-stale ----------------------------------------------------------------------------


def _sweep(study, journal: Path, store: Path, rerun_stale: bool = False) -> list[str]:
    lines: list[str] = []
    liveness = Liveness(interval_s=1.0, grace_s=4.0)
    options = WorkerOptions(store, liveness=liveness, rerun_stale=rerun_stale)
    work(study, StorageLocation(journal=journal), options, lines.append)
    return lines


def test_a_sweep_says_when_it_reuses_a_run_of_other_code_and_rerun_stale_retrains_it(
    tmp_path, study_file, experiment
):
    path = study_file("stale", space={"s": {"type": "categorical", "choices": [2.0],
                      "set": ["model.stages.3.offset_range"]}}, sampler="grid")  # fmt: skip
    study, store = load_study(path), tmp_path / "store"
    _sweep(study, tmp_path / "first.journal", store)
    (run,) = RunStore(store).runs()
    provenance = run.path / "provenance.json"
    doc = json.loads(provenance.read_text())
    doc["code"]["fingerprint"] = "0123456789ab"  # as an older model code would have left it
    provenance.write_text(json.dumps(doc))

    reused = "\n".join(_sweep(study, tmp_path / "second.journal", store))
    assert "made by other code (code 0123456789ab" in reused
    assert "--rerun-stale retrains it" in reused and ": training" not in reused

    retrained = "\n".join(_sweep(study, tmp_path / "third.journal", store, rerun_stale=True))
    assert "training again from scratch (--rerun-stale)" in retrained
    assert other_code(RunStore(store).require(run.run_id).provenance) is None
