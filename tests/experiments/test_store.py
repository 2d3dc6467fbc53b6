"""The run store: creation by config hash, records, state changes, crash safety."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from dat_lab.experiments.store import (
    ConfigMismatch,
    RunIdentity,
    RunNotFound,
    RunState,
    RunStore,
    StoreError,
)
from dat_lab.schema import ConfigError, config_hash

WORKER = Path(__file__).with_name("_store_worker.py")
ASSETS = Path(__file__).with_name("assets")
CONFIG = {"model": {"stages": [{"attn": ["L", "D"], "offset_range": 2.0}]}, "lr": 5e-4}
IDENTITY = RunIdentity("placement", "stages_3_4", 0)


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "store")


def _created(store: RunStore, run_id: str = "run1"):
    return store.create(run_id, CONFIG, IDENTITY)


def test_create_lays_out_the_run_directory(store: RunStore):
    record = _created(store)
    assert record.path == store.root / "runs" / "run1"
    assert json.loads((record.path / "config.json").read_text()) == CONFIG
    run_doc = json.loads((record.path / "run.json").read_text())
    assert run_doc["experiment"] == "placement" and run_doc["seed"] == 0
    assert record.state is RunState.PENDING and record.attempts == 0
    assert record.logs_dir.is_dir() and record.checkpoints_dir.is_dir()
    assert record.last_checkpoint is None and record.final is None
    assert [e["event"] for e in store.events("run1")] == ["created"]


def test_create_again_with_same_config_returns_the_same_run(store: RunStore):
    first = _created(store)
    again = _created(store)
    assert again.created == first.created and again.config == first.config
    assert [e["event"] for e in store.events("run1")] == ["created"]


def test_create_accepts_a_config_dataclass(store: RunStore):
    @dataclass(frozen=True)
    class Optim:
        lr: float = 1e-3
        betas: tuple[float, float] = (0.9, 0.999)

    run_id = config_hash(Optim())
    record = store.create(run_id, Optim(), {"experiment": "e", "variant": "v", "seed": 1})
    assert record.config == {"lr": 1e-3, "betas": [0.9, 0.999]}
    assert store.create(run_id, Optim(), IDENTITY).run_id == run_id


def test_different_config_under_an_existing_run_id_is_refused(store: RunStore):
    _created(store)
    changed = json.loads(json.dumps(CONFIG))
    changed["model"]["stages"][0]["offset_range"] = 4.0
    with pytest.raises(ConfigMismatch, match=r"run1 .*model\.stages\.0\.offset_range.*2\.0.*4\.0"):
        store.create("run1", changed, IDENTITY)
    assert store.get("run1").config == CONFIG


def test_second_experiment_sharing_a_config_is_recorded_on_the_run(store: RunStore):
    _created(store)
    other = RunIdentity("offset_range", "s2", 0)
    record = store.create("run1", CONFIG, other)
    assert record.identity == IDENTITY
    assert record.identities == (IDENTITY, other)
    assert [(e.experiment, e.event) for e in store.index()] == [
        ("placement", "created"),
        ("offset_range", "attached"),
    ]


def test_identity_is_validated(store: RunStore):
    with pytest.raises(ConfigError, match="identity.seed"):
        store.create("run1", CONFIG, {"experiment": "e", "variant": "v", "seed": "0"})
    with pytest.raises(ConfigError, match="identity.sede"):
        store.create("run1", CONFIG, {"experiment": "e", "variant": "v", "sede": 0})


def test_run_ids_that_could_escape_the_store_are_refused(store: RunStore):
    for bad in ("../x", "a/b", "", ".hidden", "a..b"):
        with pytest.raises(StoreError, match="invalid run id"):
            store.run_dir(bad)


def test_unknown_run_reads_as_none_and_cannot_be_locked(store: RunStore):
    assert store.get("nope") is None
    with pytest.raises(RunNotFound, match="nope"):
        store.lock("nope")
    assert store.runs() == []


def test_find_takes_a_run_id_or_a_prefix_of_one_run(store: RunStore):
    for run_id in ("abc123", "abd456", "abc"):
        _created(store, run_id)
    assert store.find("abc").run_id == "abc"  # a whole id wins over the longer ids it starts
    assert store.find("abc1").run_id == "abc123"
    assert store.find("abd").run_id == "abd456"
    with pytest.raises(RunNotFound, match="3 runs start with 'ab'"):
        store.find("ab")
    with pytest.raises(RunNotFound, match=r"no run 'abx123' .*did you mean abc123\?"):
        store.find("abx123")


def test_runs_are_read_from_directories_without_the_index(store: RunStore):
    for i in range(3):
        store.create(f"run{i}", {**CONFIG, "lr": i * 1e-3}, RunIdentity("e", f"v{i}", i))
    store.index_path.unlink()
    assert [r.run_id for r in store.runs()] == ["run0", "run1", "run2"]
    assert store.index() == []


def test_runs_ignore_a_half_created_run_and_create_completes_it(store: RunStore):
    _created(store)
    half = store.run_dir("half")
    half.mkdir()
    (half / "config.json").write_text(json.dumps(CONFIG))  # crashed before run.json
    assert [r.run_id for r in store.runs()] == ["run1"]
    assert store.create("half", CONFIG, IDENTITY).state is RunState.PENDING


def test_torn_index_still_lists_complete_lines(store: RunStore):
    _created(store)
    with open(store.index_path, "ab") as f:
        f.write(b'{"run_id": "run2", "ev')
    assert [e.run_id for e in store.index()] == ["run1"]
    store.create("run2", {"lr": 1.0}, IDENTITY)
    assert [e.run_id for e in store.index()] == ["run1", "run2"]


def test_state_changes_need_the_runs_lock(store: RunStore):
    _created(store)
    with pytest.raises(StoreError, match="does not hold its lock"):
        store.mark_running("run1")
    assert store.get("run1").state is RunState.PENDING


def test_lifecycle_running_failed_running_finished(store: RunStore):
    _created(store)
    with store.lock("run1"):
        running = store.mark_running("run1")
        assert running.state is RunState.RUNNING and running.attempts == 1
        assert running.pid == os.getpid()
        failed = store.mark_failed("run1", "CUDA out of memory")
        assert failed.state is RunState.FAILED and failed.reason == "CUDA out of memory"
        assert store.mark_running("run1").reason is None
        done = store.mark_finished("run1", {"val/acc": 0.5, "epochs": 3})
    assert done.state is RunState.FINISHED and done.attempts == 2
    assert done.final == {"val/acc": 0.5, "epochs": 3.0}
    assert all(type(v) is float for v in done.final.values())
    events = [e["event"] for e in store.events("run1")]
    assert events == ["created", "running", "failed", "running", "finished"]
    assert [e.event for e in store.index()] == events


def test_finished_run_cannot_be_started_again(store: RunStore):
    _created(store)
    with store.lock("run1"):
        store.mark_running("run1")
        store.mark_finished("run1", {"acc": 1.0})
        with pytest.raises(StoreError, match="run1 is finished"):
            store.mark_running("run1")


def test_final_metrics_must_be_numbers(store: RunStore):
    _created(store)
    with store.lock("run1"):
        store.mark_running("run1")
        with pytest.raises(StoreError, match="'note'"):
            store.mark_finished("run1", {"acc": 1.0, "note": "good"})
    assert store.get("run1").state is RunState.RUNNING


def test_running_run_with_a_dead_worker_is_reported_interrupted(store: RunStore):
    _created(store)
    _created(store, "run2")
    with store.lock("run1"):
        store.mark_running("run1")
        assert store.state("run1") is RunState.RUNNING
        assert store.interrupted() == []
    # the lock is gone but the state still says running: the worker died mid-run
    assert store.get("run1").state is RunState.RUNNING
    assert store.state("run1") is RunState.INTERRUPTED
    assert [r.run_id for r in store.interrupted()] == ["run1"]
    assert store.state("run2") is RunState.PENDING


def test_write_json_stores_documents_but_not_the_stores_own(store: RunStore):
    _created(store)
    store.write_json("run1", "cost", {"params": 28.3e6, "flops": 4.59e9})
    assert store.get("run1").cost == {"params": 28.3e6, "flops": 4.59e9}
    assert store.read_json("run1", "cost")["params"] == 28.3e6
    for reserved in ("status", "config", "final"):
        with pytest.raises(StoreError, match="written by the store"):
            store.write_json("run1", reserved, {})
    with pytest.raises(StoreError, match="invalid document name"):
        store.write_json("run1", "../escape", {})


def test_frozen_format_1_store_still_reads(tmp_path: Path):
    root = tmp_path / "store_v1"
    shutil.copytree(ASSETS / "store_v1", root)
    store = RunStore(root)
    (record,) = store.runs()
    assert record.run_id == "3f1a9c2b7d4e"
    assert record.state is RunState.FINISHED and record.attempts == 2
    assert record.final == {"val/acc1": 0.8125, "val/loss": 0.5}
    assert record.identities == (
        RunIdentity("placement", "stages_3_4", 0),
        RunIdentity("offset_range", "s2", 0),
    )
    assert record.cost == {"flops": 4590000000.0, "params": 28320000}
    assert [e.event for e in store.index()][-1] == "finished"


@pytest.mark.slow
def test_every_file_parses_after_workers_are_killed_mid_write(store: RunStore, tmp_path: Path):
    _created(store)
    rng = random.Random(0)
    for kill in range(4):
        ready = tmp_path / f"ready{kill}"
        worker = subprocess.Popen(
            [sys.executable, str(WORKER), "churn", str(store.root), "run1", str(ready)]
        )
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()

        run_dir = store.run_dir("run1")
        for doc in run_dir.glob("*.json"):  # hidden temporaries (.NAME.HEX.tmp) are not docs
            json.loads(doc.read_text())
        events = store.events("run1")
        assert len(events) > 2 * 3 and events[0]["event"] == "created"
        record = store.get("run1")
        assert record.cost["step"] >= 2 and len(record.cost) == 301
        assert store.state("run1") in (RunState.INTERRUPTED, RunState.FAILED)
        assert store.lock_holder("run1").pid == worker.pid  # left behind by the kill
    assert store.get("run1").attempts >= 4 * 3  # each worker recovered the stale lock


@pytest.mark.slow
def test_processes_creating_one_run_at_once_create_it_once(store: RunStore):
    script = (
        "import sys, time; from pathlib import Path\n"
        "from dat_lab.experiments.store import RunStore\n"
        "go_at = float(sys.argv[2])\n"
        "while time.time() < go_at: pass\n"
        "RunStore(Path(sys.argv[1])).create('run1', {'lr': 0.1}, "
        "{'experiment': 'e', 'variant': sys.argv[3], 'seed': 0})\n"
    )
    go_at = str(time.time() + 1.5)
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(store.root), go_at, variant])
        for variant in ("a", "b", "c")
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    events = [e["event"] for e in store.events("run1")]
    assert sorted(events) == ["attached", "attached", "created"]
    record = store.get("run1")
    assert sorted(i.variant for i in record.identities) == ["a", "b", "c"]
    assert record.identities[0] == record.identity
