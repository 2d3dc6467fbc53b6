"""Local workers: one process per GPU with its own CUDA_VISIBLE_DEVICES, CPU cores split, the
storage URL passed in the environment (never on a command line), GPU trial overrides."""

from __future__ import annotations

from sweep_helpers import offset_grid

from dat_lab.commands.sweep import GPU_OVERRIDES, _gpu_overrides, _parse_gpus
from dat_lab.sweeps.launch import worker_envs
from dat_lab.sweeps.spec import load_study
from dat_lab.sweeps.storage import STORAGE_ENV


def test_each_gpu_worker_sees_only_its_gpu_and_gets_the_storage_in_its_environment():
    url = "postgresql://u:pw@h/db"
    envs = worker_envs(2, _parse_gpus("2,3"), url, cpu_count=16)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["2", "3"]
    assert [e["OMP_NUM_THREADS"] for e in envs] == ["8", "8"]
    assert all(e[STORAGE_ENV] == url for e in envs)
    assert [e["DAT_LAB_WORKER_INDEX"] for e in envs] == ["0", "1"]


def test_cpu_workers_split_the_cores_and_leave_the_gpus_alone(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    envs = worker_envs(3, None, None, cpu_count=2)
    assert [e["OMP_NUM_THREADS"] for e in envs] == ["1", "1", "1"]
    assert all("CUDA_VISIBLE_DEVICES" not in e and STORAGE_ENV not in e for e in envs)


def test_trials_on_gpus_train_on_the_gpu_without_deterministic_kernels(study_file):
    study = load_study(
        study_file("gpu", space=offset_grid([2.0]), sampler="grid"),
        _gpu_overrides({"train.epochs": 2}),
    )
    assert study.base.train.accelerator == "gpu" and study.base.train.deterministic is False
    assert study.base.train.epochs == 2
    kept = _gpu_overrides({"train.deterministic": True})  # the user's own choice wins
    assert (
        kept["train.deterministic"] is True
        and kept["train.accelerator"] == GPU_OVERRIDES["train.accelerator"]
    )
