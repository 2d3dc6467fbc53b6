"""The report's figures carry their labels and data; Optuna studies in the store are plotted."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
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
def test_bar_plots_mark_variants_without_finished_runs(tmp_path, experiment):
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
    for _variant, config in configs:
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
    # Without a journal the report says so and still writes the table.
    (tmp_path / "sweeps" / "free.journal").unlink()
    build_report(tmp_path, ["sweep/free"], ("md",), tmp_path / "again")
    assert "no Optuna storage found" in capsys.readouterr().out
    assert (tmp_path / "again" / "sweep_free" / "reduction.md").is_file()  # its trials vary r, s
    assert not (tmp_path / "again" / "sweep_free" / "optuna_history.png").exists()
