"""Study files: the shipped ones load; a bad one fails naming the file and key before any run;
the search space's conditions and grids; storage URLs never show a password."""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest
from sweep_helpers import OFFSET_KEYS, cli, offset_grid, url_password, worker_env

from dat_lab.schema import ConfigError, config_files
from dat_lab.sweeps.space import grid_points, suggest
from dat_lab.sweeps.spec import load_study
from dat_lab.sweeps.storage import StorageLocation, mask_url
from dat_lab.sweeps.study import open_study

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_study_files_load_with_their_budgets():
    budgets = {}
    for path in config_files(REPO / "sweeps"):
        study = load_study(path)
        budgets[study.name] = (study.n_trials, study.file.sampler.type, len(study.file.objectives))
    assert budgets == {
        "attention_ablation": (7, "grid", 1),
        "free": (60, "tpe", 1),
        "offset_range": (14, "grid", 1),
        "reduction_offset": (9, "grid", 2),  # accuracy against FLOPs
        "stage_placement": (5, "grid", 1),
    }


S_PARAM = {"type": "categorical", "choices": [2.0], "set": OFFSET_KEYS}
BAD_STUDIES = [
    ({"n_trial": 3}, "n_trial", "did you mean 'n_trials'"),
    ({"space": {"s": {**S_PARAM, "type": "choice"}}}, "space.s.type", "'categorical'"),
    ({"space": {"s": {"type": "categorical", "choices": [2.0]}}}, "space.s.set", "missing"),
    (
        {"space": {"s": {**S_PARAM, "set": ["stages.2.offset_range"]}}},
        "space.s.set.0",
        "must start with one of model, data, train",
    ),
    (
        {"space": {"s": {**S_PARAM, "when": {"t": 1}}, "t": {**S_PARAM, "set": ["train.lr"]}}},
        "space.s.when.t",
        "listed above",
    ),
    ({"space": {"s": {**S_PARAM, "choices": [2.0, -1.0]}}}, "space.s", "offset_range"),
    (
        {"space": {"s": {"type": "float", "low": 0.0, "high": 4.0, "set": OFFSET_KEYS}}},
        "space.s.step",
        "grid",
    ),
    ({"sampler": "tpe"}, "n_trials", "required"),
    ({"objectives": [{"metric": "acc", "direction": "maximize"}]}, "objectives.0.metric", "val/"),
    (
        {
            "objectives": [
                {"metric": "val/acc1", "direction": "maximize"},
                {"metric": "flops", "direction": "minimize"},
            ],
            "pruner": "median",
        },
        "pruner",
        "multi-objective",
    ),
    (  # the tiny experiment trains 1 epoch: hyperband could never stop a trial
        {"pruner": {"type": "hyperband", "min_epochs": 1}},
        "pruner.min_epochs",
        "must be < train.epochs (1)",
    ),
    ({"pruner": {"type": "hyperband", "min_epochs": 0}}, "pruner.min_epochs", ">= 1"),
    ({"pruner": {"type": "hyperband", "reduction_factor": 1}}, "pruner.reduction_factor", ">= 2"),
    (
        {
            "overrides": {"train.epochs": 3},
            "pruner": "hyperband",
            "space": {"e": {"type": "int", "low": 2, "high": 3, "set": ["train.epochs"]}},
        },
        "space.e",
        "hyperband's largest budget is the base run's train.epochs",
    ),
    ({"variant": "nope"}, "variant", "has: default"),
    ({"experiment": "missing.yaml"}, "experiment", "not found"),
]


@pytest.mark.parametrize(("change", "key", "words"), BAD_STUDIES, ids=[c[1] for c in BAD_STUDIES])
def test_a_bad_study_file_is_refused_naming_the_file_and_key(change, key, words, study_file):
    path = study_file("bad", **{"space": offset_grid([2.0]), "sampler": "grid", **change})
    with pytest.raises(ConfigError) as info:
        load_study(path)
    assert info.value.file == str(path) and info.value.key == key
    assert words in info.value.message


def test_two_knobs_that_clash_only_together_are_refused_before_any_trial(study_file):
    """Each value of s and of offset_mode is possible alone; s with clamped is not, and TPE
    would draw it in about a quarter of the trials."""
    bounded_or_clamped = {
        "type": "categorical",
        "choices": ["bounded", "clamped"],
        "set": ["model.stages.3.offset_mode"],
    }
    s = {"type": "float", "low": 0.5, "high": 8.0, "set": ["model.stages.3.offset_range"]}
    clash = study_file("clash", space={"s": s, "mode": bounded_or_clamped}, n_trials=4)
    with pytest.raises(ConfigError) as info:
        load_study(clash)
    assert info.value.file == str(clash) and info.value.key == "space"
    assert "'mode': 'clamped'" in info.value.message
    assert "offset_range: has no effect with offset_mode: clamped" in info.value.message
    resolved = {**s, "when": {"mode": "bounded"}}  # the conditional space resolves the clash
    fixed = study_file("fixed", space={"mode": bounded_or_clamped, "s": resolved}, n_trials=4)
    assert load_study(fixed).file.space["s"].when == {"mode": "bounded"}


@pytest.mark.slow
def test_the_cli_refuses_a_bad_study_file_before_any_run(tmp_path, study_file):
    path = study_file("bad", space={"s": {**S_PARAM, "choices": [2.0, -1.0]}}, sampler="grid")
    store = tmp_path / "store"
    proc = subprocess.run(
        cli("--study", str(path), "--store", str(store)),
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: {path}: space.s: value -1.0 gives an impossible run")
    )
    assert not store.exists()  # no journal, no run


def test_a_stored_study_is_continued_only_with_the_same_space(tmp_path, study_file):
    location = StorageLocation(journal=tmp_path / "s.journal")
    first = load_study(study_file("same", space=offset_grid([0.0, 2.0]), sampler="grid"))
    open_study(first, location, location.open())
    changed = load_study(study_file("same", space=offset_grid([0.0, 4.0]), sampler="grid"))
    with pytest.raises(ConfigError, match="different base run, search space"):
        open_study(changed, location, location.open())
    bigger_budget = load_study(
        study_file("same", space=offset_grid([0.0, 2.0]), sampler="grid", n_trials=1)
    )
    open_study(bigger_budget, location, location.open())  # the budget may change


CONDITIONAL = {
    "offsets": {
        "type": "categorical",
        "choices": [True, False],
        "set": ["model.stages.3.offsets"],
    },
    "s": {
        "type": "categorical",
        "choices": [1.0, 4.0],
        "when": {"offsets": True},
        "set": ["model.stages.3.offset_range"],
    },
}


def test_a_conditional_parameter_exists_only_when_its_condition_holds(study_file):
    study = load_study(study_file("cond", space=CONDITIONAL, sampler="grid"))
    points = [dict(p) for p in grid_points(study.file.space)]
    assert points == [{"offsets": True, "s": 1.0}, {"offsets": True, "s": 4.0}, {"offsets": False}]
    optuna_study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    sampled = [suggest(optuna_study.ask(), study.file.space) for _ in range(20)]
    assert {tuple(sorted(p)) for p in sampled} == {("offsets", "s"), ("offsets",)}
    assert all(("s" in p) == p["offsets"] for p in sampled)


def test_grid_points_that_are_the_same_run_are_enqueued_once(study_file):
    # "DAT" and "D_34" name the same model (a table row and a placement), and the int 4 and
    # the float 4.0 resolve to the same offset range: 2 runs out of 6 points.
    space = {
        "named": {
            "type": "categorical",
            "choices": {"DAT": {}, "D_34": {}, "D_4": {"model.stages.2.attn": "LS"}},
        },
        "s": {"type": "categorical", "choices": [4, 4.0], "set": ["model.stages.3.offset_range"]},
    }
    study = load_study(study_file("dedup", space=space, sampler="grid"))
    assert [p.params for p in study.grid] == [{"named": "DAT", "s": 4}, {"named": "D_4", "s": 4}]
    assert study.n_trials == 2


def test_a_password_in_a_storage_url_is_masked():
    url = "postgresql://alice:pa%40ss@db.example:5432/sweeps"
    assert mask_url(url) == "postgresql://alice:***@db.example:5432/sweeps"
    location = StorageLocation.parse(url, Path("unused"))
    assert location.masked() == "postgresql://alice:***@db.example:5432/sweeps"
    assert "pa@ss" not in location.redact(
        "auth failed for pa@ss and pa%40ss"
    ) and "***" in location.redact("pa@ss")
    with pytest.raises(ConfigError, match=r"'mysql://u:\*\*\*@h/db'") as info:
        StorageLocation.parse("mysql://u:secret@h/db", Path("unused"))
    assert "secret" not in str(info.value)


@pytest.mark.slow
@pytest.mark.postgres
def test_status_on_postgresql_never_prints_the_password(postgres_url, tmp_path, study_file):
    password = url_password(postgres_url)
    path = study_file("pg_status", space=offset_grid([2.0]), sampler="grid")
    proc = subprocess.run(
        cli("--study", str(path), "--storage", postgres_url, "--status"),
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "postgresql://dat_lab:***@" in proc.stdout and "not started" in proc.stdout
    assert password not in proc.stdout + proc.stderr
    bad = postgres_url.replace(f":{password}@", f":{password}-wrong@")
    proc = subprocess.run(
        cli("--study", str(path), "--storage", bad),
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "error: cannot" in proc.stderr and "***" in proc.stderr
    assert password not in proc.stdout + proc.stderr
