"""``dat-lab flops``: formats, experiment files, and the exit status (0 / 1 / 2).

Run in-process (the subcommand's own parser, so other subcommands do not matter here) with the
real fvcore count of ``dat_nano``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import pytest

from dat_lab.commands import flops as flops_command
from dat_lab.flops import analytic, count_flops, handles
from dat_lab.flops import count as count_module
from dat_lab.models import build_model, get_preset

REPO = Path(__file__).resolve().parents[2]


def flops(capsys, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="dat-lab")
    flops_command.add_parser(parser.add_subparsers())
    args = parser.parse_args(["flops", *argv])
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_markdown_table_per_stage_with_totals_and_params(capsys):
    code, out, err = flops(capsys, "dat_nano")
    assert code == 0, err
    report = count_flops(get_preset("dat_nano"))
    for part in ("stem", "stages.0", "stages.1", "stages.2", "stages.3", "head"):
        assert f"| {part} |" in out
    params = sum(p.numel() for p in build_model(get_preset("dat_nano")).parameters())
    counts = f"{report.total:,} | {report.formula_total:,} | {report.residue_total:,}"
    total = f"| total | {counts} | 0 | {params:,} |"
    assert total in out
    assert "| key sampling (bilinear) |" in out and "unsupported ops: none" in out


def test_json_holds_the_report_and_per_module_rows(capsys):
    code, out, _ = flops(capsys, "dat_nano", "--format", "json", "--per-module")
    assert code == 0
    [doc] = json.loads(out)
    report = count_flops(get_preset("dat_nano"))
    assert doc["name"] == "dat_nano" and doc["ok"] is True
    assert (doc["total"], doc["params"], doc["difference"]) == (report.total, report.params, 0)
    assert len(doc["rows"]) == len(report.rows)
    d_row = next(r for r in doc["rows"] if r["kind"] == "D")
    assert d_row["fvcore"] == d_row["formula"] + sum(d_row["residue"].values())


def test_csv_per_module_has_one_column_per_residue_item(capsys):
    code, out, _ = flops(capsys, "dat_nano", "--format", "csv", "--per-module")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    fixed = {"variant", "module", "kind", "stage", "fvcore", "formula", "difference"}
    items = [k for k in rows[0] if k not in fixed]
    assert "relative position lookup (bilinear)" in items and "pre-norm LayerNorm" in items
    for row in rows:
        assert int(row["fvcore"]) == int(row["formula"]) + sum(int(row[k]) for k in items)
        assert row["difference"] == "0"
    assert {r["kind"] for r in rows} == {"stem", "merge", "L", "S", "D", "mlp", "head"}


def test_overrides_and_size_change_the_count(capsys):
    code, out, _ = flops(
        capsys,
        "dat_nano",
        "stages.2.reduction=2",
        "--set",
        "stages.0.attn=LG",
        "--size",
        "48x40",
        "--format",
        "json",
    )
    assert code == 0
    [doc] = json.loads(out)
    cfg = get_preset("dat_nano").with_stage(2, reduction=2).with_stage(0, attn="LG")
    assert doc["config_hash"] == cfg.hash and doc["size"] == [48, 40]
    assert doc["total"] == count_flops(cfg, (48, 40)).total != count_flops(cfg).total


@pytest.mark.slow
def test_an_experiment_file_gives_one_row_per_variant_resolved_like_its_runs(capsys):
    from dat_lab.experiments.spec import load_experiment

    path = REPO / "experiments" / "stage_placement.yaml"
    code, out, _ = flops(capsys, str(path), "--format", "json")
    assert code == 0
    docs = json.loads(out)
    exp, specs = load_experiment(path)
    assert [d["name"] for d in docs] == list(exp.variants)  # seeds do not add rows
    by_variant = {s.variant: s.config.model for s in specs}
    for doc in docs:  # num_classes / in_chans / img_size come from the data section
        assert doc["config_hash"] == by_variant[doc["name"]].hash and doc["ok"]
    code, out, _ = flops(capsys, str(path))
    assert out.count("\n| D_") + out.count("\n| none |") == len(exp.variants)


def test_a_difference_exits_1_and_names_the_model(capsys, monkeypatch):
    real = analytic.mlp
    monkeypatch.setattr(analytic, "mlp", lambda n, c, hidden: real(n, c, hidden) + 1)
    code, out, err = flops(capsys, "dat_nano", "--no-cache", "--per-module")
    assert code == 1
    assert "accounted for" in err and err.rstrip().endswith("in: dat_nano")
    assert "DIFFERENCES FOUND" in out
    assert "| stages.0.blocks.0.mlp | mlp |" in out and " | -1 |" in out


def test_an_unsupported_op_exits_1(capsys, monkeypatch):
    monkeypatch.delitem(handles.ZERO_COST_OPS, "aten::gelu")
    code, out, err = flops(capsys, "dat_nano", "--no-cache")
    assert code == 1 and "unsupported ops: aten::gelu" in out and "dat_nano" in err


@pytest.mark.parametrize(
    "argv, names",
    [
        (["dat_bogus"], ["model.preset", "unknown preset 'dat_bogus'", "dat_tiny"]),
        (
            ["dat_nano", "stages.2.ofset_range=3"],
            ["model.stages.2.ofset_range", "did you mean 'offset_range'"],
        ),
        (
            ["dat_nano", "--set", "stages.0.offsets=false"],
            ["model.stages.0.offsets", "no D block"],
        ),
        (["dat_nano", "stages.2.reduction"], ["must look like key=value"]),
        (["dat_nano", "--size", "32y32"], ["--size", "'32y32'"]),
        (
            ["dat_nano", "--size", "8"],
            ["--size", "cannot run at 8x8", "img_size: 8x8 leaves the feature map empty"],
        ),
        (["dat_nano", "stages.2.pos_enc=fixed", "--size", "64"], ["--size", "pos_enc fixed"]),
        (
            ["experiments/stage_placement.yaml", "model.stages.9.attn=L"],
            ["stage_placement.yaml", "model.stages"],
        ),
        (["experiments/nope.yaml"], ["experiments/nope.yaml", "file not found"]),
    ],
)
def test_bad_input_exits_2_naming_the_key_before_counting(capsys, monkeypatch, argv, names):
    def must_not_count(*args, **kwargs):
        raise AssertionError("counted despite bad input")

    monkeypatch.setattr(count_module, "count_model", must_not_count)
    monkeypatch.chdir(REPO)
    code, out, err = flops(capsys, *argv, "--no-cache")
    assert code == 2 and not out
    assert err.count("\n") == 1  # one message, no traceback
    for name in names:
        assert name in err
