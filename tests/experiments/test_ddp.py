"""DDP runs on the CPU (gloo): `dat-lab run` with train.devices=2, as users run it.

Two processes at per-device batch 16 against one at batch 32: the same global batch, the
same samples in each step (the sampler shards the epoch's permutation), so the same losses
up to float rounding. Measured here: the per-step train/loss of the two differ by at most
~2e-7 (float32 sums in another order); the tolerance below is 1e-5.
"""

from __future__ import annotations

import csv
import signal
import time
from pathlib import Path

import pytest
from experiment_helpers import events, run, start, write_experiment

from dat_lab.experiments.spec import load_experiment
from dat_lab.experiments.store import RunState, RunStore

pytestmark = pytest.mark.slow
TOL = 1e-5
FINAL = ("train/loss_epoch", "val/loss", "val/acc1")
VARIANTS = {"s0": {"model.stages.3.offset_range": 0}, "s4": {"model.stages.3.offset_range": 4}}
DATA = {"train_size": 64, "val_size": 32}


def step_losses(store: RunStore, run_id: str) -> dict[int, float]:
    """``{step: train/loss}`` of a run's first attempt."""
    with open(store.require(run_id).metrics_csvs[0]) as f:
        return {
            int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f) if r["train/loss"]
        }


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_two_ddp_processes_train_each_run_like_one_process_at_the_same_global_batch(
    tmp_path, cache
):
    one = write_experiment(tmp_path / "one.yaml", VARIANTS, data={**DATA, "batch_size": 32})
    two = write_experiment(
        tmp_path / "two.yaml", VARIANTS, data={**DATA, "batch_size": 16}, train={"devices": 2}
    )
    single, ddp = RunStore(tmp_path / "single"), RunStore(tmp_path / "ddp")

    done = run(tmp_path, cache, "run", one, "--store", single.root, "--workers", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    proc = start(tmp_path, cache, "run", two, "--store", ddp.root, log=tmp_path / "ddp.log")
    assert proc.wait(timeout=600) == 0, (tmp_path / "ddp.log").read_text()
    output = (tmp_path / "ddp.log").read_text()

    assert "will wait" not in output and "held by" not in output
    for one_spec, ddp_spec in zip(load_experiment(one)[1], load_experiment(two)[1], strict=True):
        record = ddp.require(ddp_spec.run_id)
        assert record.state is RunState.FINISHED
        # Every entry of the run's journal was written by the launching process (rank 0):
        # one attempt, no rank trained it on its own, no other run was claimed by a rank.
        assert {e["pid"] for e in ddp.events(ddp_spec.run_id)} == {proc.pid}
        assert len(events(ddp, ddp_spec.run_id, "running")) == 1
        assert output.count(f"({ddp_spec.run_id}): training") == 1
        alone, group = step_losses(single, one_spec.run_id), step_losses(ddp, ddp_spec.run_id)
        assert sorted(group) == sorted(alone) == [0, 1, 2, 3]
        for step, loss in alone.items():
            assert group[step] == pytest.approx(loss, abs=TOL), f"{ddp_spec.variant} step {step}"
        final, reference = record.final, single.require(one_spec.run_id).final
        assert final["steps"] == reference["steps"] == 4
        for key in FINAL:
            assert final[key] == pytest.approx(reference[key], abs=TOL), key
    assert len(ddp.runs()) == 2  # no run of another variant or config appeared


def test_a_ddp_run_killed_with_sigkill_resumes_and_ends_where_an_uninterrupted_one_does(
    tmp_path, cache
):
    train = {"devices": 2, "epochs": 4, "ckpt_every_n_steps": 1}
    exp = write_experiment(
        tmp_path / "exp.yaml", {"a": {}}, data={**DATA, "batch_size": 16}, train=train
    )
    (spec,) = load_experiment(exp)[1]
    store, ref_store = RunStore(tmp_path / "store"), RunStore(tmp_path / "ref")
    reference = run(tmp_path, cache, "run", exp, "--store", ref_store.root, timeout=600)
    assert reference.returncode == 0, reference.stdout + reference.stderr

    victim = start(tmp_path, cache, "run", exp, "--store", store.root, log=tmp_path / "v.log")
    ckpt = store.run_dir(spec.run_id) / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not ckpt.exists():  # the first mid-epoch checkpoint: both ranks train
        assert victim.poll() is None, (tmp_path / "v.log").read_text()
        assert time.monotonic() < deadline, "no checkpoint"
        time.sleep(0.02)
    ranks = children(victim.pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    assert store.require(spec.run_id).state is RunState.RUNNING, "killed too late: it finished"
    assert ranks, "rank 1 was not a child of the launching process"
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in ranks):  # they die with rank 0
        assert time.monotonic() < deadline, f"ranks {ranks} outlived their leader"
        time.sleep(0.1)

    rerun = run(tmp_path, cache, "run", exp, "--store", store.root, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"({spec.run_id}): resuming from checkpoints/last.ckpt" in rerun.stdout
    resumed, uninterrupted = store.require(spec.run_id).final, ref_store.require(spec.run_id).final
    assert resumed["steps"] == uninterrupted["steps"] == 8
    for key in FINAL:
        assert resumed[key] == pytest.approx(uninterrupted[key], abs=1e-6), key
