"""`dat-lab visualize` on a really trained tiny run: drawn points are the model's own."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from results_helpers import EXPERIMENTS, add_run, experiment_configs

from dat_lab.cli import main
from dat_lab.experiments.runner import run_spec
from dat_lab.experiments.spec import load_experiment
from dat_lab.experiments.store import RunStore
from dat_lab.results.visualize import visualize_run

TINY = {
    "train.epochs": 1,
    "train.val_every_n_epochs": 1,
    "train.threads": 1,
    "train.log_every_n_steps": 1,
    "data.train_size": 64,
    "data.val_size": 32,
    "data.batch_size": 32,
}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """dat_nano with s = 1 (a point moves at most half a key cell) trained for 2 steps."""
    root = tmp_path_factory.mktemp("vis")
    overrides = {**TINY, "data.cache_dir": str(root / "cache")}
    _, specs = load_experiment(EXPERIMENTS / "offset_range.yaml", overrides)
    spec = next(s for s in specs if s.variant == "s1" and s.seed == 0)
    torch.set_num_threads(1)
    outcome = run_spec(spec, RunStore(root / "store"), log=lambda m: None)
    assert outcome.result == "finished", outcome
    return root / "store", spec.run_id


def _points(ax, gid):
    return np.concatenate([c.get_offsets() for c in ax.collections if c.get_gid() == gid])


def test_drawn_points_are_the_models_sampling_positions_inside_the_image(trained_run, tmp_path):
    store, run_id = trained_run
    out = tmp_path / "vis.png"
    path, fig, records = visualize_run(store, run_id[:8], out, index=3, query="5,20")
    assert path == out and out.stat().st_size > 10_000
    assert [(r.stage, r.block) for r in records] == [(2, 1), (3, 1)]  # dat_nano: L,D in stages 3-4
    height = width = 32
    panels = [ax for ax in fig.axes if ax.get_xlabel() == "x (px)"]  # not the colour bars
    assert len(panels) == 2 * len(records)
    for rec, (offsets_ax, attention_ax) in zip(records, np.reshape(panels, (-1, 2)), strict=True):
        sampled = rec.sampled_pixels()[0].reshape(-1, 2).numpy()  # (y, x)
        reference = rec.reference_pixels()[0].reshape(-1, 2).numpy()
        np.testing.assert_allclose(_points(offsets_ax, "sampled"), sampled[:, ::-1], atol=1e-5)
        np.testing.assert_allclose(_points(offsets_ax, "reference"), reference[:, ::-1], atol=1e-5)
        np.testing.assert_allclose(_points(attention_ax, "attention"), sampled[:, ::-1], atol=1e-5)
        assert not np.allclose(sampled, reference)  # the trained offsets moved them
        for pts in (sampled, reference):
            assert (pts >= -0.5 - 1e-4).all() and (pts[:, 0] <= height - 0.5 + 1e-4).all()
            assert (pts[:, 1] <= width - 0.5 + 1e-4).all()
        assert _points(attention_ax, "query").tolist() == [[20.0, 5.0]]
        assert "attention of the query" in attention_ax.get_title()
        assert offsets_ax.get_xlabel() == "x (px)" and offsets_ax.get_ylabel() == "y (px)"
    plt.close(fig)


def test_cli_visualize_writes_a_png_and_rejects_bad_input(trained_run, tmp_path, capsys):
    store, run_id = trained_run
    out = tmp_path / "cli.png"
    assert main(["visualize", run_id, "--store", str(store), "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert main(["visualize", "nosuchrun", "--store", str(store)]) == 2
    assert "RUN_ID: no run 'nosuchrun' in" in capsys.readouterr().err
    assert main(["visualize", run_id, "--store", str(store), "--query", "40,1"]) == 2
    assert "--query: (40, 1) is outside the 32x32 image" in capsys.readouterr().err
    assert main(["visualize", run_id, "--store", str(store), "--index", "32"]) == 2
    assert "--index: must be in 0..31" in capsys.readouterr().err


def test_cli_visualize_of_a_model_without_d_blocks_is_a_one_line_error(tmp_path, capsys):
    store = RunStore(tmp_path / "store")
    ((variant, config),) = [c for c in experiment_configs("stage_placement") if c[0] == "none"]
    add_run(store, "stage_placement", variant, 0, config)
    run_id = next(iter(store.runs())).run_id
    assert main(["visualize", run_id, "--store", str(store.root)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"error: RUN_ID: run {run_id} (stage_placement/none) has no deformable (D) block to draw"
    )
