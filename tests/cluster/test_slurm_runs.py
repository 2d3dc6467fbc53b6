"""`dat-lab run --launcher slurm` against a real SLURM cluster (2 CPUs here: keep jobs small)."""

from __future__ import annotations

import csv
import subprocess
import time
from pathlib import Path

import pytest
from experiment_helpers import events, run, write_experiment

from dat_lab.experiments.spec import load_experiment
from dat_lab.experiments.store import RunState, RunStore
from dat_lab.launchers.slurm import job_states, recorded_job

pytestmark = [pytest.mark.slow, pytest.mark.slurm]
FINAL = ("train/loss_epoch", "val/loss", "val/acc1", "steps")
VARIANTS = {"s0": {"model.stages.3.offset_range": 0}, "s4": {"model.stages.3.offset_range": 4}}


def test_a_slurm_run_of_two_variants_gives_the_local_results_and_is_never_submitted_twice(
    tmp_path, cache, slurm
):
    exp = write_experiment(tmp_path / "exp.yaml", VARIANTS, data={"train_size": 64})
    _, specs = load_experiment(exp)
    local, remote = RunStore(tmp_path / "local"), RunStore(tmp_path / "remote")

    first = run(tmp_path, cache, "run", exp, "--store", remote.root, "--launcher", "slurm")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "submitted job array" in first.stdout
    jobs = {s.run_id: recorded_job(remote, s.run_id)["job_id"] for s in specs}
    again = run(tmp_path, cache, "run", exp, "--store", remote.root, "--launcher", "slurm",
                "--wait")  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert "submitted job array" not in again.stdout  # its runs had live or finished jobs
    assert {s.run_id: recorded_job(remote, s.run_id)["job_id"] for s in specs} == jobs
    done = run(tmp_path, cache, "run", exp, "--store", local.root, "--workers", "1")
    assert done.returncode == 0, done.stdout + done.stderr

    for spec in specs:
        assert remote.require(spec.run_id).state is RunState.FINISHED
        assert len(events(remote, spec.run_id, "running")) == 1
        mine, theirs = remote.require(spec.run_id).final, local.require(spec.run_id).final
        for key in FINAL:
            assert mine[key] == pytest.approx(theirs[key], abs=1e-6), key
        log = Path(recorded_job(remote, spec.run_id)["log_dir"])
        assert log.is_relative_to(remote.root / "slurm")  # each job's log under the store
        assert f"({spec.run_id}): finished" in "".join(p.read_text() for p in log.glob("*.out"))
    status = run(tmp_path, cache, "run", exp, "--store", remote.root, "--status")
    for spec in specs:
        assert f"| {spec.run_id} | finished | {jobs[spec.run_id]} | COMPLETED |" in status.stdout
    last = run(tmp_path, cache, "run", exp, "--store", remote.root, "--launcher", "slurm")
    assert "nothing to submit" in last.stdout


def _first_steps(store: RunStore, run_id: str) -> list[int]:
    """The first logged step of each training attempt."""
    firsts = []
    for path in store.require(run_id).metrics_csvs:
        with open(path) as f:
            firsts.append(min(int(r["step"]) for r in csv.DictReader(f) if r["step"]))
    return firsts


def test_a_requeued_job_resumes_its_run_and_trains_nothing_twice(tmp_path, cache, slurm):
    train = {"epochs": 4, "ckpt_every_n_steps": 2}
    exp = write_experiment(tmp_path / "exp.yaml", {"a": {}}, train=train,
                           data={"train_size": 512})  # fmt: skip
    (spec,) = load_experiment(exp)[1]
    store, ref = RunStore(tmp_path / "store"), RunStore(tmp_path / "ref")

    sub = run(tmp_path, cache, "run", exp, "--store", store.root, "--launcher", "slurm")
    assert sub.returncode == 0, sub.stdout + sub.stderr
    job = recorded_job(store, spec.run_id)["job_id"]
    ckpt = store.run_dir(spec.run_id) / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not ckpt.exists():
        assert time.monotonic() < deadline, f"no checkpoint; job {job_states([job])}"
        time.sleep(0.05)
    subprocess.run(["scontrol", "requeue", job], check=True, timeout=30)
    # SLURM holds a requeued batch job for ~2 min (its begin time); start it now instead.
    deadline = time.monotonic() + 60
    while job_states([job]).get(job) != "PENDING" and time.monotonic() < deadline:
        time.sleep(0.2)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], timeout=30,
                   check=False)  # fmt: skip
    assert store.require(spec.run_id).state is not RunState.FINISHED, "requeued too late"
    waited = run(tmp_path, cache, "run", exp, "--store", store.root, "--launcher", "slurm",
                 "--wait", timeout=600)  # fmt: skip
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert recorded_job(store, spec.run_id)["job_id"] == job  # the same job, requeued
    done = run(tmp_path, cache, "run", exp, "--store", ref.root)
    assert done.returncode == 0, done.stdout + done.stderr

    record = store.require(spec.run_id)
    assert record.state is RunState.FINISHED
    assert len(events(store, spec.run_id, "running")) == 2  # the first start and the requeue
    firsts = _first_steps(store, spec.run_id)
    assert firsts[0] == 0 and firsts[1] > 0  # the second attempt resumed, not restarted
    for key in FINAL:
        assert record.final[key] == pytest.approx(ref.require(spec.run_id).final[key], abs=1e-6)


def test_a_ddp_run_takes_its_ranks_from_slurm_and_trains_like_one_process(tmp_path, cache, slurm):
    """train.devices=2 through SLURM: one array task of 2 srun tasks (Lightning's SLURM
    environment gives the ranks); rank 0 claims the run and the other rank follows it."""
    data = {"train_size": 64, "val_size": 32}
    ddp = write_experiment(tmp_path / "ddp.yaml", {"a": {}}, train={"devices": 2},
                           data={**data, "batch_size": 16})  # fmt: skip
    one = write_experiment(tmp_path / "one.yaml", {"a": {}}, data={**data, "batch_size": 32})
    (spec,), (ref_spec,) = load_experiment(ddp)[1], load_experiment(one)[1]
    store, ref = RunStore(tmp_path / "store"), RunStore(tmp_path / "ref")

    sub = run(tmp_path, cache, "run", ddp, "--store", store.root, "--launcher", "slurm",
              "--wait", timeout=600)  # fmt: skip
    assert sub.returncode == 0, sub.stdout + sub.stderr
    done = run(tmp_path, cache, "run", one, "--store", ref.root)
    assert done.returncode == 0, done.stdout + done.stderr

    record = store.require(spec.run_id)
    assert record.state is RunState.FINISHED and len(events(store, spec.run_id, "running")) == 1
    trained = [e for e in store.events(spec.run_id) if e["event"] != "created"]  # by the job
    assert len({e["pid"] for e in trained}) == 1  # rank 0 alone wrote it
    assert (
        store.read_json(spec.run_id, "ranks")["SLURM_JOB_ID"]
        == recorded_job(store, spec.run_id)["job_id"].split("_")[0]
    )
    for key in FINAL:
        assert record.final[key] == pytest.approx(
            ref.require(ref_spec.run_id).final[key], abs=1e-5
        )
