"""The experiment runner, in-process: real Lightning training of dat_nano on tiny shapes sets.

Subprocess behaviour (kill -9, two processes, exit codes) is in test_run_cli.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from experiment_helpers import NAN_LR, events, write_experiment

from dat_lab.experiments.pool import run_experiment
from dat_lab.experiments.runner import run_spec
from dat_lab.experiments.spec import load_experiment
from dat_lab.experiments.store import RunIdentity, RunState, RunStore
from dat_lab.schema import ConfigError, config_files

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = config_files(REPO / "experiments")


# Caches shared across the session's tests; torch's thread count restored (runs set it to 1).
pytestmark = pytest.mark.usefixtures("cache", "torch_threads")


def _quiet(_: str) -> None:
    pass


@pytest.mark.slow
def test_experiment_records_every_variant_and_seed_and_a_rerun_skips_all(tmp_path):
    path = write_experiment(
        tmp_path / "exp.yaml",
        variants={
            "s0": {"model.stages.3.offset_range": 0},
            "s4": {"model.stages.3.offset_range": 4},
        },
        seeds=(0, 1),
    )
    _, specs = load_experiment(path)
    store = RunStore(tmp_path / "store")
    lines: list[str] = []

    outcomes = run_experiment(specs, store, log=lines.append)

    assert [o.result for o in outcomes] == ["finished"] * 4
    assert len({s.run_id for s in specs}) == 4
    for spec in specs:
        record = store.require(spec.run_id)
        assert record.state is RunState.FINISHED
        assert record.config == spec.config.to_dict()
        assert (record.identity.variant, record.identity.seed) == (spec.variant, spec.seed)
        assert record.final["epochs"] == 2 and record.final["steps"] == 4  # 32 images / 16
        assert 0.0 <= record.final["val/acc1"] <= 1.0
        assert record.final["val/loss"] > 0 and record.final["train/loss_epoch"] > 0
        assert record.cost["params"] > 300_000 and record.cost["flops"] > 1_000_000
        assert record.cost["train_time_s"] > 0
        prov = record.provenance
        assert prov["seed"] == spec.seed and {"commit", "dirty"} <= prov["dat_lab"].keys()
        assert prov["packages"]["lightning"] != "unknown" and "version" in prov["torch"]
        assert prov["started"] <= prov["ended"]
        assert [p.parent.name for p in record.metrics_csvs] == ["version_0"]
        assert record.last_checkpoint is not None
        assert [e["attempt"] for e in events(store, spec.run_id, "running")] == [1]
    # One start line and one finish line per run, naming variant, seed, run id and top-1.
    for spec in specs:
        mine = [
            line for line in lines if f"{spec.variant} seed {spec.seed} ({spec.run_id})" in line
        ]
        assert (
            mine[0].endswith(": training") and "finished in" in mine[1] and "val top-1" in mine[1]
        )
    # s changes the model: the two variants did not train the same thing.
    s0, s4 = (store.require(s.run_id).final for s in specs[::2])
    assert s0["train/loss_epoch"] != s4["train/loss_epoch"]

    mtimes = {s.run_id: (store.run_dir(s.run_id) / "final.json").stat().st_mtime_ns for s in specs}
    again = run_experiment(specs, store, log=_quiet)

    assert [o.result for o in again] == ["skipped"] * 4
    for spec in specs:
        assert (store.run_dir(spec.run_id) / "final.json").stat().st_mtime_ns == mtimes[
            spec.run_id
        ]
        assert len(events(store, spec.run_id, "running")) == 1


def test_non_finite_loss_fails_the_run_with_its_step_and_the_next_run_trains(tmp_path):
    path = write_experiment(
        tmp_path / "exp.yaml", variants={"nan": {"train.lr": NAN_LR}, "ok": {}}
    )
    _, specs = load_experiment(path)
    store = RunStore(tmp_path / "store")

    outcomes = run_experiment(specs, store, log=_quiet)

    assert [o.result for o in outcomes] == ["failed", "finished"]
    nan = store.require(specs[0].run_id)
    assert nan.state is RunState.FAILED
    assert nan.reason == "non-finite loss at step 1"  # step 0 updates with lr 1e30; step 1's loss
    assert nan.final is None
    assert store.require(specs[1].run_id).state is RunState.FINISHED

    # Without --retry-failed a failed run stays failed and is not retrained...
    assert [o.result for o in run_experiment(specs, store, log=_quiet)] == [
        "not retried",
        "skipped",
    ]
    assert store.require(specs[0].run_id).attempts == 1
    # ...with it, it is retrained once (and fails again, the same way).
    retried = run_experiment(specs, store, retry_failed=True, log=_quiet)
    assert [o.result for o in retried] == ["failed", "skipped"]
    assert store.require(specs[0].run_id).attempts == 2
    assert [e["reason"] for e in events(store, specs[0].run_id, "failed")] == [
        "non-finite loss at step 1"
    ] * 2


def test_a_retried_run_that_is_fixed_finishes(tmp_path):
    """--retry-failed retrains the run from scratch; here it was broken by an outside cause
    (its data cache was unreadable), which is then fixed."""
    cache = tmp_path / "cache"
    path = write_experiment(tmp_path / "exp.yaml", data={"cache_dir": str(cache)})
    _, (spec,) = load_experiment(path)
    store = RunStore(tmp_path / "store")
    cache.write_text("not a directory")

    first = run_spec(spec, store, log=_quiet)
    assert first.result == "failed" and "Error" in first.detail  # the exception's one-line summary
    assert store.require(spec.run_id).reason == first.detail

    cache.unlink()
    retry = {spec.run_id: store.require(spec.run_id).attempts}
    second = run_spec(spec, store, retry=retry, log=_quiet)
    assert second.result == "finished"
    record = store.require(spec.run_id)
    assert record.state is RunState.FINISHED and record.attempts == 2 and record.reason is None


def test_a_run_left_running_without_a_checkpoint_is_trained_from_the_start(tmp_path):
    """A worker killed before its first checkpoint: the run is interrupted and starts over."""
    path = write_experiment(tmp_path / "exp.yaml")
    _, (spec,) = load_experiment(path)
    store = RunStore(tmp_path / "store")
    store.create(spec.run_id, spec.config.to_dict(), RunIdentity("tiny", "a", 0))
    with store.lock(spec.run_id):
        store.mark_running(spec.run_id)  # then "dies": the lock goes, the state stays running
    assert store.state(spec.run_id) is RunState.INTERRUPTED

    lines: list[str] = []
    assert run_spec(spec, store, log=lines.append).result == "finished"
    assert lines[0].endswith(": training")
    assert store.require(spec.run_id).attempts == 2


def test_the_paper_ablations_have_their_variants():
    variants = {
        p.stem: load_experiment(p)[0].variants
        for p in EXPERIMENTS
        if p.stem != "imagenet_dat_tiny"
    }
    s_values = [0, 1, 2, 3, 4, 6, 8, 12, 14, 16]  # the study sweeps all 14 of Fig. 5
    assert list(variants["offset_range"]) == [f"s{s}" for s in s_values]
    assert len(variants["attention_ablation"]) == 7
    assert len(variants["stage_placement"]) == 5
    assert len(variants["reduction"]) == 9
    _, specs = load_experiment(REPO / "experiments" / "offset_range.yaml")
    first_seed = [spec for spec in specs if spec.seed == specs[0].seed]
    for spec, s in zip(first_seed, s_values, strict=True):
        assert [st.offset_range for st in spec.config.model.stages[2:]] == [s, s]


def test_missing_data_path_is_refused_before_training(tmp_path):
    path = REPO / "experiments" / "imagenet_dat_tiny.yaml"
    with pytest.raises(ConfigError) as err:
        load_experiment(path, {"data.path": str(tmp_path / "nowhere")})
    assert err.value.key == "data.path" and "does not exist" in err.value.message


def test_run_ids_depend_on_the_resolved_config_not_the_variant_name(tmp_path):
    a = write_experiment(tmp_path / "a.yaml", variants={"first": {"train.epochs": 3}})
    b = write_experiment(
        tmp_path / "b.yaml", variants={"renamed": {}}, train={"epochs": 3}, name="other"
    )
    assert load_experiment(a)[1][0].run_id == load_experiment(b)[1][0].run_id
    assert json.dumps(load_experiment(a)[1][0].config.to_dict())  # plain data


def test_a_worker_killed_after_its_last_checkpoint_leaves_a_run_that_finishes_with_its_metrics(
    tmp_path,
):
    """Killed between the final epoch's checkpoint and "finished": nothing is left to train,
    and the resumed run reports the metrics the killed worker had computed."""
    path = write_experiment(tmp_path / "exp.yaml")
    _, (spec,) = load_experiment(path)
    done = RunStore(tmp_path / "done")
    assert run_spec(spec, done, log=_quiet).result == "finished"
    killed = RunStore(tmp_path / "killed")
    shutil.copytree(done.run_dir(spec.run_id), killed.run_dir(spec.run_id))
    status = killed.run_dir(spec.run_id) / "status.json"
    status.write_text(status.read_text().replace('"finished"', '"running"'))
    (killed.run_dir(spec.run_id) / "final.json").unlink()
    assert killed.state(spec.run_id) is RunState.INTERRUPTED

    lines: list[str] = []
    assert run_spec(spec, killed, log=lines.append).result == "finished"

    assert "resuming from checkpoints/last.ckpt" in lines[0]
    expected, got = done.require(spec.run_id).final, killed.require(spec.run_id).final
    for key in ("val/acc1", "val/loss", "train/loss_epoch", "epochs", "steps"):
        assert got[key] == expected[key], key


def test_a_run_waited_for_is_created_once_not_on_every_poll(tmp_path, monkeypatch):
    path = write_experiment(tmp_path / "exp.yaml", variants={"a": {}}, seeds=(0,))
    _, (spec,) = load_experiment(path)
    store = RunStore(tmp_path / "store")
    creates: list[str] = []
    real_create = store.create
    monkeypatch.setattr(
        store,
        "create",
        lambda run_id, *a, **k: creates.append(run_id) or real_create(run_id, *a, **k),
    )
    store.create(spec.run_id, spec.config.to_dict(), RunIdentity("other", "b", 0))
    creates.clear()
    with store.lock(spec.run_id):  # held by this process, which is alive: the run is busy
        outcomes = [run_spec(spec, store, log=_quiet).result for _ in range(3)]

    assert outcomes == ["busy"] * 3
    assert creates == [spec.run_id]  # the first poll attaches this identity, later ones read
    assert (
        RunIdentity(spec.experiment, spec.variant, spec.seed)
        in store.require(spec.run_id).identities
    )
