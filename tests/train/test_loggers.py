"""train.loggers: Lightning's loggers by name, offline by default, tagged with the run's names."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from train_helpers import fast_config, run_training

from dat_lab.experiments.spec import load_experiment
from dat_lab.schema import ConfigError
from dat_lab.train.config import TrainConfig
from dat_lab.train.loggers import RunTags, build_loggers, wandb_mode

REPO = Path(__file__).resolve().parents[2]
TAGS = RunTags(run_id="0123456789abcdef", experiment="offsets", variant="s4", seed=3)


@pytest.fixture
def no_tracker_env(monkeypatch, tmp_path):
    """No tracking server, no W&B credentials or mode: the defaults are what is tested."""
    for name in ("MLFLOW_TRACKING_URI", "WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "netrc"
    empty.write_text("")
    monkeypatch.setenv("NETRC", str(empty))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_the_run_id_does_not_change_with_the_logger_choice() -> None:
    path = REPO / "experiments" / "offset_range.yaml"
    # offset_range on the shared recipe, as the file was before it had its own protocol
    shared = {"data.shapes.distractors": None, "data.shapes.misalign": None,
              "train.epochs": 8, "train.warmup_epochs": 1}  # fmt: skip
    _, plain = load_experiment(path, shared)
    loggers = {"train.loggers": ["csv", "tensorboard", "mlflow", "wandb"]}
    _, logged = load_experiment(path, {**shared, **loggers})
    assert [s.config.train.loggers for s in logged][0] == ("csv", "tensorboard", "mlflow", "wandb")
    assert [s.run_id for s in plain] == [s.run_id for s in logged]
    assert plain[0].config.to_dict() == logged[0].config.to_dict()
    assert "loggers" not in plain[0].config.to_dict()["train"]  # config.json stays as before
    # The id stores held before train.loggers existed (s0, seed 0): old runs are still found.
    assert plain[0].variant == "s0" and plain[0].seed == 0
    assert plain[0].run_id == "a2292ee5c4148865"


@pytest.mark.parametrize(
    "loggers, key, words",
    [
        (["csv", "neptune"], "loggers.1", "'tensorboard', 'mlflow', 'wandb'"),
        (["mlflow", "mlflow"], "loggers", "repeats a logger"),
        ("mlflow", "loggers", "expected a list"),
    ],
)
def test_bad_logger_lists_are_refused_naming_the_key(loggers, key, words) -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_mapping({"loggers": loggers}, prefix="train", file="x.yaml")
    assert err.value.key == f"train.{key}" and words in err.value.message


def test_a_logger_whose_package_is_missing_names_the_extra(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"pip install 'dat-lab\[wandb\]'") as err:
        TrainConfig(loggers=("csv", "wandb"))
    assert err.value.key == "loggers.1"


def test_csv_is_always_on_and_tensorboard_only_when_named(tmp_path) -> None:
    only_tb = build_loggers(["tensorboard"], tmp_path / "a", TAGS)
    assert [type(lg).__name__ for lg in only_tb] == ["CSVLogger", "TensorBoardLogger"]
    assert [type(lg).__name__ for lg in build_loggers(["csv"], tmp_path / "b")] == ["CSVLogger"]


def test_mlflow_logs_to_a_file_store_in_the_run_dir_tagged_with_the_run(
    tmp_path, no_tracker_env
) -> None:
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "runs" / TAGS.run_id
    run = run_training(fast_config(epochs=1, loggers=("csv", "mlflow")), run_dir, tags=TAGS)
    store = run_dir / "logs" / "mlruns"
    assert store.is_dir()
    client = MlflowClient(store.as_uri())
    (experiment,) = [e for e in client.search_experiments() if e.name == "offsets"]
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED"
    tags = found.data.tags
    assert tags["dat_lab.run_id"] == TAGS.run_id and tags["dat_lab.variant"] == "s4"
    assert tags["dat_lab.seed"] == "3" and tags["dat_lab.attempt"] == "version_0"
    assert tags["mlflow.runName"] == "s4 seed 3 (0123456789abcdef)"
    history = client.get_metric_history(found.info.run_id, "train/loss")
    assert len(history) == 8  # one epoch of 8 batches, logged every step
    assert found.data.metrics["val/acc1"] == pytest.approx(run.metrics["val/acc1"])


def test_mlflow_tracking_uri_from_the_environment_wins(tmp_path, no_tracker_env, monkeypatch):
    elsewhere = tmp_path / "shared-mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere.as_uri())
    (_, logger) = build_loggers(["mlflow"], tmp_path / "run", TAGS)
    logger.log_metrics({"x": 1.0}, step=0)
    logger.finalize("success")
    assert elsewhere.is_dir() and not (tmp_path / "run" / "logs" / "mlruns").exists()


def test_wandb_runs_offline_without_a_login_tagged_with_the_run(tmp_path, no_tracker_env):
    assert wandb_mode() == "offline"
    run_dir = tmp_path / "runs" / TAGS.run_id
    trainer_runs = []
    run = run_training(
        fast_config(epochs=1, loggers=("wandb",)),
        run_dir,
        tags=TAGS,
        edit_trainer=trainer_runs.append,
    )
    logger = trainer_runs[0].loggers[1]
    assert type(logger).__name__ == "FinishingWandbLogger"
    (folder,) = (run_dir / "logs" / "wandb").glob(f"offline-run-*-{TAGS.run_id}-0")
    (record,) = folder.glob("*.wandb")
    data = _written(record, b"train/loss")  # protobuf records: strings are stored as they are
    for text in ("run_id:0123456789abcdef", "experiment:offsets", "variant:s4", "seed:3"):
        assert text.encode() in data
    assert run.metrics["val/acc1"] >= 0.0
    # The run was finished with the fit: a second run in this process gets its own W&B run.
    import wandb

    assert wandb.run is None


def _written(path: Path, needle: bytes, timeout: float = 120.0) -> bytes:
    """The file once ``needle`` is in it: W&B's service process writes the run's records
    after ``finish`` returns, a moment later on a loaded machine."""
    deadline = time.monotonic() + timeout
    while needle not in (data := path.read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return data


def test_wandb_mode_follows_the_login_and_wandb_mode(tmp_path, no_tracker_env, monkeypatch):
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert wandb_mode() == "online"  # logged in with `wandb login`
    netrc_file.write_text("")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"


def test_a_study_continues_whatever_the_logger_choice() -> None:
    from dat_lab.sweeps.spec import load_study

    path = REPO / "sweeps" / "offset_range.yaml"
    logged = load_study(path, {"train.loggers": ["csv", "mlflow"]})
    assert logged.fingerprint() == load_study(path).fingerprint()
    assert logged.fingerprint() != load_study(path, {"train.epochs": 1}).fingerprint()
