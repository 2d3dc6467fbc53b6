"""Local workers: one process per GPU with its own CUDA_VISIBLE_DEVICES, CPU cores split, the
storage URL passed in the environment (never on a command line), the GPU trial overrides given
once; the launcher leaves creating the study to its workers and judges their liveness as they
do. No GPU here: the tests check the command lines and environments the launcher builds."""

from __future__ import annotations

import sys
import time

import pytest
from sweep_helpers import offset_grid, worker_env

from dat_lab.cli import build_parser
from dat_lab.commands.sweep import _parse_gpus, prepare, worker_commands
from dat_lab.schema import ConfigError
from dat_lab.sweeps.launch import WORKER_INDEX_ENV, WorkerCommands, launch, worker_envs
from dat_lab.sweeps.liveness import ATTR_HEARTBEAT, ATTR_HOST, Liveness, mark_alive
from dat_lab.sweeps.storage import STORAGE_ENV
from dat_lab.sweeps.study import open_study


def _sweep_args(*argv: str):
    return build_parser().parse_args(["sweep", *argv])


def test_each_gpu_worker_sees_only_its_gpu_and_gets_the_storage_in_its_environment():
    url = "postgresql://u:pw@h/db"
    envs = worker_envs(2, _parse_gpus("2,3"), url, cpu_count=16)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["2", "3"]
    assert [e["OMP_NUM_THREADS"] for e in envs] == ["8", "8"]
    assert all(e[STORAGE_ENV] == url for e in envs)
    assert [e[WORKER_INDEX_ENV] for e in envs] == ["0", "1"]


def test_cpu_workers_split_the_cores_and_leave_the_gpus_alone(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    envs = worker_envs(3, None, None, cpu_count=2)
    assert [e["OMP_NUM_THREADS"] for e in envs] == ["1", "1", "1"]
    assert all("CUDA_VISIBLE_DEVICES" not in e and STORAGE_ENV not in e for e in envs)


def test_gpu_workers_get_one_gpu_each_and_the_gpu_overrides_once(tmp_path, study_file):
    path = study_file("gpu", space=offset_grid([2.0]), sampler="grid")
    args = _sweep_args("--study", str(path), "--store", str(tmp_path), "--gpus", "2,3",
                       "--heartbeat", "5", "train.epochs=2")  # fmt: skip
    launcher = prepare(args)
    workers = worker_commands(args, launcher)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in workers.envs] == ["2", "3"]
    assert [e[WORKER_INDEX_ENV] for e in workers.envs] == ["0", "1"]
    trial_overrides = [a for a in workers.argv if a.startswith("train.")]
    assert trial_overrides == [
        "train.epochs=2",
        "train.accelerator=gpu",
        "train.deterministic=false",
    ]
    assert "--gpus" not in workers.argv and "--workers" not in workers.argv
    # What each worker makes of that command line: one plain worker of the same study, whose
    # trials train on its one (visible) GPU.
    assert workers.argv[:3] == [sys.executable, "-m", "dat_lab.cli"]
    worker = prepare(build_parser().parse_args(workers.argv[3:]))
    assert (worker.n_workers, worker.gpus, worker.gpu_overrides) == (1, None, {})
    train = worker.study.base.train
    assert (train.accelerator, train.deterministic, train.devices) == ("gpu", False, 1)
    assert train.epochs == 2
    assert worker.study.fingerprint() == launcher.study.fingerprint()  # the same stored study
    assert (worker.location, worker.liveness) == (launcher.location, launcher.liveness)


def test_the_users_own_gpu_choices_are_kept_and_gpus_must_split_into_trials(study_file):
    path = study_file("gpu_own", space=offset_grid([2.0]), sampler="grid")
    args = _sweep_args("--study", str(path), "--gpus", "0", "train.deterministic=true")
    workers = worker_commands(args, prepare(args))
    assert [a for a in workers.argv if a.startswith("train.")] == [
        "train.deterministic=true",
        "train.accelerator=gpu",
    ]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in workers.envs] == ["0"]  # one worker, one GPU
    with pytest.raises(ConfigError, match="must list a multiple of train.devices") as info:
        prepare(_sweep_args("--study", str(path), "--gpus", "0,1,2", "train.devices=2"))
    assert info.value.key == "train.devices"


def test_four_gpus_for_ddp_trials_of_two_devices_are_two_workers_of_two_gpus(study_file):
    path = study_file("gpu_ddp", space=offset_grid([2.0]), sampler="grid")
    args = _sweep_args("--study", str(path), "--gpus", "0,1,2,3", "train.devices=2")
    sweep = prepare(args)
    workers = worker_commands(args, sweep)
    assert sweep.n_workers == 2
    assert [e["CUDA_VISIBLE_DEVICES"] for e in workers.envs] == ["0,1", "2,3"]
    assert [e[WORKER_INDEX_ENV] for e in workers.envs] == ["0", "1"]
    worker = prepare(build_parser().parse_args(workers.argv[3:]))
    assert worker.study.base.train.devices == 2 and worker.n_workers == 1  # a DDP trial each
    with pytest.raises(ConfigError, match="one per 2 GPU") as info:
        prepare(_sweep_args("--study", str(path), "--gpus", "0,1,2,3", "--workers", "4",
                            "train.devices=2"))  # fmt: skip
    assert info.value.key == "--workers"


FINISHED_WORKER = [sys.executable, "-c", "pass"]  # stands in for a worker that found no work


def test_the_launcher_leaves_creating_the_study_to_its_workers(tmp_path, study_file):
    path = study_file("lazy", space=offset_grid([2.0]), sampler="grid")
    args = _sweep_args("--study", str(path), "--store", str(tmp_path / "store"), "--workers", "2")
    launcher = prepare(args)
    lines: list[str] = []
    workers = WorkerCommands(FINISHED_WORKER, [worker_env()])
    assert launch(workers, launcher.study, launcher.location, launcher.liveness, lines.append) == 0
    assert "not started" in lines[-1]
    assert not launcher.location.journal.exists()  # no storage opened, no study created


def test_the_launchers_status_judges_liveness_by_the_heartbeat_like_its_workers(
    tmp_path, study_file
):
    path = study_file("silent", space=offset_grid([2.0]), sampler="grid")
    args = _sweep_args("--study", str(path), "--store", str(tmp_path), "--heartbeat", "1")
    launcher = prepare(args)
    assert launcher.liveness == Liveness(interval_s=1.0, grace_s=4.0)
    # A worker on another host went silent 30 s ago: dead for workers with --heartbeat 1.
    optuna_study = open_study(launcher.study, launcher.location, launcher.location.open())
    trial = optuna_study.ask()
    mark_alive(optuna_study._storage, trial._trial_id)
    optuna_study._storage.set_trial_system_attr(trial._trial_id, ATTR_HOST, "elsewhere")
    optuna_study._storage.set_trial_system_attr(trial._trial_id, ATTR_HEARTBEAT, time.time() - 30)
    lines: list[str] = []
    workers = WorkerCommands(FINISHED_WORKER, [worker_env()])
    launch(workers, launcher.study, launcher.location, launcher.liveness, lines.append)
    (row,) = [line for line in lines[-1].splitlines() if line.startswith("0 ")]
    assert "RUNNING" in row and "sent no heartbeat for 30 s: will be retried" in row
