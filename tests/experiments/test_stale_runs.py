"""Runs made by other code, progress lines and runs finished by another worker, in-process.

"Other code" is made by writing another fingerprint into a trained run's provenance: the
store then holds a run exactly as an older version of the model code would have left it.
The same through a real edit of a copy of the package and the CLI is in
test_stale_code_cli.py.
"""

from __future__ import annotations

import json
import shutil

import pytest
from experiment_helpers import write_experiment

from dat_lab.experiments.locking import now_iso
from dat_lab.experiments.plan import print_plan
from dat_lab.experiments.progress import Progress, duration_text
from dat_lab.experiments.runner import Ask, run_spec
from dat_lab.experiments.spec import load_experiment
from dat_lab.experiments.stale import other_code
from dat_lab.experiments.store import RunIdentity, RunState, RunStore
from dat_lab.fingerprint import result_code_fingerprint

OLD = "0123456789ab"


# Caches shared across the session's tests; torch's thread count restored (runs set it to 1).
pytestmark = pytest.mark.usefixtures("cache", "torch_threads")


@pytest.fixture
def trained(tmp_path):
    """One finished tiny run: (spec, store)."""
    _, (spec,) = load_experiment(write_experiment(tmp_path / "exp.yaml"))
    store = RunStore(tmp_path / "store")
    assert run_spec(spec, store, log=lambda m: None).result == "finished"
    return spec, store


def _made_by_old_code(store: RunStore, run_id: str) -> None:
    path = store.run_dir(run_id) / "provenance.json"
    prov = json.loads(path.read_text())
    prov["code"]["fingerprint"] = OLD
    path.write_text(json.dumps(prov))


def _interrupt(store: RunStore, run_id: str) -> None:
    """What a worker killed after its last checkpoint leaves: running, no final metrics."""
    status = store.run_dir(run_id) / "status.json"
    status.write_text(status.read_text().replace('"finished"', '"running"'))
    (store.run_dir(run_id) / "final.json").unlink()
    assert store.state(run_id) is RunState.INTERRUPTED


def test_a_run_of_the_installed_code_is_skipped_as_before(trained) -> None:
    spec, store = trained
    assert other_code(store.require(spec.run_id).provenance) is None
    outcome = run_spec(spec, store, log=lambda m: None)
    assert outcome.result == "skipped" and outcome.detail.startswith("finished before, val top-1")
    assert "other code" not in outcome.detail


def test_skipping_a_run_of_other_code_says_so_and_rerun_stale_retrains_it(trained) -> None:
    spec, store = trained
    _made_by_old_code(store, spec.run_id)
    old_final = store.require(spec.run_id).final

    skipped = run_spec(spec, store, log=lambda m: None)
    assert skipped.result == "skipped"
    assert f"made by other code (code {OLD}" in skipped.detail
    assert f"installed code {result_code_fingerprint()}" in skipped.detail
    assert skipped.detail.endswith("--rerun-stale retrains it")

    lines: list[str] = []
    again = run_spec(spec, store, log=lines.append, ask=Ask(rerun_stale=True))
    assert again.result == "finished"
    assert "training again from scratch (--rerun-stale)" in lines[0] and lines[1].endswith(
        "training"
    )
    record = store.require(spec.run_id)
    assert record.provenance["code"]["fingerprint"] == result_code_fingerprint()
    assert "resumed" not in record.provenance  # trained from scratch, not resumed
    old = store.run_dir(spec.run_id) / "superseded" / "0"
    assert json.loads((old / "final.json").read_text()) == old_final
    assert (old / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((old / "provenance.json").read_text())["code"]["fingerprint"] == OLD
    assert [e for e in _events(store, spec.run_id) if e["event"] == "pending"]
    # Made by the installed code now: a further --rerun-stale leaves it alone.
    assert run_spec(spec, store, log=lambda m: None, ask=Ask(rerun_stale=True)).result == (
        "skipped"
    )


def test_resuming_a_checkpoint_of_other_code_says_so_and_rerun_stale_restarts_it(
    trained, tmp_path
) -> None:
    spec, store = trained
    _made_by_old_code(store, spec.run_id)
    _interrupt(store, spec.run_id)
    copy = RunStore(tmp_path / "copy")
    shutil.copytree(store.run_dir(spec.run_id), copy.run_dir(spec.run_id))

    lines: list[str] = []
    assert run_spec(spec, store, log=lines.append).result == "finished"
    assert lines[0].endswith(
        f"resuming from checkpoints/last.ckpt (checkpoint made by other code (code {OLD}, "
        f"started at {_commit_text(store, spec.run_id)}); installed code "
        f"{result_code_fingerprint()}; --rerun-stale restarts it from scratch)"
    )
    # The resumed run holds two code versions: it stays marked as made by other code.
    assert "and the installed code" in other_code(store.require(spec.run_id).provenance)

    lines.clear()
    assert run_spec(spec, copy, log=lines.append, ask=Ask(rerun_stale=True)).result == "finished"
    assert "training again from scratch" in lines[0] and lines[1].endswith(": training")
    assert other_code(copy.require(spec.run_id).provenance) is None


def _commit_text(store: RunStore, run_id: str) -> str:
    git = store.require(run_id).provenance["dat_lab"]
    commit = git["commit"][:10] if git["commit"] != "unknown" else "commit unknown"
    return commit + (" + uncommitted changes" if git.get("dirty") else "")


def test_a_run_finished_during_this_invocation_was_finished_by_another_worker(trained) -> None:
    spec, store = trained
    before = Ask(since="2000-01-01T00:00:00.000+00:00")
    detail = run_spec(spec, store, log=lambda m: None, ask=before).detail
    pid = store.require(spec.run_id).pid
    assert detail.startswith(f"finished by another worker (pid {pid} on ")
    after = Ask(since=now_iso())
    assert run_spec(spec, store, log=lambda m: None, ask=after).detail.startswith(
        "finished before"
    )


def test_the_plan_names_runs_of_other_code(trained, capsys) -> None:
    spec, store = trained
    _made_by_old_code(store, spec.run_id)
    print_plan([spec], store)
    assert f"| finished | skip (made by other code (code {OLD}" in capsys.readouterr().out
    print_plan([spec], store, rerun_stale=True)
    assert "| finished | retrain from scratch (made by other code" in capsys.readouterr().out


def test_a_run_from_before_fingerprints_is_of_unknown_code(trained) -> None:
    spec, store = trained
    path = store.run_dir(spec.run_id) / "provenance.json"
    prov = json.loads(path.read_text())
    del prov["code"]
    path.write_text(json.dumps(prov))
    detail = run_spec(spec, store, log=lambda m: None).detail
    assert "made by code of unknown version (no code fingerprint recorded)" in detail


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _finished(store: RunStore, spec, seconds: float) -> None:
    store.create(spec.run_id, spec.config.to_dict(), RunIdentity("e", spec.variant, spec.seed))
    with store.lock(spec.run_id):
        store.mark_running(spec.run_id)
        store.mark_finished(spec.run_id, {"train_time_s": seconds})


def test_progress_estimates_the_time_left_from_finished_runs(tmp_path) -> None:
    path = write_experiment(tmp_path / "exp.yaml", seeds=(0, 1, 2, 3))
    _, specs = load_experiment(path)
    store, clock = RunStore(tmp_path / "store"), Clock()

    fresh = Progress(specs, store, clock=clock)
    assert fresh.label(specs[0].run_id) == "[1/4]"  # nothing finished yet: no estimate
    fresh.start(specs[0].run_id)
    clock.now = 90.0  # the first run took 90 s
    fresh.finish(specs[0].run_id, trained=True)
    assert fresh.label(specs[1].run_id) == "[2/4, ~4 min left]"  # 3 runs x 90 s
    fresh.start(specs[1].run_id)
    clock.now = 91.0
    fresh.finish(specs[1].run_id, trained=False)  # skipped: not a training time
    assert fresh.seconds_left(specs[2].run_id) == pytest.approx(180.0)

    _finished(store, specs[0], 600.0)  # a store that already holds one run of 10 min
    two_workers = Progress(specs, store, workers=2, clock=clock)
    assert two_workers.label(specs[0].run_id) == "[1/4, ~15 min left]"  # 3 runs x 10 min / 2
    assert two_workers.label(specs[3].run_id) == "[4/4, ~5 min left]"


def test_durations_read_in_seconds_minutes_and_hours() -> None:
    assert [duration_text(s) for s in (40, 1020, 7500)] == ["40 s", "17 min", "2 h 05 min"]


def _events(store: RunStore, run_id: str) -> list[dict]:
    lines = (store.run_dir(run_id) / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]
