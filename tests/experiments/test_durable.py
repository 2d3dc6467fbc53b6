"""Atomic JSON documents and append-only journals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dat_lab.experiments import durable
from dat_lab.experiments.documents import DamageKind, read_document, read_journal


def read_records(path: Path) -> list:
    return read_journal(path).records


def test_torn_last_journal_line_is_ignored(tmp_path: Path):
    journal = tmp_path / "events.jsonl"
    for i in range(3):
        durable.append_record(journal, {"i": i})
    with open(journal, "ab") as f:
        f.write(b'{"i": 3, "trunc')  # a write cut short by a crash
    assert read_records(journal) == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_append_after_a_torn_line_is_not_swallowed_by_it(tmp_path: Path):
    journal = tmp_path / "events.jsonl"
    durable.append_record(journal, {"i": 0})
    with open(journal, "ab") as f:
        f.write(b'{"i": 1, "trunc')
    durable.append_record(journal, {"i": 2})
    assert read_records(journal) == [{"i": 0}, {"i": 2}]


def test_garbage_line_inside_a_journal_is_skipped_and_named(tmp_path: Path):
    journal = tmp_path / "events.jsonl"
    journal.write_bytes(b'{"i": 0}\nnot json\n[1, 2]\n\n{"i": 1}\n')
    read = read_journal(journal, "r1")
    assert read.records == [{"i": 0}, {"i": 1}]
    assert [(d.kind, d.detail.split(":")[0]) for d in read.damaged] == [
        (DamageKind.NOT_JSON, "line 2"),
        (DamageKind.NOT_SCHEMA, "line 3"),
    ]


def test_missing_journal_reads_as_empty(tmp_path: Path):
    assert read_records(tmp_path / "absent.jsonl") == []


@pytest.mark.slow
def test_concurrent_appends_from_two_processes_never_interleave(tmp_path: Path):
    journal = tmp_path / "index.jsonl"
    script = (
        "import sys; from pathlib import Path; from dat_lab.experiments import durable\n"
        "for i in range(300):\n"
        "    record = {'w': sys.argv[2], 'i': i, 'pad': 'x' * 3000}\n"
        "    durable.append_record(Path(sys.argv[1]), record)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(journal), w]) for w in "ab"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    records = read_records(journal)
    assert len(records) == 600
    for writer in "ab":
        assert [r["i"] for r in records if r["w"] == writer] == list(range(300))


def test_write_json_replaces_and_leaves_no_temporary_files(tmp_path: Path):
    target = tmp_path / "cost.json"
    durable.write_json(target, {"flops": 1})
    durable.write_json(target, {"flops": 2})
    assert json.loads(target.read_text()) == {"flops": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["cost.json"]


def test_publish_json_first_writer_wins(tmp_path: Path):
    target = tmp_path / "config.json"
    assert durable.publish_json(target, {"lr": 0.1}) is True
    assert durable.publish_json(target, {"lr": 0.2}) is False
    assert read_document(target) == {"lr": 0.1}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_nan_metrics_round_trip(tmp_path: Path):
    target = tmp_path / "final.json"
    durable.write_json(target, {"loss": float("nan")})
    assert read_document(target)["loss"] != read_document(target)["loss"]


@pytest.mark.slow
def test_reader_never_sees_a_half_written_document(tmp_path: Path):
    target = tmp_path / "cost.json"
    durable.write_json(target, {"i": -1})
    script = (
        "import sys; from pathlib import Path; from dat_lab.experiments import durable\n"
        "for i in range(150):\n"
        "    durable.write_json(Path(sys.argv[1]), {'i': i, 'pad': 'x' * 400_000})\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script, str(target)])
    seen = set()
    while writer.poll() is None:
        seen.add(json.loads(target.read_bytes())["i"])  # raises on a torn document
    assert writer.returncode == 0
    assert len(seen) > 10 and read_document(target)["i"] == 149
