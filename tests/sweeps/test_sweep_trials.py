"""Trials are real (tiny) training runs of the run store: failures, pruning, Pareto fronts,
budgets, reuse of finished runs. One worker, in this process."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sweep_helpers import OFFSET_KEYS, TINY_DATA, offset_grid

from dat_lab.experiments.store import RunState, RunStore
from dat_lab.sweeps.liveness import USER_FAIL_REASON, Liveness
from dat_lab.sweeps.spec import load_study
from dat_lab.sweeps.status import load_stored_study, status_text
from dat_lab.sweeps.storage import StorageLocation
from dat_lab.sweeps.worker import WorkerOptions, work

FAST = Liveness(interval_s=1.0, grace_s=4.0)


def sweep(
    path: Path, tmp_path: Path, overrides: dict | None = None
) -> tuple[optuna.Study, list[str]]:
    """Run one in-process worker until the study's budget is used; the study and the log."""
    study = load_study(path, overrides)
    location = StorageLocation(journal=tmp_path / f"{study.name}.journal")
    lines: list[str] = []
    work(study, location, WorkerOptions(tmp_path / "store", liveness=FAST), lines.append)
    return optuna.load_study(study_name=study.name, storage=location.open()), lines


def lr_grid(*lrs: float) -> dict:
    return {"lr": {"type": "categorical", "choices": list(lrs), "set": ["train.lr"]}}


def test_a_failing_trial_is_failed_with_its_reason_and_the_study_goes_on(tmp_path, study_file):
    # lr 1e10 makes the loss non-finite within a step; the next trial still trains.
    path = study_file("fails", space=lr_grid(1e10, 2e-3), sampler="grid")
    optuna_study, log = sweep(path, tmp_path)
    failed, good = optuna_study.trials
    assert failed.state is TrialState.FAIL
    assert "non-finite loss" in failed.user_attrs[USER_FAIL_REASON]
    assert (
        RunStore(tmp_path / "store").require(failed.user_attrs["run_id"]).state is RunState.FAILED
    )
    assert good.state is TrialState.COMPLETE and 0.0 <= good.value <= 1.0


@pytest.mark.slow
def test_pruning_stops_a_bad_trial_early(tmp_path, study_file, experiment):
    # Digits (10 classes): lr 3e-3 learns within an epoch, lr 1e-9 stays at chance. With the
    # good trial done first, the median pruner stops the bad one after its first epoch of 3.
    exp = experiment(
        data={"name": "digits", "train_size": None, "val_size": None, "batch_size": 64},
        train={"epochs": 3, "limit_train_batches": 8, "min_lr": 0.0, "warmup_lr": 0.0},
    )
    path = study_file(
        "pruned",
        exp=exp,
        space=lr_grid(3e-3, 1e-9),
        sampler="grid",
        pruner={"type": "median", "startup_trials": 1},
    )
    optuna_study, log = sweep(path, tmp_path)
    good, bad = optuna_study.trials
    assert good.state is TrialState.COMPLETE and len(good.intermediate_values) == 3
    assert bad.state is TrialState.PRUNED
    assert list(bad.intermediate_values) == [0]  # reported once, then stopped
    assert bad.intermediate_values[0] < good.intermediate_values[0]
    store = RunStore(tmp_path / "store")
    run_id = bad.user_attrs["run_id"]
    assert store.state(run_id) is RunState.INTERRUPTED  # not failed, not faked finished: resumable
    assert store.require(run_id).final is None and store.require(run_id).last_checkpoint


@pytest.mark.slow
def test_hyperband_stops_a_bad_trial_at_its_first_rung(tmp_path, study_file, experiment):
    # 3 epochs, min_epochs 1, reduction factor 4: one bracket (floor(log_4(3 / 1)) + 1), so
    # both trials meet at its first rung, epoch index 1, whatever bracket Optuna hashes them
    # to. There only the best 1/4 go on (the first trial alone always does): the good trial
    # (lr 3e-3 learns digits within an epoch) goes on, the bad one (lr 1e-9) stops there.
    exp = experiment(
        data={"name": "digits", "train_size": None, "val_size": None, "batch_size": 64},
        train={"epochs": 3, "limit_train_batches": 8, "min_lr": 0.0, "warmup_lr": 0.0},
    )
    pruner = {"type": "hyperband", "min_epochs": 1, "reduction_factor": 4}
    space = lr_grid(3e-3, 1e-9)
    path = study_file("hyperband", exp=exp, space=space, sampler="grid", pruner=pruner)
    optuna_study, log = sweep(path, tmp_path)
    good, bad = optuna_study.trials
    assert good.state is TrialState.COMPLETE and list(good.intermediate_values) == [0, 1, 2]
    assert bad.state is TrialState.PRUNED
    assert list(bad.intermediate_values) == [0, 1]  # 2 of its 3 epochs, then stopped
    assert bad.intermediate_values[1] < good.intermediate_values[1]
    # Hyperband's successive halving recorded both at its first rung (a median pruner would not).
    assert bad.system_attrs["completed_rung_0"] == bad.intermediate_values[1]
    assert good.system_attrs["completed_rung_0"] == good.intermediate_values[1]
    store = RunStore(tmp_path / "store")
    run = store.require(bad.user_attrs["run_id"])
    assert store.state(run.run_id) is RunState.INTERRUPTED  # not failed, not faked finished
    assert run.final is None and run.last_checkpoint is not None  # no result; resumable
    assert store.state(good.user_attrs["run_id"]) is RunState.FINISHED
    text = status_text(load_study(path), optuna_study, StorageLocation(journal=Path("x")))
    assert "pruned after epoch 2" in text


@pytest.mark.slow
def test_a_multi_objective_study_yields_a_pareto_front(tmp_path, study_file):
    # Accuracy against FLOPs over r x s: r changes the FLOPs, s does not.
    space = {
        "r": {"type": "int", "low": 1, "high": 2, "set": ["model.stages.2.reduction"]},
        **offset_grid([0.0, 4.0]),
    }
    objectives = [
        {"metric": "val/acc1", "direction": "maximize"},
        {"metric": "flops", "direction": "minimize"},
    ]
    path = study_file("pareto", space=space, objectives=objectives, sampler="grid")
    optuna_study, _ = sweep(path, tmp_path)
    trials = optuna_study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    flops = {t.params["r"]: t.values[1] for t in trials}
    assert flops[2] < flops[1]
    front = {t.number for t in optuna_study.best_trials}
    dominated = {a.number for a in trials for b in trials if _dominates(b.values, a.values)}
    assert front and front == {t.number for t in trials} - dominated
    text = status_text(load_study(path), optuna_study, StorageLocation(journal=Path("x")))
    assert "Pareto front (maximize val/acc1, minimize flops)" in text


@pytest.mark.slow
def test_nsga2_drives_a_multi_objective_study_to_its_budget_with_a_pareto_front(
    tmp_path, study_file
):
    space = {
        "r": {"type": "int", "low": 1, "high": 2, "set": ["model.stages.2.reduction"]},
        **offset_grid([0.0, 4.0]),
    }
    objectives = [
        {"metric": "val/acc1", "direction": "maximize"},
        {"metric": "flops", "direction": "minimize"},
    ]
    sampler = {"type": "nsga2", "seed": 0, "population_size": 2}
    path = study_file("nsga2", space=space, objectives=objectives, sampler=sampler, n_trials=3)
    optuna_study, _ = sweep(path, tmp_path)
    trials = optuna_study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    # NSGA-II, not the default TPE, chose them: it tags each trial with its generation.
    assert all(any("generation" in k for k in t.system_attrs) for t in trials)
    front = {t.number for t in optuna_study.best_trials}
    dominated = {a.number for a in trials for b in trials if _dominates(b.values, a.values)}
    assert front and front == {t.number for t in trials} - dominated


def _dominates(a: list[float], b: list[float]) -> bool:
    """Whether a is at least as good as b in both objectives (acc up, flops down) and better
    in one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


@pytest.mark.slow
def test_resuming_completes_the_budget_and_reuses_finished_runs(tmp_path, study_file):
    space = {"s": {"type": "float", "low": 0.0, "high": 8.0, "step": 4.0, "set": OFFSET_KEYS}}
    path = study_file("budget", space=space, sampler={"type": "random", "seed": 3}, n_trials=2)
    optuna_study, _ = sweep(path, tmp_path)
    assert len(optuna_study.trials) == 2
    optuna_study, log = sweep(
        path, tmp_path
    )  # the same command again: the budget is used, nothing runs
    assert len(optuna_study.trials) == 2 and not any("trial" in line for line in log)

    bigger = study_file("budget", space=space, sampler={"type": "random", "seed": 3}, n_trials=5)
    optuna_study, log = sweep(bigger, tmp_path)  # budget 5: three more, never 5 more
    trials = optuna_study.trials
    assert len(trials) == 5 and all(t.state is TrialState.COMPLETE for t in trials)
    # Three values of s, five trials: some configs repeat, and their runs are reused.
    runs = [t.user_attrs["run_id"] for t in trials]
    reused = [t for t in trials if t.user_attrs["run"] == "reused"]
    assert len(set(runs)) <= 3 and len(reused) == 5 - len(set(runs))
    assert all(RunStore(tmp_path / "store").require(r).attempts == 1 for r in set(runs))


def test_status_lists_state_params_values_and_run_id(tmp_path, study_file):
    path = study_file("status", space=offset_grid([0.0, 2.0]), sampler="grid")
    study = load_study(path)
    location = StorageLocation(journal=tmp_path / "status.journal")
    assert "not started" in status_text(study, load_stored_study(study, location), location)
    optuna_study, _ = sweep(path, tmp_path)
    text = status_text(
        study,
        load_stored_study(study, StorageLocation(journal=tmp_path / "status.journal")),
        location,
    )
    lines = text.splitlines()
    assert "2/2 trials of the budget used (2 complete)" in lines[0]
    assert lines[1].split() == ["#", "state", "val/acc1", "params", "run", "id", "note"]
    for trial, line in zip(optuna_study.trials, lines[2:4], strict=True):
        assert line.split()[:5] == [
            str(trial.number),
            "COMPLETE",
            f"{trial.value:.4g}",
            f"s={trial.params['s']:.4g}",
            trial.user_attrs["run_id"],
        ]
    assert lines[4].startswith("best (maximize val/acc1): trial #")


@pytest.mark.slow
def test_tpe_samples_a_conditional_space_past_its_startup_trials(tmp_path, study_file):
    space = {
        "offsets": {
            "type": "categorical",
            "choices": [True, False],
            "set": ["model.stages.3.offsets"],
        },
        "s": {
            "type": "float",
            "low": 0.5,
            "high": 8.0,
            "log": True,
            "when": {"offsets": True},
            "set": ["model.stages.3.offset_range"],
        },
    }
    path = study_file(
        "tpe", space=space, sampler={"type": "tpe", "seed": 0, "startup_trials": 2}, n_trials=4
    )
    optuna_study, _ = sweep(path, tmp_path)
    trials = optuna_study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert all(("s" in t.params) == t.params["offsets"] for t in trials)


@pytest.mark.slow
def test_the_free_study_runs_ten_trials_and_the_model_refuses_none(tmp_path):
    """sweeps/free.yaml once let TPE draw s with clamped offsets (about 1 trial in 4 failed);
    its first 10 trials (TPE's random start-up) now all train, on tiny data."""
    repo = Path(__file__).resolve().parents[2]
    text = (repo / "sweeps" / "free.yaml").read_text()
    text = text.replace("../experiments/", f"{repo}/experiments/").replace(
        "n_trials: 60", "n_trials: 10"
    )
    path = tmp_path / "free.yaml"
    path.write_text(text)
    tiny = {f"data.{k}": v for k, v in TINY_DATA.items() if k != "name"}
    tiny.update({"train.epochs": 2, "train.warmup_epochs": 0, "train.val_every_n_epochs": 1})
    tiny["train.threads"] = 1
    optuna_study, lines = sweep(path, tmp_path, tiny)
    states = [t.state for t in optuna_study.trials]
    assert len(states) == 10 and TrialState.FAIL not in states, lines
    assert {t.params["offsets"] for t in optuna_study.trials} == {
        True,
        False,
    }  # both branches drawn


@pytest.mark.parametrize("fault", ["garbage status", "deleted"])
def test_a_complete_trials_damaged_or_deleted_run_is_trained_again(tmp_path, study_file, fault):
    """The store lost a finished trial's run (a damaged status.json, or the directory gone):
    the next sweep quarantines what is left, trains the run again under the same id and keeps
    the trial; the retrained run's metrics equal the lost one's (deterministic training)."""
    path = study_file("restore", space=offset_grid([0.0]), sampler={"type": "grid"})
    optuna_study, _ = sweep(path, tmp_path)
    (trial,) = optuna_study.trials
    run_id = trial.user_attrs["run_id"]
    store = RunStore(tmp_path / "store")
    before = store.require(run_id).final
    run_dir = store.run_dir(run_id)
    if fault == "deleted":
        for item in sorted(run_dir.rglob("*"), reverse=True):
            item.rmdir() if item.is_dir() else item.unlink()
        run_dir.rmdir()
    else:
        (run_dir / "status.json").write_bytes(b"\xff\xfe not json")

    optuna_study, log = sweep(path, tmp_path)
    assert [t.number for t in optuna_study.trials] == [0]  # no new trial: the budget is used
    assert any("missing or damaged; training it again" in line for line in log), log
    after = store.require(run_id)
    assert after.state is RunState.FINISHED
    for metric in ("val/acc1", "val/loss", "train/loss_epoch"):
        assert after.final[metric] == before[metric], metric
    quarantined = list((tmp_path / "store" / "quarantine").glob(f"{run_id}.*"))
    assert len(quarantined) == (1 if fault == "garbage status" else 0)
