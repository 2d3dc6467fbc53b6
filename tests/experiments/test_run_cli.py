"""`dat-lab run` as users run it: real subprocesses, kill -9, Ctrl-C, concurrent processes,
bad input. Every run is real Lightning training of dat_nano on a few dozen shapes images."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
from experiment_helpers import events, run, start, tiny_imagefolder, write_experiment

from dat_lab.cli import main
from dat_lab.experiments.spec import load_experiment
from dat_lab.experiments.store import RunState, RunStore
from dat_lab.schema import config_files

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = config_files(REPO / "experiments")
LOSSES = ("train/loss", "train/loss_epoch", "val/loss", "val/acc1")


def _wait_for(path: Path, proc, timeout: float = 240.0) -> None:
    """Poll until ``path`` exists; fail if ``proc`` ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, (
            f"the run ended before {path.name} appeared:\n{proc.stdout.read()}"
        )
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.02)


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_resumes_exactly_and_skips_finished_runs(
    tmp_path, cache, capsys
):
    variants = {"a": {}, "b": {"model.stages.3.offset_range": 4}}
    train = {"epochs": 3, "ckpt_every_n_steps": 2}
    exp = write_experiment(tmp_path / "exp.yaml", variants, train=train, data={"train_size": 64})
    ref = write_experiment(
        tmp_path / "ref.yaml", {"b": variants["b"]}, train=train, data={"train_size": 64}
    )
    _, (a, b) = load_experiment(exp)
    assert load_experiment(ref)[1][0].run_id == b.run_id  # the same run, trained without a kill
    store, ref_store = RunStore(tmp_path / "store"), RunStore(tmp_path / "ref_store")

    reference = start(
        tmp_path,
        cache,
        "run",
        ref,
        "--store",
        ref_store.root,
        "--workers",
        "1",
        log=tmp_path / "ref.log",
    )
    victim = start(tmp_path, cache, "run", exp, "--store", store.root, "--workers", "1")
    _wait_for(store.run_dir(b.run_id) / "checkpoints" / "last.ckpt", victim)
    victim.send_signal(signal.SIGKILL)  # mid-run: a checkpoint exists, training goes on
    victim.wait(timeout=60)
    assert store.require(b.run_id).state is RunState.RUNNING, "killed too late: b had finished"
    assert store.state(b.run_id) is RunState.INTERRUPTED
    assert store.state(a.run_id) is RunState.FINISHED
    a_final = store.run_dir(a.run_id) / "final.json"
    a_mtime = a_final.stat().st_mtime_ns

    assert main(["run", str(exp), "--store", str(store.root), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert f"| a | 0 | {a.run_id} | finished | skip |" in plan
    assert f"| b | 0 | {b.run_id} | interrupted | resume |" in plan

    rerun = run(tmp_path, cache, "run", exp, "--store", store.root)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"b seed 0 ({b.run_id}): resuming from checkpoints/last.ckpt" in rerun.stdout
    assert f"a seed 0 ({a.run_id}): skipped: finished before" in rerun.stdout
    assert a_final.stat().st_mtime_ns == a_mtime and len(events(store, a.run_id, "running")) == 1
    assert [e["attempt"] for e in events(store, b.run_id, "running")] == [1, 2]

    assert reference.wait(timeout=300) == 0, (tmp_path / "ref.log").read_text()
    resumed, uninterrupted = store.require(b.run_id).final, ref_store.require(b.run_id).final
    assert resumed["steps"] == uninterrupted["steps"] == 12
    for key in LOSSES:
        assert resumed[key] == pytest.approx(uninterrupted[key], abs=1e-6), key
    assert len(store.require(b.run_id).provenance["resumed"]) == 1
    assert len(store.require(b.run_id).metrics_csvs) == 2  # one log per attempt


@pytest.mark.slow
def test_two_processes_on_one_store_train_each_run_exactly_once(tmp_path, cache):
    """A plain `dat-lab run` and a `--workers 2` one on the same experiment and store."""
    variants = {f"s{s}": {"model.stages.3.offset_range": s} for s in (0, 2, 4, 8)}
    exp = write_experiment(tmp_path / "exp.yaml", variants, seeds=(0, 1), train={"epochs": 3},
                           data={"train_size": 128})  # fmt: skip
    _, specs = load_experiment(exp)
    store = RunStore(tmp_path / "store")

    parallel = start(tmp_path, cache, "run", exp, "--store", store.root, "--workers", "2",
                     log=tmp_path / "parallel.log")  # fmt: skip
    # Start the plain one once the parallel workers train (they take seconds to spawn), so
    # that all three walk the same list together; eight runs keep the workers busy longer
    # than the plain process takes to start.
    _wait_for(store.run_dir(specs[0].run_id) / "logs" / "version_0", parallel)
    single = start(
        tmp_path,
        cache,
        "run",
        exp,
        "--store",
        store.root,
        "--workers",
        "1",
        log=tmp_path / "single.log",
    )
    assert single.wait(timeout=400) == 0, (tmp_path / "single.log").read_text()
    assert parallel.wait(timeout=400) == 0, (tmp_path / "parallel.log").read_text()

    trainers = set()
    for spec in specs:
        assert store.require(spec.run_id).state is RunState.FINISHED
        started = events(store, spec.run_id, "running")
        assert len(started) == 1, f"{spec.variant} seed {spec.seed} trained {len(started)} times"
        trainers.add(started[0]["pid"])
    assert len(trainers) >= 2, "one process trained everything: the test proved nothing"
    parallel_log = (tmp_path / "parallel.log").read_text()
    assert "2 workers, 1 CPU thread(s) each" in parallel_log
    # A worker says it waits only for runs held outside its own `dat-lab run` (the plain
    # process here), never for those of its sibling worker, which reports them itself.
    siblings = trainers - {single.pid}
    waited_for = {int(pid) for pid in re.findall(r"held by pid (\d+)", parallel_log)}
    assert not waited_for & siblings, parallel_log


def _alive(pid: int) -> bool:
    """Running or sleeping (a zombie waiting for a reaper counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_kill_9_of_the_parent_takes_its_workers_down(tmp_path, cache):
    variants = {f"s{s}": {"model.stages.3.offset_range": s} for s in (0, 2)}
    # Long enough (~1 min a run) that a surviving worker would still be training when checked.
    exp = write_experiment(tmp_path / "exp.yaml", variants, train={"epochs": 60},
                           data={"train_size": 64})  # fmt: skip
    _, specs = load_experiment(exp)
    store = RunStore(tmp_path / "store")
    parent = start(tmp_path, cache, "run", exp, "--store", store.root, "--workers", "2")
    for spec in specs:  # both workers train
        _wait_for(store.run_dir(spec.run_id) / "logs" / "version_0", parent)
    children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
    workers = [int(pid) for pid in children]
    assert len(workers) >= 2, children  # the two workers (and maybe a resource tracker)

    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=60)
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), "workers kept training after their parent died"
    # Both runs were cut short and are resumable (their lock holders are dead).
    assert [store.state(spec.run_id) for spec in specs] == [RunState.INTERRUPTED] * 2


@pytest.mark.slow
def test_ctrl_c_exits_130_and_leaves_the_run_resumable(tmp_path, cache):
    # Many short epochs: the run is still training when the signal lands (with 4 it could
    # finish between its first checkpoint and the SIGINT, and exit 0).
    exp = write_experiment(tmp_path / "exp.yaml", train={"epochs": 200}, data={"train_size": 64})
    _, (spec,) = load_experiment(exp)
    store = RunStore(tmp_path / "store")
    proc = start(tmp_path, cache, "run", exp, "--store", store.root, "--workers", "1")
    _wait_for(store.run_dir(spec.run_id) / "checkpoints" / "last.ckpt", proc)

    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)

    assert proc.returncode == 130, out
    assert "interrupted" in out and "Traceback" not in out
    assert store.state(spec.run_id) is RunState.INTERRUPTED
    assert store.lock_holder(spec.run_id) is None  # released on the way out


@pytest.mark.slow
def test_a_failed_run_gives_exit_1_and_the_others_still_run(tmp_path, cache):
    exp = write_experiment(tmp_path / "exp.yaml", {"nan": {"train.lr": 1.0e30}, "ok": {}})
    done = run(tmp_path, cache, "run", exp, "--store", tmp_path / "store")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "nan seed 0" in done.stdout and "FAILED: non-finite loss at step 1" in done.stdout
    assert "| ok | 0 |" in done.stdout and "| finished |" in done.stdout
    assert "Traceback" not in done.stderr


BAD_INPUT = {
    # name: (file text or None for no file, extra args, expected message parts)
    "unknown key": (
        {"train": {"epocs": 2}},
        [],
        ["exp.yaml: base.train.epocs: unknown key (did you mean 'epochs'?)"],
    ),
    "wrong type": (
        {"data": {"batch_size": "four"}},
        [],
        ["exp.yaml: base.data.batch_size: expected an integer"],
    ),
    "impossible knob": (
        {"variants": {"bad": {"model.stages.0.offset_range": 4}}},
        [],
        [
            (
                "exp.yaml: variants.bad.model.stages.0.offset_range: "
                "is a deformable (D) knob but stage has no D block"
            )
        ],
    ),
    "missing data path": (
        {
            "data": {
                "name": "imagefolder",
                "path": "/nonexistent/imagenet",
                "train_size": None,
                "val_size": None,
            }
        },
        [],
        ["exp.yaml: base.data.path:", "'/nonexistent/imagenet' does not exist"],
    ),
    "unreadable YAML": ("name: x\nbase: [1\n", [], ["exp.yaml: not valid YAML"]),
    "not UTF-8": (b"\xff\xfe\x00", [], ["exp.yaml: cannot read the file"]),
    "non-mapping YAML": (
        "- a\n- b\n",
        [],
        ["exp.yaml: the top level must be a mapping of keys, got list"],
    ),
    "missing file": (None, [], ["exp.yaml: file not found"]),
    "bad override value": (
        {},
        ["train.epochs=two"],
        ["exp.yaml: train.epochs: expected an integer, got 'two' (command line override)"],
    ),
    "bad override key": (
        {},
        ["train.epoch=2"],
        ["train.epoch: unknown key (did you mean 'epochs'?)", "(command line override)"],
    ),
    "override without =": (
        {},
        ["epochs"],
        ["command line: override 'epochs' must look like key=value"],
    ),
    "override without section": (
        {},
        ["epochs=2"],
        [
            (
                "exp.yaml: epochs: override 'epochs' (command line) "
                "must start with one of model, data, train"
            )
        ],
    ),
    "no workers": (
        {},
        ["--workers", "0"],
        ["--workers: must be an integer >= 1 or 'auto', got '0'"],
    ),
}


def _bad_file(tmp_path: Path, content) -> Path:
    path = tmp_path / "exp.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, dict):
        write_experiment(
            path, content.get("variants"), train=content.get("train"), data=content.get("data")
        )
    return path


@pytest.mark.parametrize("case", BAD_INPUT, ids=str)
def test_bad_input_names_file_and_key_and_exits_2_before_training(case, tmp_path, cache, capsys):
    content, extra, expected = BAD_INPUT[case]
    path = _bad_file(tmp_path, content)
    store = tmp_path / "store"

    code = main(["run", str(path), *extra, "--store", str(store)])

    out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("error: ")
    if "not valid YAML" not in err:  # YAML's own message adds the line and column below
        assert err.count("\n") == 1, err
    for part in expected:
        assert part in err, err
    assert not store.exists() and "training" not in out  # nothing started


@pytest.mark.slow
def test_bad_input_in_a_real_process_has_no_traceback(tmp_path, cache):
    path = _bad_file(tmp_path, {"train": {"epocs": 2}})
    done = run(tmp_path, cache, "run", path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "base.train.epocs: unknown key" in done.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_dry_run_of_every_experiment_file(path, tmp_path, cache, capsys):
    overrides = {}
    if path.stem == "imagenet_dat_tiny":  # needs ImageNet: point it at a tiny folder
        overrides["data.path"] = str(tiny_imagefolder(tmp_path / "imagenet"))
    exp, specs = load_experiment(path, overrides)
    assert len(specs) == len(exp.variants) * len(exp.seeds) and exp.description.strip()
    assert len({s.run_id for s in specs}) == len(specs)  # no two variants train the same run
    args = [f"{k}={v}" for k, v in overrides.items()]

    assert main(["run", str(path), *args, "--dry-run", "--store", str(tmp_path / "store")]) == 0

    out = capsys.readouterr().out
    assert f"plan: {len(specs)} to train" in out
    for spec in specs:
        assert f"| {spec.variant} | {spec.seed} | {spec.run_id} | new | train |" in out
    assert not (tmp_path / "store").exists()  # a dry run writes nothing


def test_store_location_comes_from_the_flag_then_the_file_then_runs(
    tmp_path, cache, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    plain = write_experiment(tmp_path / "plain.yaml")
    with_store = write_experiment(tmp_path / "with_store.yaml", store="elsewhere")
    for args, expected in [
        ([str(plain)], "store runs"),
        ([str(with_store)], "store elsewhere"),
        ([str(with_store), "--store", "flag"], "store flag"),
    ]:
        assert main(["run", *args, "--dry-run"]) == 0
        assert expected in capsys.readouterr().out


def test_an_unusable_store_is_bad_input(tmp_path, cache, capsys):
    exp = write_experiment(tmp_path / "exp.yaml")
    (tmp_path / "a_file").write_text("")
    assert main(["run", str(exp), "--store", str(tmp_path / "a_file" / "runs")]) == 2
    assert "error: --store: cannot create the run store" in capsys.readouterr().err


def test_flags_before_the_overrides_plan_the_overridden_runs(tmp_path, cache, capsys):
    exp = write_experiment(tmp_path / "exp.yaml")
    _, (spec,) = load_experiment(exp, {"train.epochs": 2})
    store = tmp_path / "store"
    assert main(["run", str(exp), "--dry-run", "train.epochs=2", "--store", str(store)]) == 0
    assert f"| {spec.variant} | 0 | {spec.run_id} | new | train |" in capsys.readouterr().out
