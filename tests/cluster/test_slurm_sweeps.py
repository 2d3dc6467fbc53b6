"""`dat-lab sweep --launcher slurm`: the workers of a study as a SLURM job array."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from dat_lab.experiments.store import RunState, RunStore
from dat_lab.sweeps.storage import StorageLocation

pytestmark = [pytest.mark.slow, pytest.mark.slurm]
SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"
sys.path.insert(0, str(SWEEPS))
from sweep_helpers import TINY_DATA, TINY_TRAIN, offset_grid, worker_env  # noqa: E402

GRID = [0.0, 2.0, 4.0, 8.0]


def test_two_slurm_workers_complete_every_point_of_a_four_point_grid_exactly_once(
    tmp_path, cache, slurm
):
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "tiny", "base": {"model": "dat_nano", "data": TINY_DATA, "train": TINY_TRAIN},
    }))  # fmt: skip
    study = tmp_path / "grid.yaml"
    study.write_text(yaml.safe_dump({"name": "grid4", "experiment": str(exp),
                                     "space": offset_grid(GRID), "sampler": "grid"}))  # fmt: skip
    store, journal = tmp_path / "store", tmp_path / "grid.journal"
    cmd = [sys.executable, "-m", "dat_lab.cli", "sweep", "--study", str(study), "--store",
           str(store), "--storage", str(journal), "--workers", "2", "--heartbeat", "2",
           "--launcher", "slurm", "--wait"]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, env=worker_env(), capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submitted job array" in done.stdout and "2 worker(s)" in done.stdout

    location = StorageLocation.parse(str(journal), Path("unused"))
    trials = optuna.load_study(study_name="grid4", storage=location.open()).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * len(GRID)
    assert sorted(t.params["s"] for t in trials) == GRID  # every point, each once
    records = [RunStore(store).require(t.user_attrs["run_id"]) for t in trials]
    assert all(r.state is RunState.FINISHED and r.attempts == 1 for r in records)
    logs = sorted((store / "slurm").glob("*_*/*_log.out"))
    assert len(logs) == 2  # one log per worker task, under the store
