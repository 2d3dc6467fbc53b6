"""`dat-lab report` on synthetic runs made through the real RunStore: every number checked."""

from __future__ import annotations

import math
import re
import statistics

import numpy as np
import pandas as pd
import pytest
from results_helpers import COST, add_run, experiment_configs
from scipy import stats

from dat_lab.cli import main
from dat_lab.experiments.store import RunStore
from dat_lab.results import analyses, load_runs, memberships, paper
from dat_lab.results.analyses.base import Group
from dat_lab.results.report import build_report

# Known final accuracies per (variant, seed) of the offset_range experiment; None = not finished.
RNG = np.random.default_rng(0)
ACCS = {
    "s0": [0.61, 0.64, 0.58],
    "s1": [0.70, 0.66, 0.69],
    "s2": [0.72, 0.75, 0.74],
    "s4": [0.71],  # one seed: no std, no CI
}


@pytest.fixture(scope="module")
def offset_store(tmp_path_factory):
    """offset_range runs: finished seeds with known metrics, plus a failed, a running, an
    interrupted and a pending run, and a variant whose only run failed."""
    root = tmp_path_factory.mktemp("store")
    store = RunStore(root)
    configs = dict(experiment_configs("offset_range"))
    for variant, accs in ACCS.items():
        for seed, acc in enumerate(accs):
            add_run(store, "offset_range", variant, seed, configs[variant],
                    final={"val/acc1": acc, "val/acc1_best": acc + 0.01},
                    curve=[acc - 0.1, acc], cost=_cost(seed))  # fmt: skip
    add_run(store, "offset_range", "s2", 3, configs["s2"], state="failed",
            reason="NonFiniteLossError: loss is nan at step 17",
            cost={**COST, "train_time_s": 9999.0})  # fmt: skip
    held = add_run(store, "offset_range", "s1", 3, configs["s1"], state="running")
    add_run(store, "offset_range", "s0", 3, configs["s0"], state="interrupted")
    add_run(store, "offset_range", "s4", 1, configs["s4"], state="pending")
    add_run(
        store, "offset_range", "s8", 0, configs["s8"], state="failed", reason="RuntimeError: boom"
    )
    out = root / "report"
    report = build_report(root, ["offset_range"], ("md", "latex", "csv"), out, log=lambda m: None)
    yield root, out, report
    held.release()


def _cost(seed: int) -> dict:
    return {**COST, "train_time_s": 60.0 + 7.25 * seed}


def _md_rows(text: str) -> dict[str, list[str]]:
    """Variant (without the dagger) -> cells of a Markdown table."""
    header, rows = None, {}
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if header is None:
            header = cells
            continue
        rows[cells[0].removesuffix(" †")] = dict(zip(header, cells, strict=True))
    return rows


def test_every_table_number_equals_independent_statistics(offset_store):
    _, out, _ = offset_store
    csv = pd.read_csv(out / "offset_range" / "offset_range.csv").set_index("variant")
    md = _md_rows((out / "offset_range" / "offset_range.md").read_text())
    tex = (out / "offset_range" / "offset_range.tex").read_text()
    for variant, accs in ACCS.items():
        n = len(accs)
        assert csv.loc[variant, "n"] == n
        assert md[variant]["n"] == str(n)
        mean = statistics.fmean(accs)
        assert csv.loc[variant, "mean"] == pytest.approx(mean, abs=1e-12)
        if n == 1:
            assert math.isnan(csv.loc[variant, "std"]) and math.isnan(csv.loc[variant, "ci95_low"])
            assert md[variant]["val/acc1 (%) mean ± std"] == f"{100 * mean:.2f} (1 seed)"
            continue
        std = statistics.stdev(accs)
        low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=std / math.sqrt(n))
        assert csv.loc[variant, "std"] == pytest.approx(std, abs=1e-12)
        assert csv.loc[variant, "ci95_low"] == pytest.approx(low, abs=1e-12)
        assert csv.loc[variant, "ci95_high"] == pytest.approx(high, abs=1e-12)
        cell = f"{100 * mean:.2f} ± {100 * std:.2f}"
        assert md[variant]["val/acc1 (%) mean ± std"] == cell
        assert md[variant]["95% CI"] == f"[{100 * low:.2f}, {100 * high:.2f}]"
        assert cell.replace("±", r"$\pm$") in tex
    assert csv.loc["s2", "flops"] == 6685376 and md["s2"]["FLOPs"] == "6.69M"
    assert md["s2"]["#Param"] == "395.61K"


def test_train_seconds_are_the_mean_of_the_seeds_that_count(offset_store):
    """The failed s2 run's 9999 s is not a cost of s2; a variant with no finished run has none."""
    _, out, _ = offset_store
    csv = pd.read_csv(out / "offset_range" / "offset_range.csv").set_index("variant")
    md = _md_rows((out / "offset_range" / "offset_range.md").read_text())
    for variant, accs in ACCS.items():
        expected = statistics.fmean(_cost(seed)["train_time_s"] for seed in range(len(accs)))
        assert csv.loc[variant, "train_s"] == pytest.approx(expected)
        assert md[variant]["Train s"] == f"{expected:.0f}"
    assert md["s8"]["Train s"] == "—"


def test_unfinished_and_failed_runs_are_marked_not_dropped(offset_store):
    _, out, _report = offset_store
    text = (out / "offset_range" / "offset_range.md").read_text()
    md = _md_rows(text)
    assert md["s2"]["Runs"] == "3/4 finished, 1 failed"
    assert md["s1"]["Runs"] == "3/4 finished, 1 running"
    assert md["s0"]["Runs"] == "3/4 finished, 1 interrupted"
    assert md["s4"]["Runs"] == "1/2 finished, 1 pending"
    # A variant with no finished run keeps its row, without numbers.
    assert md["s8"]["Runs"] == "0/1 finished, 1 failed"
    assert md["s8"]["val/acc1 (%) mean ± std"] == "—" and md["s8"]["n"] == "0"
    assert "s8 †" in text and "s2 †" in text
    assert (
        "† s2: seed 3 (run offset_range-s2-3) failed: NonFiniteLossError: loss is nan at step 17"
        in text
    )
    assert "† s8: seed 0 (run offset_range-s8-0) failed: RuntimeError: boom" in text
    assert "† s1: seed 3 (run offset_range-s1-3) running" in text
    tex = (out / "offset_range" / "offset_range.tex").read_text()
    assert all(k in tex for k in (r"\toprule", r"\midrule", r"\bottomrule", r"s8 $^\dagger$"))


def test_paper_numbers_beside_ours_labelled_with_both_settings(offset_store):
    _, out, _ = offset_store
    md_text = (out / "offset_range" / "offset_range.md").read_text()
    md = _md_rows(md_text)
    for variant, s in (("s0", 0.0), ("s1", 1.0), ("s2", 2.0), ("s4", 4.0), ("s8", 8.0)):
        assert md[variant]["Paper top-1 (%)"] == f"{paper.OFFSET_RANGE[s].top1:.2f}"
    assert paper.SETTING in md_text  # the paper's data set, size and epochs
    config = experiment_configs("offset_range")[0][1]
    assert f"Ours: shapes ({config['data']['shapes']['task']}" in md_text
    assert f"), {config['data']['img_size']} px, {config['train']['epochs']} epochs" in md_text


def test_report_writes_plots_and_the_index(offset_store):
    _, out, _report = offset_store
    for stem in ("offset_range", "curves"):
        for suffix, least in ((".png", 10_000), (".pdf", 5_000)):
            path = out / "offset_range" / f"{stem}{suffix}"
            assert path.stat().st_size > least, path
    index = (out / "report.md").read_text()
    assert "![offset_range](offset_range/offset_range.png)" in index
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 15 and set(runs["state"]) == {
        "finished",
        "failed",
        "running",
        "interrupted",
        "pending",
    }


def test_load_runs_one_row_per_run_with_shared_runs_in_each_experiment(tmp_path):
    store = RunStore(tmp_path)
    (variant, config), *_ = experiment_configs("offset_range")
    add_run(store, "offset_range", variant, 0, config, final={"val/acc1": 0.5})
    # The same config requested by another experiment is the same run, attached to both.
    store.create("offset_range-s0-0", {**config, "train": {**config["train"], "seed": 0}},
                 {"experiment": "other", "variant": "base", "seed": 0})  # fmt: skip
    runs = load_runs(tmp_path)
    assert len(runs) == 1
    row = runs.iloc[0]
    assert row["identities"] == (("offset_range", variant, 0), ("other", "base", 0))
    assert row["final.val/acc1"] == 0.5 and row["params"] == 395612
    assert row["config.model.stages.2.offset_range"] == 0.0 and row["knob.s"] == 0.0
    assert not [c for c in runs.columns if c.startswith("prov.")]  # no provenance written here
    members = memberships(runs)
    assert sorted(members["experiment"]) == ["offset_range", "other"]


@pytest.mark.parametrize(
    "experiment, expected",
    [("offset_range", "offset_range"), ("stage_placement", "stage_placement"),
     ("attention_ablation", "attention_ablation"), ("reduction", "reduction")],
)  # fmt: skip
def test_each_experiment_file_gets_its_paper_table(tmp_path, experiment, expected):
    store = RunStore(tmp_path)
    for i, (variant, config) in enumerate(experiment_configs(experiment)):
        add_run(store, experiment, variant, 0, config, final={"val/acc1": 0.5 + 0.01 * i})
    group = Group(experiment, memberships(load_runs(tmp_path)))
    chosen = next(a for a in analyses.TABLES if a.applies(group))
    assert chosen.NAME == expected
    table = chosen.build(group).tables[0]
    rows = {line[0]: dict(zip(table.header, line, strict=True)) for line in table.cells}
    if experiment == "stage_placement":
        assert [
            rows[v]["Paper top-1 (%)"] for v in ("D_1234", "D_234", "D_34", "D_4", "none")
        ] == ["81.70", "81.90", "82.00 (DAT)", "81.40", "81.30 (Swin-T)"]
    if experiment == "attention_ablation":
        assert rows["P_off_relative"]["Paper FLOPs"] == "4.48G"
        assert rows["S_nooff_nope"]["Paper top-1 (%)"] == "81.40"
        assert rows["S_off_fixed"]["Paper #Param"] == "29.73M"
        assert rows["DAT"]["Paper top-1 (%)"] == "82.00 (DAT)"


def test_knobs_agree_with_the_model_config(tmp_path):
    from dat_lab.models.config import DatConfig
    from dat_lab.results.knobs import run_knobs

    for experiment in ("attention_ablation", "reduction", "stage_placement"):
        for _, config in experiment_configs(experiment):
            model = DatConfig.from_dict(config["model"])
            knobs = run_knobs(config)
            d = [(i, st.deformable(i)) for i, st in enumerate(model.stages) if "D" in st.attn]
            if not d:
                assert knobs["d_stages"] == "none" and knobs["s"] is None
                continue
            assert knobs["r"] == (d[0][1].reduction if len({x.reduction for _, x in d}) == 1
                                  else "/".join(str(x.reduction) for _, x in d))  # fmt: skip
            assert knobs["pos_enc"] == d[0][1].pos_enc.value
            assert knobs["offsets"] == d[0][1].offsets
            if d[0][1].offsets:
                assert knobs["s"] == d[0][1].offset_range


def test_dat_pp_knobs_name_the_change_each_datpp_components_row_removes():
    """Read from stored configs, which omit DAT++'s knobs at DAT's defaults."""
    from dat_lab.models.config import DatConfig
    from dat_lab.results.knobs import run_knobs

    knobs = {v: run_knobs(config) for v, config in experiment_configs("datpp_components")}
    full = {"patches": "conv", "mlp": "dwconv", "lpu": True, "layer_scale": None}
    removed = {
        "dat_pp": {},
        "no_conv_patches": {"patches": "patch"},
        "no_conv_ffn": {"mlp": "plain"},
        "no_lpu": {"lpu": False},
        "N_to_S": {},
        "bounded_offsets": {},
        "DAT": {"patches": "patch", "mlp": "plain", "lpu": False},
    }
    for variant, changed in removed.items():
        assert {k: knobs[variant][k] for k in full} == full | changed, variant
    assert knobs["dat_pp"]["attn12"] == "N" and knobs["N_to_S"]["attn12"] == "S"
    assert knobs["dat_pp"]["offset_mode"] == "clamped"
    assert knobs["bounded_offsets"]["offset_mode"] == "bounded"
    for _, config in experiment_configs("datpp_components"):
        model = DatConfig.from_dict(config["model"])
        assert run_knobs(config)["mlp"] == model.mlp.value
        assert run_knobs(config)["lpu"] == model.lpu


def test_cli_report_bad_input_exits_2_naming_the_key(offset_store, capsys):
    root, out, _ = offset_store
    assert main(["report", "offset_rnage", "--store", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no experiment or study 'offset_rnage'" in err and "did you mean 'offset_range'" in err
    assert main(["report", "--format", "md,html", "--store", str(root), "--out", str(out)]) == 2
    assert "--format: unknown format 'html'" in capsys.readouterr().err
    assert main(["report", "--store", str(root / "nowhere")]) == 2
    assert "no run store" in capsys.readouterr().err


def test_cli_report_prints_the_tables(offset_store, capsys, tmp_path):
    root, _, _ = offset_store
    assert (
        main(["report", "--all", "--format", "csv", "--store", str(root), "--out", str(tmp_path)])
        == 0
    )
    printed = capsys.readouterr().out
    assert re.search(r"\| s2 † \| 2 \| 6\.69M \| 395\.61K \| 67 \| 73\.67 ± 1\.53 \|", printed)
    assert (tmp_path / "offset_range" / "offset_range.csv").is_file()
    assert not (tmp_path / "offset_range" / "offset_range.tex").exists()


def test_unchanged_groups_are_not_redrawn_and_changed_ones_are(tmp_path):
    store = RunStore(tmp_path)
    configs = dict(experiment_configs("offset_range"))
    for seed in range(2):
        add_run(store, "offset_range", "s0", seed, configs["s0"], final={"val/acc1": 0.5})
        add_run(
            store, "offset_range", "s2", seed, configs["s2"], final={"val/acc1": 0.5 + seed / 10}
        )
    out = tmp_path / "out"
    build_report(tmp_path, (), ("md",), out, log=lambda m: None, jobs=1)
    png = out / "offset_range" / "offset_range.png"
    first = png.stat().st_mtime_ns
    again = build_report(tmp_path, (), ("md",), out, log=lambda m: None, jobs=1)
    assert png.stat().st_mtime_ns == first and "| s2 | 2 |" in again.markdown
    add_run(store, "offset_range", "s2", 2, configs["s2"], final={"val/acc1": 0.9})
    third = build_report(tmp_path, (), ("md",), out, log=lambda m: None, jobs=1)
    accs = [0.5, 0.6, 0.9]
    cell = f"{100 * statistics.fmean(accs):.2f} ± {100 * statistics.stdev(accs):.2f}"
    assert (
        png.stat().st_mtime_ns != first
        and f"| s2 | 2 | 6.69M | 395.61K | — | {cell} |" in third.markdown
    )


@pytest.mark.slow
def test_analysis_script_runs_on_its_own(offset_store, tmp_path):
    import subprocess
    import sys

    from results_helpers import ROOT

    root, _, _ = offset_store
    done = subprocess.run(
        [sys.executable, str(ROOT / "analysis" / "offset_range.py"), "--store", str(root),
         "--out", str(tmp_path), "--format", "csv"],
        capture_output=True, text=True, check=True, env={"MPLBACKEND": "Agg", "PATH": ""},
    )  # fmt: skip
    assert "| s2 † | 2 |" in done.stdout
    assert (tmp_path / "offset_range" / "offset_range.csv").is_file()
    assert (tmp_path / "offset_range" / "offset_range.png").stat().st_size > 10_000


@pytest.mark.slow
def test_groups_rendered_in_worker_processes_equal_the_serial_report(tmp_path):
    store = RunStore(tmp_path)
    for experiment in ("stage_placement", "reduction"):
        for i, (variant, config) in enumerate(experiment_configs(experiment)[:3]):
            for seed in range(2):
                add_run(
                    store,
                    experiment,
                    variant,
                    seed,
                    config,
                    final={"val/acc1": 0.5 + i / 20 + seed / 50},
                )
    serial = build_report(tmp_path, (), ("md",), tmp_path / "serial", log=lambda m: None, jobs=1)
    forked = build_report(tmp_path, (), ("md",), tmp_path / "forked", log=lambda m: None, jobs=2)
    assert forked.markdown == serial.markdown and "## reduction" in forked.markdown
    names = sorted(
        p.relative_to(tmp_path / "forked") for p in (tmp_path / "forked").rglob("*.png")
    )
    assert names == sorted(
        p.relative_to(tmp_path / "serial") for p in (tmp_path / "serial").rglob("*.png")
    )
    assert len(names) >= 2


def test_an_unreachable_optuna_storage_is_bad_input_without_its_password(tmp_path):
    from dat_lab.results.studies import load_studies
    from dat_lab.schema import ConfigError

    with pytest.raises(ConfigError) as err:
        load_studies(tmp_path, "postgresql://dat:s3cr3t@127.0.0.1:1/nowhere")
    assert err.value.key == "--optuna-storage" and "s3cr3t" not in str(err.value)


def test_offset_range_rows_sort_when_one_variant_sets_s_in_one_stage_only(tmp_path):
    """A variant that moves s in stage 4 only reads "2/4" beside the plain 2.0 of the default:
    the rows still come out ordered by s, with no str-vs-float error."""
    store = RunStore(tmp_path)
    base = dict(experiment_configs("offset_range"))["s2"]
    stages = [dict(stage) for stage in base["model"]["stages"]]
    stages[3]["offset_range"] = 4.0
    mixed = {**base, "model": {**base["model"], "stages": stages}}
    for seed, (plain, stage4) in enumerate([(0.70, 0.66), (0.72, 0.65)]):
        add_run(store, "mixed_s", "default", seed, base, final={"val/acc1": plain})
        add_run(store, "mixed_s", "s4_last", seed, mixed, final={"val/acc1": stage4})
    report = build_report(tmp_path, ["mixed_s"], ("md",), tmp_path / "out", log=lambda m: None)
    text = (tmp_path / "out" / "mixed_s" / "offset_range.md").read_text()
    assert report and text.index("default") < text.index("s4_last")
