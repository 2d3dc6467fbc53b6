"""Fine-tuning: ``train.init_from`` / ``train.init_exclude`` in experiment files.

A run that starts from a checkpoint must start from its weights exactly: its first logged
training loss (before any optimizer step) equals the source model's loss on the same first
batch, computed here, at the source's resolution and at another one (relative tables
resized bicubically, as the source model resamples them itself at that size).
"""

from __future__ import annotations

import csv
import os

import pytest
import torch
import torch.nn.functional as F
from experiment_helpers import write_experiment

from dat_lab.data.datamodule import build_datamodule
from dat_lab.experiments.pool import run_experiment
from dat_lab.experiments.spec import load_experiment
from dat_lab.experiments.store import RunStore
from dat_lab.models import build_model, get_preset
from dat_lab.models.checkpoints import fit_weights
from dat_lab.schema import ConfigError


def _quiet(_: str) -> None:
    pass


@pytest.fixture(autouse=True)
def _environment_restored():
    """Lightning's deterministic mode sets CUBLAS_WORKSPACE_CONFIG in this process's env."""
    saved = dict(os.environ)
    yield
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)


@pytest.fixture()
def source(tmp_path):
    torch.manual_seed(123)
    model = build_model(get_preset("dat_nano").replace(in_chans=1)).eval()  # shapes: 1 channel
    path = tmp_path / "source.pth"
    torch.save({"model": model.state_dict(), "epoch": 7}, path)
    return path, model


def first_step_loss(store: RunStore, run_id: str) -> float:
    csv_path = store.root / "runs" / run_id / "logs" / "version_0" / "metrics.csv"
    with open(csv_path) as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    return float(rows[0]["train/loss"])


def source_loss_on_first_batch(model, spec) -> float:
    datamodule = build_datamodule(spec.config.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    images, labels = next(iter(datamodule.train_dataloader()))
    with torch.no_grad():
        return float(F.cross_entropy(model(images), labels))


@pytest.mark.slow
@pytest.mark.parametrize("img_size", [32, 48])
def test_a_run_starts_from_the_source_weights(img_size, source, tmp_path):
    path, model = source
    exp = write_experiment(
        tmp_path / "ft.yaml",
        variants={"a": {"model.img_size": [img_size, img_size]}},
        train={"epochs": 1, "limit_train_batches": 1, "init_from": str(path)},
        data={"img_size": img_size},
    )
    _, specs = load_experiment(exp)
    store = RunStore(tmp_path / "runs")
    assert [o.ok for o in run_experiment(specs, store, log=_quiet)] == [True]
    expected = source_loss_on_first_batch(model, specs[0])
    assert first_step_loss(store, specs[0].run_id) == pytest.approx(expected, rel=1e-5)
    init = store.read_json(specs[0].run_id, "provenance")["init_from"]
    assert init["source"] == str(path) and init["kind"] == "state_dict"
    assert init["skipped"] == []
    tables = [k for k in init["loaded"] + init["resized"] if k.endswith("rpe_table")]
    assert len(tables) == 2  # the D block of stages 3 and 4 (dat_nano: depth 2, "LD")
    assert (init["resized"] == tables) == (img_size != 32)
    assert "stem.proj.weight" in init["loaded"]


def test_the_run_id_covers_the_source_weights(source, tmp_path):
    path, model = source
    exp = write_experiment(tmp_path / "ft.yaml", train={"init_from": str(path)})
    first = load_experiment(exp)[1][0]
    assert first.config.train.init_sha256 and len(first.config.train.init_sha256) == 64
    with torch.no_grad():
        model.head.bias.add_(1.0)
    torch.save({"model": model.state_dict()}, path)
    second = load_experiment(exp)[1][0]
    assert second.run_id != first.run_id
    plain = load_experiment(write_experiment(tmp_path / "plain.yaml"))[1][0]
    assert "init_from" not in str(plain.config.train.init_sha256)  # unset: None


def test_a_missing_source_or_run_id_is_refused_when_loading(tmp_path):
    for source, message in (("/nope/w.pth", "no such checkpoint file"), ("abc", "no run 'abc'")):
        exp = write_experiment(tmp_path / "ft.yaml", train={"init_from": source})
        with pytest.raises(ConfigError, match=message) as err:
            load_experiment(exp)
        assert err.value.key == "train.init_from" and err.value.file == str(exp)


def test_init_exclude_keeps_the_models_own_head(source):
    path, src = source
    torch.manual_seed(5)
    target = build_model(get_preset("dat_nano").replace(in_chans=1, num_classes=7))
    own_head = target.head.weight.clone()
    state = torch.load(path, weights_only=True)["model"]
    with pytest.raises(ConfigError, match=r"head.weight.*train.init_exclude: \[head\]"):
        fit_weights(target, state)
    report = fit_weights(target, state, exclude=("head",))
    assert report.skipped == ["head.bias", "head.weight"]
    torch.testing.assert_close(target.head.weight, own_head)
    torch.testing.assert_close(target.stem.proj.weight, src.stem.proj.weight)


def test_a_source_of_another_shape_is_refused_when_loading(source, tmp_path):
    exp = write_experiment(
        tmp_path / "ft.yaml",
        variants={"a": {"model.stages.3.dim": 48}},
        train={"init_from": str(source[0])},
    )
    with pytest.raises(ConfigError, match="'stages.3.downsample.proj.weight' has shape"):
        load_experiment(exp)


def test_init_exclude_without_init_from_is_refused(tmp_path):
    exp = write_experiment(tmp_path / "x.yaml", train={"init_exclude": ["head"]})
    with pytest.raises(ConfigError, match="init_exclude: is set but init_from is not"):
        load_experiment(exp)
