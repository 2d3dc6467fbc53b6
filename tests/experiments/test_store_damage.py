"""A run store that survives damage to its own files (issue: corrupt or truncated documents,
a full disk, a report that never dies on one bad run).

One tiny experiment (two runs of dat_nano on shapes, real Lightning training) is trained once
per module; each test damages a copy of its store in one way, runs the command in-process and
checks the exit code, the one-line message, and that every finished result it did not damage
is unchanged (val/acc1 equal to the undisturbed run's, final.json untouched).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import pytorch_lightning as pl
import torch
from experiment_helpers import cli_env, dat_lab_cmd, write_experiment
from pytorch_lightning.plugins.io import TorchCheckpointIO

from dat_lab.cli import EXIT_STORE_WRITE, main
from dat_lab.experiments.check import ProblemKind, check_store
from dat_lab.experiments.documents import DamagedDocument, DamageKind, read_document
from dat_lab.experiments.durable import StoreWriteError
from dat_lab.experiments.records import read_record
from dat_lab.experiments.resume import checkpoint_problem, model_shapes
from dat_lab.experiments.runner import run_spec
from dat_lab.experiments.spec import load_experiment
from dat_lab.experiments.store import RunState, RunStore
from dat_lab.models import resolve_model_config
from dat_lab.train.checkpoint_io import AtomicCheckpointIO

pytestmark = pytest.mark.usefixtures("cache", "torch_threads")

VAL = "val/acc1"
LOSSES = ("val/loss", "train/loss_epoch")
VARIANTS = {"a": {}, "b": {"train.lr": 2.0e-3}}
TRAIN = {"epochs": 2}
DOCS = ("status", "config", "final", "cost", "provenance", "run")
FAULTS = {
    "garbage": b"\xff\xfe\x00garbage\x9c",
    "empty": b"",
    "truncated": None,  # the file's first half
}


@dataclass(frozen=True)
class Finished:
    """The undisturbed store: its experiment file, root, and each variant's run id and
    val/acc1."""

    exp: Path
    root: Path
    run_ids: dict[str, str]
    acc: dict[str, float]
    metrics: dict[str, dict[str, float]]  # val/acc1 and the losses


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Finished:
    base = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as mp:
        cache = tmp_path_factory.getbasetemp() / "experiment_cache"
        mp.setenv("XDG_CACHE_HOME", str(cache))
        mp.setenv("DAT_LAB_CACHE", str(cache / "dat_lab"))
        threads = torch.get_num_threads()
        exp = write_experiment(base / "exp.yaml", VARIANTS, train=TRAIN)
        root = base / "store"
        assert main(["run", str(exp), "--store", str(root), "--workers", "1"]) == 0
        torch.set_num_threads(threads)
    _, specs = load_experiment(exp)
    store = RunStore(root)
    run_ids = {s.variant: s.run_id for s in specs}
    finals = {v: store.require(r).final for v, r in run_ids.items()}
    metrics = {v: {k: f[k] for k in (VAL, *LOSSES)} for v, f in finals.items()}
    return Finished(exp, root, run_ids, {v: f[VAL] for v, f in finals.items()}, metrics)


def copy_store(finished: Finished, tmp_path: Path) -> RunStore:
    root = tmp_path / "store"
    shutil.copytree(finished.root, root)
    return RunStore(root)


def damage(path: Path, fault: str) -> None:
    raw = FAULTS[fault]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2] if raw is None else raw)


def final_of(store: RunStore, run_id: str) -> bytes:
    return (store.run_dir(run_id) / "final.json").read_bytes()


def assert_undamaged_unchanged(finished: Finished, store: RunStore, variants=("a", "b")) -> None:
    """Every run of ``variants`` is finished with the undisturbed val/acc1 and losses (the
    losses tell apart runs whose accuracy is the same at this tiny scale)."""
    for variant in variants:
        record = store.require(finished.run_ids[variant])
        assert record.state is RunState.FINISHED
        got = {k: record.final[k] for k in (VAL, *LOSSES)}
        assert got == finished.metrics[variant], variant


# -- the reader ----------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize(
    ("fault", "kind"),
    [("garbage", DamageKind.NOT_UTF8), ("empty", DamageKind.EMPTY),
     ("truncated", DamageKind.NOT_JSON)],
)  # fmt: skip
def test_reader_names_the_run_the_file_and_how_it_is_damaged(finished, tmp_path, doc, fault, kind):
    store = copy_store(finished, tmp_path)
    run_id = finished.run_ids["a"]
    path = store.run_dir(run_id) / f"{doc}.json"
    damage(path, fault)

    with pytest.raises(DamagedDocument) as caught:
        read_record(store.run_dir(run_id), run_id)

    err = caught.value
    assert (err.kind, err.path, err.run_id) == (kind, path, run_id)
    assert str(err).startswith(f"run {run_id}: {doc}.json is {kind.value} (")
    assert "\n" not in str(err)
    assert store.require(finished.run_ids["b"]).final[VAL] == finished.acc["b"]


def test_reader_tells_a_document_that_is_json_but_not_its_schema(tmp_path):
    path = tmp_path / "status.json"
    path.write_text(json.dumps({"state": "exploded", "attempts": 1}))
    with pytest.raises(DamagedDocument) as caught:
        read_document(path, "r1")
    assert caught.value.kind is DamageKind.NOT_SCHEMA
    assert "state: expected one of pending, running, finished, failed" in str(caught.value)
    path.write_text(json.dumps({"val/acc1": "high"}))
    with pytest.raises(DamagedDocument, match="val/acc1: expected a number"):
        read_document(path, "r1", schema="final")


# -- checkpoints ---------------------------------------------------------------------------


def another_models_checkpoint(path: Path) -> None:
    """A Lightning-layout checkpoint of dat_nano for 7 classes (the runs here have 2)."""
    from dat_lab.models import build_model

    model = build_model(resolve_model_config("dat_nano", {"num_classes": 7}))
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 0, "global_step": 2}, path)


def test_a_checkpoint_that_is_cut_short_or_another_models_is_named_so(finished, tmp_path):
    store = RunStore(finished.root)
    record = store.require(finished.run_ids["a"])
    model_cfg = load_experiment(finished.exp)[1][0].config.model
    shapes = model_shapes(model_cfg)
    assert checkpoint_problem(record.last_checkpoint, shapes) is None

    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(record.last_checkpoint.read_bytes()[:5000])
    assert checkpoint_problem(cut, shapes).startswith("does not load (")
    other = tmp_path / "other.ckpt"
    another_models_checkpoint(other)
    assert checkpoint_problem(other, shapes).startswith("is another model's (model.head")


# -- run: a damaged run is quarantined and trained again ---------------------------------

RUN_FAULTS = list(
    zip(DOCS, ("garbage", "empty", "truncated", "garbage", "truncated", "empty"), strict=True)
)


def run_cli(finished: Finished, store: RunStore, *extra: str) -> int:
    return main(["run", str(finished.exp), "--store", str(store.root), "--workers", "1", *extra])


@pytest.mark.parametrize(("doc", "fault"), RUN_FAULTS)
def test_run_quarantines_a_run_with_a_damaged_document_and_trains_it_again(
    finished, tmp_path, capsys, doc, fault
):
    store = copy_store(finished, tmp_path)
    a, b = finished.run_ids["a"], finished.run_ids["b"]
    damage(store.run_dir(a) / f"{doc}.json", fault)
    damaged = (store.run_dir(a) / f"{doc}.json").read_bytes()
    b_final = final_of(store, b)

    assert run_cli(finished, store, "--dry-run") == 0
    plan = capsys.readouterr().out
    assert f"| a | 0 | {a} | damaged ({doc}.json: " in plan
    assert "| quarantine, then train |" in plan

    assert run_cli(finished, store) == 0
    out = capsys.readouterr().out
    said = [line for line in out.splitlines() if "damaged, not trusted" in line]
    assert len(said) == 1 and f"({a}): damaged, not trusted: {doc}.json: " in said[0]
    moved = list((store.root / "quarantine").glob(f"{a}.*"))
    assert len(moved) == 1 and f"moved to quarantine/{moved[0].name}; training it again" in said[0]
    assert (moved[0] / f"{doc}.json").read_bytes() == damaged  # kept as found: nothing deleted
    assert_undamaged_unchanged(finished, store)  # a retrained, equal; b untouched
    assert final_of(store, b) == b_final


def test_report_skips_a_damaged_run_and_lists_it_with_its_file_and_error(
    finished, tmp_path, capsys
):
    store = copy_store(finished, tmp_path)
    a, b = finished.run_ids["a"], finished.run_ids["b"]
    damage(store.run_dir(a) / "final.json", "truncated")

    out = tmp_path / "report"
    assert main(["report", "--store", str(store.root), "--out", str(out), "--jobs", "1"]) == 0

    printed = capsys.readouterr().out
    assert "## damaged runs" in printed
    row = next(line for line in printed.splitlines() if line.startswith(f"| {a} |"))
    assert row.startswith(f"| {a} | final.json | final.json: not JSON (")
    runs = (out / "runs.csv").read_text()
    assert b in runs and a not in runs
    assert "damaged runs" in (out / "report.html").read_text()


# -- a full disk, a read-only store ---------------------------------------------------------

CKPT_MB = 5  # one dat_nano checkpoint here is ~4.9 MB (weights and AdamW state)


@pytest.fixture
def tmpfs(tmp_path):
    """A real small filesystem: ``mount(size_mb)`` mounts a tmpfs (root only) and returns it."""
    mounted: list[Path] = []

    def mount(size_mb: int, name: str = "disk") -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(point)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def remount(point: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(point)], check=True)


def one_run_experiment(finished: Finished, tmp_path: Path) -> Path:
    """Variant a alone: the same run id as the finished store's a."""
    return write_experiment(tmp_path / "one.yaml", {"a": VARIANTS["a"]}, train=TRAIN)


def test_a_full_disk_while_a_checkpoint_is_saved_exits_3_and_keeps_the_last_good_one(
    finished, tmp_path, tmpfs, capsys
):
    disk = tmpfs(2 * CKPT_MB + 2)  # epoch 0's two checkpoints fit; epoch 1's next one does not
    exp, root = one_run_experiment(finished, tmp_path), disk / "store"
    a = finished.run_ids["a"]
    argv = ["run", str(exp), "--store", str(root), "--workers", "1"]

    assert main(argv) == EXIT_STORE_WRITE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"error: cannot write to the run store {root}: No space left on")
    assert "[ENOSPC]" in err[0] and f"run {a} is left interrupted" in err[0]
    store = RunStore(root)
    assert store.state(a) is RunState.INTERRUPTED
    last = store.run_dir(a) / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0  # whole, and the last good one
    assert not list(root.rglob("*.tmp"))  # the cut temporary file is gone

    remount(disk, "size=64m")  # space freed
    assert main(argv) == 0
    assert f"({a}): resuming from checkpoints/last.ckpt" in capsys.readouterr().out
    assert_undamaged_unchanged(finished, store, ("a",))


class FillDisk(pl.Callback):
    """Fills the filesystem of ``path`` at the end of training: the metrics are written next."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_end(self, trainer, pl_module) -> None:
        fill(self.path)


def test_a_full_disk_while_metrics_are_written_leaves_the_run_interrupted_not_failed(
    finished, tmp_path, tmpfs, capsys
):
    disk = tmpfs(4 * CKPT_MB)
    exp, root = one_run_experiment(finished, tmp_path), disk / "store"
    (spec,) = load_experiment(exp)[1]
    store = RunStore(root)
    filler = disk / "filler"

    with pytest.raises(StoreWriteError) as caught:
        run_spec(spec, store, log=print, extra_callbacks=[FillDisk(filler)])

    message = str(caught.value)
    assert "\n" not in message and f"run store {root}: No space left on device [ENOSPC]" in message
    assert store.state(spec.run_id) is RunState.INTERRUPTED  # not failed, not finished
    assert store.require(spec.run_id).final is None
    last = store.run_dir(spec.run_id) / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1

    filler.unlink()  # space freed
    assert main(["run", str(exp), "--store", str(root), "--workers", "1"]) == 0
    assert_undamaged_unchanged(finished, store, ("a",))


def test_run_on_a_read_only_store_exits_3_naming_the_store(finished, tmp_path, tmpfs, capsys):
    disk = tmpfs(64)
    root = disk / "store"
    shutil.copytree(finished.root, root)
    remount(disk, "ro")

    assert main(["run", str(finished.exp), "--store", str(root), "--workers", "1"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot write to the run store {root}: ")
    assert "Read-only file system [EROFS]" in err[0]
    assert_undamaged_unchanged(finished, RunStore(root))


def fill(path: Path) -> None:
    """Write zeros to ``path`` until its filesystem is full."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC


def test_lightnings_checkpoint_io_cuts_the_last_checkpoint_on_a_full_disk_ours_keeps_it(tmpfs):
    """Why AtomicCheckpointIO: Lightning 2.6 writes through a temp file in the system temp
    folder and then copies it over the target, which a full disk cuts short."""
    disk = tmpfs(8)
    old, new = {"w": torch.ones(400_000)}, {"w": torch.full((600_000,), 2.0)}
    for io in (TorchCheckpointIO(), AtomicCheckpointIO()):
        path = disk / f"{type(io).__name__}.ckpt"
        io.save_checkpoint(old, path)
        fill(disk / "filler")
        with pytest.raises(OSError):
            io.save_checkpoint(new, path)
        (disk / "filler").unlink()
        survived = checkpoint_loads(path) and torch.equal(torch.load(path)["w"], old["w"])
        assert survived is isinstance(io, AtomicCheckpointIO), type(io).__name__
        path.unlink()


def checkpoint_loads(path: Path) -> bool:
    try:
        torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001 - a cut file fails in several ways
        return False
    return True


# -- journals, locks, sweeps -------------------------------------------------------------

JOURNAL_FAULTS = {
    "garbage": lambda raw: raw + b"\xff\xfe garbage\n",  # a line no writer wrote
    "empty": lambda raw: b"",
    "truncated": lambda raw: raw[: len(raw) - 7],  # the last line cut short
}


@pytest.mark.parametrize("fault", JOURNAL_FAULTS)
def test_a_damaged_events_journal_is_read_around_and_listed_by_store_check(
    finished, tmp_path, capsys, fault
):
    store = copy_store(finished, tmp_path)
    a = finished.run_ids["a"]
    journal = store.run_dir(a) / "events.jsonl"
    journal.write_bytes(JOURNAL_FAULTS[fault](journal.read_bytes()))

    assert run_cli(finished, store) == 0
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if "note: events.jsonl" in line]
    assert len(notes) == (1 if fault == "garbage" else 0), notes
    assert f"({a}): skipped: finished before" in out
    assert_undamaged_unchanged(finished, store)

    problems = [p for p in check_store(store) if p.path == journal]
    assert len(problems) == 1 and problems[0].kind is ProblemKind.DAMAGED_DOCUMENT


def test_a_lock_file_holding_garbage_is_a_stale_lock(finished, tmp_path, capsys):
    store = copy_store(finished, tmp_path)
    a = finished.run_ids["a"]
    lock = store.lock_path(a)
    lock.write_bytes(b"\x00\x13garbage")
    os.utime(lock, (1, 1))  # older than the grace period of a lock being written

    assert store.state(a) is RunState.FINISHED
    assert run_cli(finished, store) == 0
    assert f"({a}): skipped: finished before" in capsys.readouterr().out
    assert_undamaged_unchanged(finished, store)
    (problem,) = check_store(store)
    assert (problem.kind, problem.path) == (ProblemKind.STALE_LOCK, lock)
    assert problem.detail == "holds no lock record"


def sweep_journal_naming(root: Path, run_ids: list[str]) -> Path:
    """An Optuna journal under the store whose finished trials name ``run_ids``."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = root / "sweeps" / "s.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name="s", storage=JournalStorage(JournalFileBackend(str(path)))
    )
    dist = optuna.distributions.FloatDistribution(0.0, 1.0)
    for i, run_id in enumerate(run_ids):
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": i / 10},
                distributions={"x": dist},
                value=0.5,
                user_attrs={"run_id": run_id},
            )  # fmt: skip
        )
    return path


def test_report_lists_a_run_that_a_sweeps_journal_names_but_the_store_lacks(
    finished, tmp_path, capsys
):
    store = copy_store(finished, tmp_path)
    sweep_journal_naming(store.root, ["gone0123456789ab"])

    out = tmp_path / "report"
    assert main(["report", "--store", str(store.root), "--out", str(out), "--jobs", "1"]) == 0
    printed = capsys.readouterr().out
    row = "| gone0123456789ab | runs/gone0123456789ab | missing: trial 0 of study 's' |"
    assert row in printed
    assert_undamaged_unchanged(finished, store)
    missing = [p for p in _check(store) if p.kind is ProblemKind.MISSING_RUN]
    assert [p.run_id for p in missing] == ["gone0123456789ab"]


def _check(store: RunStore) -> list:
    """What `dat-lab store check` lists: the store's problems and the sweeps' missing runs."""
    from dat_lab.commands.store import find_problems

    return find_problems(store)


# -- checkpoints at the resume path ----------------------------------------------------------


def interrupt(store: RunStore, run_id: str) -> None:
    """Make a finished run look as a worker killed in its last epoch leaves it."""
    path = store.run_dir(run_id)
    status = json.loads((path / "status.json").read_text())
    (path / "status.json").write_text(json.dumps({**status, "state": "running"}))
    (path / "final.json").unlink()


def test_another_models_checkpoint_at_the_resume_path_is_set_aside_and_the_run_resumes(
    finished, tmp_path, capsys
):
    store = copy_store(finished, tmp_path)
    a = finished.run_ids["a"]
    interrupt(store, a)
    another_models_checkpoint(store.run_dir(a) / "checkpoints" / "last.ckpt")

    assert run_cli(finished, store) == 0
    out = capsys.readouterr().out
    said = next(line for line in out.splitlines() if "checkpoints/last.ckpt is" in line)
    assert "checkpoints/last.ckpt is another model's (model." in said and "set aside to" in said
    assert f"({a}): resuming from checkpoints/best-epoch000.ckpt" in out
    assert len(list((store.root / "quarantine").rglob("last.ckpt"))) == 1
    assert_undamaged_unchanged(finished, store)


def test_a_run_with_no_checkpoint_that_loads_trains_again_from_scratch(finished, tmp_path, capsys):
    store = copy_store(finished, tmp_path)
    a = finished.run_ids["a"]
    interrupt(store, a)
    ckpts = store.run_dir(a) / "checkpoints"
    damage(ckpts / "last.ckpt", "truncated")
    damage(ckpts / "best-epoch000.ckpt", "garbage")

    assert run_cli(finished, store) == 0
    out = capsys.readouterr().out
    assert out.count("does not load") == 2
    assert f"({a}): training from scratch (no checkpoint loads)" in out
    assert_undamaged_unchanged(finished, store)


# -- dat-lab store check ---------------------------------------------------------------------


def clone_run(store: RunStore, run_id: str, new_id: str, checkpoints: bool = False) -> Path:
    """A copy of a finished run under another id (each clone holds one fault); without its
    checkpoints unless asked (checking one takes about half a second)."""
    dest = store.run_dir(new_id)
    skip = None if checkpoints else shutil.ignore_patterns("*.ckpt")
    shutil.copytree(store.run_dir(run_id), dest, ignore=skip)
    return dest


def store_with_every_fault(finished: Finished, tmp_path: Path) -> tuple[RunStore, set]:
    """A copy of the finished store plus one clone of run a per fault; the expected
    ``(kind, path relative to the store)`` of each fault."""
    store = copy_store(finished, tmp_path)
    a, kind = finished.run_ids["a"], ProblemKind
    expected = set()

    def expect(k: ProblemKind, path: Path) -> None:
        expected.add((k, str(path.relative_to(store.root))))

    for doc, fault in RUN_FAULTS:  # status, config, final, cost, provenance, run.json
        path = clone_run(store, a, f"doc-{doc}") / f"{doc}.json"
        damage(path, fault)
        expect(kind.DAMAGED_DOCUMENT, path)
    for fault, change in JOURNAL_FAULTS.items():
        path = clone_run(store, a, f"journal-{fault}") / "events.jsonl"
        path.write_bytes(change(path.read_bytes()))
        expect(kind.DAMAGED_DOCUMENT, path)
    lock = clone_run(store, a, "lock-garbage") / "run.lock"
    lock.write_bytes(b"\x00garbage")
    os.utime(lock, (1, 1))
    expect(kind.STALE_LOCK, lock)
    orphan = clone_run(store, a, "orphan") / ".final.json.0123abcd.tmp"
    orphan.write_text("{")
    expect(kind.ORPHANED_TEMP, orphan)
    cut = clone_run(store, a, "ckpt-cut", checkpoints=True) / "checkpoints" / "last.ckpt"
    damage(cut, "truncated")
    expect(kind.BAD_CHECKPOINT, cut)
    other = (
        clone_run(store, a, "ckpt-other", checkpoints=True) / "checkpoints" / "best-epoch000.ckpt"
    )
    another_models_checkpoint(other)
    expect(kind.BAD_CHECKPOINT, other)
    sweep_journal_naming(store.root, ["gone0123456789ab"])
    expect(kind.MISSING_RUN, store.run_dir("gone0123456789ab"))
    return store, expected


def test_store_check_lists_every_fault_exactly_once_and_repair_sets_them_aside(
    finished, tmp_path, capsys
):
    store, expected = store_with_every_fault(finished, tmp_path)
    argv = ["store", "check", "--store", str(store.root)]

    assert main(argv) == 1
    out = capsys.readouterr().out.splitlines()
    listed = [line for line in out if line.split(":")[0] in {k.value for k in ProblemKind}]
    found = [(ProblemKind(line.split(":")[0]), line.split(": ")[1]) for line in listed]
    assert sorted(found) == sorted(expected)  # each fault once, nothing else

    assert main([*argv, "--repair"]) == 1  # the missing run cannot be moved: rerun the sweep
    repaired = capsys.readouterr().out
    assert f"repaired {len(expected) - 1} of {len(expected)}" in repaired
    assert main(argv) == 1
    left = capsys.readouterr().out
    assert "store check" in left and "1 missing run" in left  # everything else is set aside
    moved = store.root / "quarantine"
    assert (moved.glob("doc-status.*").__next__() / "status.json").is_file()  # nothing deleted
    assert_undamaged_unchanged(finished, store)
    assert run_cli(finished, store) == 0


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_dat_lab_run_on_a_full_disk_ends_in_one_line_without_a_traceback(
    finished, tmp_path, tmpfs, cache, workers
):
    """As a user sees it: a `dat-lab run` subprocess, one worker or a pool of two."""
    disk = tmpfs(2 * CKPT_MB + 2)  # not even both runs' first checkpoints fit
    root = disk / "store"
    argv = ["run", finished.exp, "--store", root, "--workers", workers]

    done = subprocess.run(
        dat_lab_cmd(*argv), cwd=tmp_path, env=cli_env(cache), capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip

    assert done.returncode == EXIT_STORE_WRITE, done.stdout + done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in (done.stderr + done.stdout).splitlines() if "error:" in line]
    assert errors and all("No space left on device [ENOSPC]" in line for line in errors)
    assert all(f"cannot write to the run store {root}" in line for line in errors)
    store = RunStore(root)
    assert all(r.state is not RunState.FAILED for r in store.runs())  # interrupted, not failed
