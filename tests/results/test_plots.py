"""The report's figures carry their labels and data; Optuna studies in the store are plotted."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import Rectangle
from results_helpers import add_run, experiment_configs

from dat_lab.experiments.store import RunStore
from dat_lab.results import analyses, load_runs, memberships, plots
from dat_lab.results.analyses.base import Group
from dat_lab.results.report import build_report


def _group(tmp_path, experiment, seeds=2, failed=()):
    store = RunStore(tmp_path)
    for i, (variant, config) in enumerate(experiment_configs(experiment)):
        for seed in range(seeds):
            state = "failed" if (variant, seed) in failed else "finished"
            add_run(store, experiment, variant, seed, config, state=state,
                    final={"val/acc1": 0.55 + 0.02 * i + 0.01 * seed},
                    cost={"params": 1000 + i, "flops": 1e6 * (1 + i % 3)},
                    curve=[0.5, 0.55 + 0.02 * i])  # fmt: skip
    return Group(experiment, memberships(load_runs(tmp_path)))


def _labels(fig):
    return [(ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) for ax in fig.axes]


def test_offset_plot_has_both_axes_and_our_means(tmp_path):
    group = _group(tmp_path, "offset_range")
    fig = analyses.offset_range.build(group).figures["offset_range"]
    (x, y, title), (_, paper_y, _) = _labels(fig)
    assert x == "maximum offset s" and y.startswith("val/acc1 (%)") and "offset s" in title
    assert paper_y == "paper top-1 (%), ImageNet-1K DAT-T"
    ours = fig.axes[0].lines[0]  # seaborn's mean line
    means = group.summary.set_index("knob.s")["mean"] * 100
    np.testing.assert_allclose(ours.get_ydata(), means.sort_index().to_numpy())
    paper_line = fig.axes[1].lines[0]
    assert len(paper_line.get_xdata()) == 14 and max(paper_line.get_ydata()) == pytest.approx(
        82.07
    )
    plt.close(fig)


@pytest.mark.parametrize("experiment", ["stage_placement", "attention_ablation"])
def test_variant_plots_mark_variants_without_finished_runs(tmp_path, experiment):
    variant0 = experiment_configs(experiment)[0][0]
    group = _group(tmp_path, experiment, failed={(variant0, 0), (variant0, 1)})
    fig = analyses.BY_NAME[experiment].build(group).figures[experiment]
    ax = fig.axes[0]
    assert ax.get_ylabel().startswith("val/acc1 (%)") and ax.get_title() and ax.get_xlabel()
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[0].endswith("(2 of 2 not finished)")
    assert len(ticks) == len(experiment_configs(experiment))
    assert fig.axes[1].get_ylabel().startswith("paper top-1")
    plt.close(fig)


def test_pareto_front_is_the_non_dominated_set(tmp_path):
    group = _group(tmp_path, "reduction")
    front = plots.pareto_front(group.summary, "flops", "mean")
    pts = group.summary
    for _, row in pts.iterrows():
        dominated = ((pts["flops"] <= row["flops"]) & (pts["mean"] > row["mean"])).any()
        assert (row["variant"] in set(front["variant"])) == (not dominated)
    assert analyses.sweep_pareto.applies(group)
    fig = analyses.sweep_pareto.build(group).figures["pareto"]
    assert fig.axes[0].get_xlabel().startswith("FLOPs") and fig.axes[0].get_title()
    plt.close(fig)


def test_curves_plot_one_line_per_variant(tmp_path):
    group = _group(tmp_path, "stage_placement")
    fig = analyses.training_curves.build(group).figures["curves"]
    acc_ax, loss_ax = fig.axes[:2]
    assert (acc_ax.get_xlabel(), acc_ax.get_ylabel()) == ("epoch", "val/acc1 (%)")
    assert (loss_ax.get_xlabel(), loss_ax.get_ylabel()) == ("step", "train/loss")
    legend = [t.get_text() for t in acc_ax.get_legend().get_texts()]
    assert legend == list(group.summary["variant"])
    plt.close(fig)


def test_optuna_study_in_the_store_gets_history_and_importances(tmp_path, capsys):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    configs = experiment_configs("reduction")
    store = RunStore(tmp_path)
    (tmp_path / "sweeps").mkdir()
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "sweeps" / "free.journal")))
    study = optuna.create_study(study_name="free", storage=storage, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))  # fmt: skip
    for _, config in configs:
        trial = study.ask()
        s = trial.suggest_float("s", 0.0, 8.0)
        r = trial.suggest_categorical("r", [1, 2, 4])
        acc = 0.6 + 0.01 * s - 0.02 * r
        # As dat_lab.sweeps stores trials: experiment "sweep/NAME", run id in the user attrs.
        add_run(store, "sweep/free", f"trial{trial.number}", 0, config, final={"val/acc1": acc})
        trial.set_user_attr("run_id", f"sweep_free-trial{trial.number}-0")
        study.tell(trial, acc)
    out = tmp_path / "report"
    build_report(tmp_path, ["free"], ("md",), out)  # the study's name stands for sweep/free
    for stem in ("optuna_history", "optuna_importance"):
        assert (out / "sweep_free" / f"{stem}.png").stat().st_size > 10_000
    assert not (out / "free").exists()  # one group, not one per name
    # Each trial is one seed: the sweep section says no race has confirmed the best one.
    assert "not confirmed by a race" in (out / "report.md").read_text()
    # Without a journal the report says so and still writes the table.
    (tmp_path / "sweeps" / "free.journal").unlink()
    build_report(tmp_path, ["sweep/free"], ("md",), tmp_path / "again")
    assert "no Optuna storage found" in capsys.readouterr().out
    assert (tmp_path / "again" / "sweep_free" / "reduction.md").is_file()  # its trials vary r, s
    assert not (tmp_path / "again" / "sweep_free" / "optuna_history.png").exists()


def _stage_store(tmp_path, accs: dict[str, list[float]], reverse: bool = True):
    """stage_placement runs with known accuracies, created in reverse of the file's order."""
    store = RunStore(tmp_path)
    configs = dict(experiment_configs("stage_placement"))
    for variant in reversed(list(accs)) if reverse else list(accs):
        for seed, acc in enumerate(accs[variant]):
            add_run(store, "stage_placement", variant, seed, configs[variant],
                    final={"val/acc1": acc}, curve=[acc - 0.1, acc])  # fmt: skip
    return Group("stage_placement", memberships(load_runs(tmp_path)))


STAGE_ACCS = {
    "D_1234": [0.70, 0.72, 0.71],
    "D_234": [0.80, 0.805, 0.79],
    "D_34": [0.80, 0.81, 0.795],
    "D_4": [0.60, 0.62, 0.61],
    "none": [0.79, 0.815, 0.80],
}


def test_stage_placement_points_in_the_papers_order_with_significance_stars(tmp_path):
    group = _stage_store(tmp_path, STAGE_ACCS)
    assert list(group.summary["variant"])[0] == "none"  # the runs were made in reverse
    out = analyses.stage_placement.build(group)
    assert list(out.tables[0].data["variant"]) == ["D_1234", "D_234", "D_34", "D_4", "none"]
    fig = out.figures["stage_placement"]
    ax = fig.axes[0]
    ticks = [t.get_text().split("\n")[0] for t in ax.get_xticklabels()]
    assert ticks == ["D_1234", "D_234", "D_34", "D_4", "none"]
    assert not [p for p in ax.patches if isinstance(p, Rectangle)]  # no bars at all
    stars = sorted(round(a.xy[0]) for a in ax.texts if a.get_text() == "*")
    comp = group.comparison(list(out.tables[0].data["variant"]))
    assert stars == [i for i, sig in enumerate(comp["significant"]) if sig] == [0, 3]
    means = [line for line in ax.lines if line.get_marker() == "o"][0].get_ydata()
    np.testing.assert_allclose(means, [np.mean(STAGE_ACCS[v]) * 100 for v in ticks])
    plt.close(fig)


def test_curve_bands_stay_within_the_seeds_values(tmp_path):
    store = RunStore(tmp_path)
    configs = dict(experiment_configs("stage_placement"))
    for seed, low in enumerate((0.05, 1.0)):  # mean - std of (0.05, 1.0) is below zero
        add_run(store, "stage_placement", "D_34", seed, configs["D_34"],
                final={"val/acc1": 0.8}, curve=[0.7, 0.8])  # fmt: skip
        path = store.run_dir(f"stage_placement-D_34-{seed}") / "logs" / "version_0"
        (path / "metrics.csv").write_text(
            "epoch,step,train/loss,val/acc1\n" + f"0,0,{low},\n0,1,{low},\n0,1,,0.8\n"
        )
    group = Group("stage_placement", memberships(load_runs(tmp_path)))
    fig = analyses.training_curves.build(group).figures["curves"]
    loss_ax = fig.axes[1]
    bands = [c for c in loss_ax.collections if len(c.get_paths())]
    assert bands
    ys = np.concatenate([p.vertices[:, 1] for c in bands for p in c.get_paths()])
    assert ys.min() >= 0.05 - 1e-9 and ys.max() <= 1.0 + 1e-9
    plt.close(fig)


@pytest.mark.parametrize("name", ["offset_range", "stage_placement", "attention_ablation",
                                  "sweep_pareto", "training_curves"])  # fmt: skip
def test_legends_lie_inside_the_figure(tmp_path, name):
    experiment = {"sweep_pareto": "reduction", "training_curves": "stage_placement"}.get(
        name, name
    )
    group = _group(tmp_path, experiment, seeds=3)
    for fig in analyses.BY_NAME[name].build(group).figures.values():
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
        assert legends
        box = fig.bbox
        for legend in legends:
            ext = legend.get_window_extent(renderer)
            assert box.x0 - 1 <= ext.x0 and ext.x1 <= box.x1 + 1, (name, ext, box)
            assert box.y0 - 1 <= ext.y0 and ext.y1 <= box.y1 + 1, (name, ext, box)
        plt.close(fig)
