"""Provenance: the keys a result needs, git state, and no leaked environment."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import torch

import dat_lab
from dat_lab.experiments import provenance

SECRET = "hunter2-not-a-real-token-7f3a"
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture(scope="module")
def collected() -> dict:
    with pytest.MonkeyPatch.context() as mp:
        # Only this test's variables: an earlier deterministic training test in the same
        # process leaves Lightning's CUBLAS_WORKSPACE_CONFIG set.
        for name in provenance.RECORDED_ENV:
            mp.delenv(name, raising=False)
        mp.setenv("DAT_LAB_TEST_API_TOKEN", SECRET)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        mp.setenv("OMP_NUM_THREADS", "2")
        return provenance.collect(seed=7)


def test_provenance_has_the_keys_a_result_needs(collected: dict):
    assert collected["seed"] == 7
    assert datetime.fromisoformat(collected["started"]).utcoffset().total_seconds() == 0
    assert collected["dat_lab"]["version"] == dat_lab.__version__
    assert {"commit", "dirty"} <= set(collected["dat_lab"])
    assert collected["python"]["version"].count(".") == 2
    packages = collected["packages"]
    assert packages["torch"] == importlib.metadata.version("torch")
    assert packages["lightning"] == importlib.metadata.version("pytorch-lightning")
    for name in ("timm", "optuna", "numpy"):
        assert packages[name] == importlib.metadata.version(name)
    torch_info = collected["torch"]
    assert {"cuda_available", "cuda_version", "devices", "version"} <= set(torch_info)
    assert torch_info["cuda_available"] == torch.cuda.is_available()
    assert len(torch_info["devices"]) == torch.cuda.device_count()
    machine = collected["machine"]
    assert machine["host"] and machine["platform"] and machine["cpu_count"] >= 1


def test_provenance_is_plain_json(collected: dict):
    assert json.loads(json.dumps(collected, allow_nan=False)) == collected


def test_provenance_leaks_no_environment(collected: dict):
    text = json.dumps(collected)
    assert SECRET not in text
    assert "DAT_LAB_TEST_API_TOKEN" not in text and "AWS_SECRET" not in text
    assert collected["env"] == {"OMP_NUM_THREADS": "2"}  # only the allow-listed variables


def test_git_state_of_a_directory_outside_any_checkout_is_unknown(tmp_path: Path):
    assert provenance.git_state(tmp_path) == {"commit": "unknown", "dirty": None}


def test_git_state_without_git_installed_is_unknown(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on it
    assert provenance.git_state(Path(dat_lab.__file__).parent)["commit"] == "unknown"


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


@needs_git
def test_git_state_reports_commit_and_dirty_changes(tmp_path: Path):
    package = tmp_path / "repo" / "pkg"
    package.mkdir(parents=True)
    (package / "model.py").write_text("x = 1\n")
    _git(tmp_path / "repo", "init", "-q")
    _git(tmp_path / "repo", "add", ".")
    _git(tmp_path / "repo", "commit", "-q", "-m", "init")
    head = _git(tmp_path / "repo", "rev-parse", "HEAD")

    clean = provenance.git_state(package)
    assert clean["commit"] == head and clean["dirty"] is False

    (package / "model.py").write_text("x = 2\n")
    edited = provenance.git_state(package)
    assert edited["dirty"] is True and edited["dirty_files"] == ["pkg/model.py"]
    (package / "model.py").write_text("x = 3\n")
    assert provenance.git_state(package)["diff_sha256"] != edited["diff_sha256"]

    (package / "model.py").write_text("x = 1\n")
    (tmp_path / "repo" / "notes.txt").write_text("untracked outside the package\n")
    assert provenance.git_state(package)["dirty"] is False
    (package / "new_layer.py").write_text("y = 1\n")
    assert provenance.git_state(package)["dirty_files"] == ["pkg/new_layer.py"]


@needs_git
def test_package_in_an_ignored_directory_of_a_checkout_is_unknown(tmp_path: Path):
    repo = tmp_path / "repo"
    package = repo / ".venv" / "site-packages" / "pkg"
    package.mkdir(parents=True)
    (repo / ".gitignore").write_text(".venv/\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "init")
    assert provenance.git_state(package)["commit"] == "unknown"
