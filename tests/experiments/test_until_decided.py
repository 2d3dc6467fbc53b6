"""``dat-lab run --until-decided`` on a tiny experiment: seeds are added until the claims are
decided, each an ordinary run of the store; a kill -9 in the middle of the rounds changes
neither the seeds trained nor the verdicts.

What is planted (dat_nano on scikit-learn's digits, 12 steps, seconds a run):
- an effect: ``dead`` trains with lr 1e-9, so it stays at chance (~10%) while ``a`` reaches
  ~55%: ``a better than dead`` must come out ``better``;
- an equivalence: ``a_log`` is ``a`` with ``train.log_every_n_steps: 2``, a setting that changes
  the run id but not one number of the training, so the paired differences are exactly 0:
  ``a same as a_log within 1`` must come out ``equivalent``.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
from experiment_helpers import events, run, start, write_experiment

from dat_lab.cli import main
from dat_lab.experiments.spec import load_experiment
from dat_lab.experiments.store import RunStore

MAX_SEEDS = 8
TRAIN = {
    "epochs": 2,
    "lr": 3.0e-3,
    "limit_train_batches": 6,
    "limit_val_batches": 4,
    "ckpt_every_n_steps": 2,
}
DATA = {"name": "digits", "batch_size": 32, "train_size": None, "val_size": None}
VARIANTS = {"a": {}, "dead": {"train.lr": 1.0e-9}, "a_log": {"train.log_every_n_steps": 2}}
CLAIMS = [{"better": "a", "than": "dead"}, {"same": "a", "as": "a_log", "within": 1}]
LINE = re.compile(
    r"^(?P<claim>a (?:better than dead|same as a_log within 1)): (?P<verdict>\w+) "
    r"\[(?P<low>\S+), (?P<high>\S+)\] points .*seeds (?P<n>\d+)/",
    re.M,
)


def _experiment(path: Path, seeds=(0, 1)) -> Path:
    return write_experiment(path, VARIANTS, seeds, train=TRAIN, data=DATA, claims=CLAIMS)


def _final_verdicts(out: str) -> dict[str, tuple[str, str, str, str]]:
    """The claim lines after ``stopped:`` (the summary)."""
    tail = out[out.index("stopped:") :]
    return {m["claim"]: (m["verdict"], m["low"], m["high"], m["n"]) for m in LINE.finditer(tail)}


def _until_decided(exp: Path, store: Path, *flags: str) -> list[str]:
    """``dat-lab run EXP --until-decided --max-seeds MAX_SEEDS --store STORE FLAGS``."""
    return [
        "run",
        str(exp),
        "--until-decided",
        "--max-seeds",
        str(MAX_SEEDS),
        "--store",
        str(store),
        *flags,
    ]


def _trained(store: RunStore) -> dict[tuple[str, int], int]:
    """(variant, seed) -> training attempts, for every run in the store."""
    out = {}
    for record in store.runs():
        out[(record.identity.variant, record.identity.seed)] = len(
            events(store, record.run_id, "running")
        )
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted sequential run: (experiment file, store, output)."""
    root = tmp_path_factory.mktemp("until_decided")
    exp = _experiment(root / "exp.yaml")
    args = _until_decided(exp, root / "store", "--workers", "1")
    done = run(root, root / "cache", *args, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return exp, RunStore(root / "store"), done.stdout


@pytest.mark.slow
def test_a_planted_effect_is_decided_better_in_fewer_seeds_than_max_seeds(reference):
    _, _, out = reference
    verdict, low, _, n = _final_verdicts(out)["a better than dead"]
    assert verdict == "better" and float(low) > 0
    assert int(n) < MAX_SEEDS
    assert "stopped: every claim is decided" in out
    assert "fixed design (paired t" in out and "seeds spent:" in out


@pytest.mark.slow
def test_a_planted_equivalence_is_decided_equivalent(reference):
    _, _, out = reference
    verdict, low, high, n = _final_verdicts(out)["a same as a_log within 1"]
    assert verdict == "equivalent" and -1 < float(low) <= float(high) < 1
    assert int(n) < MAX_SEEDS


@pytest.mark.slow
def test_every_added_seed_is_an_ordinary_run_with_the_id_a_file_listing_it_gives(
    reference, tmp_path
):
    exp, store, _ = reference
    trained = _trained(store)
    seeds = sorted({seed for _, seed in trained})
    assert len(seeds) > 2  # rounds added seeds
    _, listed = load_experiment(_experiment(tmp_path / "listed.yaml", tuple(seeds)))
    ids = {r.run_id for r in store.runs()}
    for spec in listed:
        if (spec.variant, spec.seed) in trained:
            assert spec.run_id in ids, (spec.variant, spec.seed)
    assert set(trained.values()) == {1}  # each trained once


@pytest.mark.slow
def test_rerunning_replays_the_rounds_without_training_and_dry_run_shows_the_state(
    reference, capsys
):
    exp, store, out = reference
    before = _trained(store)
    assert main(_until_decided(exp, store.root, "--workers", "1")) == 0
    again = capsys.readouterr().out
    assert _trained(store) == before and ": training" not in again
    assert _final_verdicts(again) == _final_verdicts(out)

    assert main(_until_decided(exp, store.root, "--dry-run")) == 0
    dry = capsys.readouterr().out
    assert _final_verdicts(dry) == _final_verdicts(out)
    assert "seeds: a [0, 1, 2" in dry


@pytest.mark.slow
def test_kill_9_in_the_middle_of_the_rounds_changes_neither_seeds_nor_verdicts(
    reference, tmp_path, cache
):
    exp, ref_store, ref_out = reference
    store = RunStore(tmp_path / "store")
    _, (*_, round_one) = load_experiment(_experiment(tmp_path / "three.yaml", (0, 1, 2)))
    args = _until_decided(exp, store.root, "--workers", "1")
    victim = start(tmp_path, cache, *args)
    target = store.run_dir(round_one.run_id) / "checkpoints" / "last.ckpt"  # a seed-2 run
    deadline = time.monotonic() + 600
    while not target.exists():
        assert victim.poll() is None, victim.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    assert "finished" not in (store.require(round_one.run_id).state.value)

    rerun = run(tmp_path, cache, *args, timeout=900)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "resuming from checkpoints/last.ckpt" in rerun.stdout
    assert _final_verdicts(rerun.stdout) == _final_verdicts(ref_out)
    trained, ref_trained = _trained(store), _trained(ref_store)
    assert trained.keys() == ref_trained.keys()  # the same seeds of the same variants
    assert trained[(round_one.variant, round_one.seed)] == 2  # resumed, not trained again
    assert sum(trained.values()) == len(trained) + 1


BAD_FLAGS = {
    "no claims": (["--until-decided"], {}, "the experiment has no claims to decide"),
    "max seeds without until": (
        ["--max-seeds", "4"],
        {"claims": CLAIMS},
        "--max-seeds: is a limit of --until-decided, which is off",
    ),
    "max seeds below the file's": (
        ["--until-decided", "--max-seeds", "1"],
        {"claims": CLAIMS},
        "--max-seeds: got 1, must be >= 2",
    ),
    "bad budget": (
        ["--until-decided", "--budget", "soon"],
        {"claims": CLAIMS},
        "--budget: got 'soon': a duration such as 2h",
    ),
    "section without claims": (
        [],
        {"until_decided": {"max_seeds": 4}},
        "until_decided: needs claims to decide",
    ),
    "section below the file's seeds": (
        [],
        {"claims": CLAIMS, "seeds": [0, 1, 2], "until_decided": {"max_seeds": 2}},
        "until_decided.max_seeds: got 2, fewer than the file's 3 seeds",
    ),
    "section bad budget": (
        [],
        {"claims": CLAIMS, "until_decided": {"budget": "-1h"}},
        "until_decided.budget: got '-1h'",
    ),
}


@pytest.mark.parametrize("case", BAD_FLAGS, ids=str)
def test_bad_until_decided_input_exits_2_before_anything_trains(case, tmp_path, cache, capsys):
    flags, top, message = BAD_FLAGS[case]
    seeds = tuple(top.pop("seeds", (0, 1)))
    path = write_experiment(tmp_path / "exp.yaml", VARIANTS, seeds, train=TRAIN, data=DATA, **top)
    store = tmp_path / "store"
    assert main(["run", str(path), *flags, "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not store.exists()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2h", 7200),
        ("90m", 5400),
        ("1h30m", 5400),
        ("600s", 600),
        ("600", 600),
        (45, 45),
        ("0.5h", 1800),
    ],
)
def test_budgets_read_as_durations(text, seconds):
    from dat_lab.experiments.stopping import parse_duration

    assert parse_duration(text, "budget") == seconds


def test_a_files_until_decided_section_makes_a_plain_run_sequential(tmp_path, cache, capsys):
    path = write_experiment(tmp_path / "exp.yaml", VARIANTS, (0, 1), train=TRAIN, data=DATA,
                            claims=CLAIMS, until_decided={"max_seeds": 4})  # fmt: skip
    store = tmp_path / "store"
    assert main(["run", str(path), "--dry-run", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "plan: 6 to train" in out  # the file's runs, as a plain dry run shows them
    assert "file's seeds: a better than dead: undecided" in out
    assert "next: 6 runs to train (a seed 0, a seed 1, dead seed 0" in out
    assert "seeds: a [0, 1], dead [0, 1], a_log [0, 1]" in out

    assert main(["run", str(path), "--dry-run", "--no-until-decided", "--store", str(store)]) == 0
    assert "file's seeds:" not in capsys.readouterr().out
    assert not store.exists()
