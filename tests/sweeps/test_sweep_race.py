"""``dat-lab sweep --race``: seeds added to the best configurations until the winner is decided.

The planted study: three configurations of one tiny run. ``learns`` trains as usual,
``frozen`` has lr 1e-9 (it cannot learn: it stays at its initial accuracy) and ``twin`` differs
from ``learns`` only in ``train.log_every_n_steps``, which changes the run id but not one
number of the (deterministic) training: a planted equivalence.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sweep_helpers import cli, worker_env

from dat_lab.experiments.records import RunState
from dat_lab.experiments.store import RunStore
from dat_lab.results.race import Race, RaceSettings
from dat_lab.results.race_standings import standings
from dat_lab.results.sequential import Verdict
from dat_lab.schema import ConfigError
from dat_lab.sweeps.ranking import Candidate
from dat_lab.sweeps.spec import load_study

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
    # Digits (10 classes): lr 3e-3 learns within 8 batches (about 55-65% val top-1 by seed),
    # lr 1e-9 stays at chance (about 10%).
    exp = experiment(
        data={"name": "digits", "train_size": None, "val_size": None, "batch_size": 64},
        train={"epochs": 1, "lr": 3e-3, "limit_train_batches": 8, "min_lr": 0.0,
               "warmup_lr": 0.0},
    )  # fmt: skip
    return study_file("planted", exp=exp, space=PLANTED, sampler="grid")


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

    assert "cfg=learns seed 2" in out  # the killed run is trained again, none before it is
    assert not re.search(r"seed [01] \(\w+\): (training|resuming)", out), out

    status = subprocess.run([*cli("--study", str(path), "--store", str(store), "--storage",
                                  str(journal), "--status")],
                            capture_output=True, text=True, env=worker_env())  # fmt: skip
    assert order in status.stdout, status.stdout
    assert "cfg=learns" in status.stdout and "leader" in status.stdout
