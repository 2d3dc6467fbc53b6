"""What `--launcher slurm`, its resources and DDP runs accept, checked before anything runs."""

from __future__ import annotations

import pytest
import yaml
from experiment_helpers import write_experiment

from dat_lab.cli import build_parser, main
from dat_lab.commands.launcher_args import slurm_resources
from dat_lab.experiments.resources import SlurmResources
from dat_lab.experiments.spec import load_experiment
from dat_lab.schema import ConfigError


def test_an_experiments_slurm_section_is_validated_and_flags_override_it(tmp_path):
    path = write_experiment(tmp_path / "exp.yaml", slurm={"partition": "gpu", "time_min": 30})
    exp, _ = load_experiment(path)
    assert exp.slurm == SlurmResources(partition="gpu", time_min=30)
    args = build_parser().parse_args(["run", str(path), "--launcher", "slurm", "--time-min",
                                      "90", "--qos", "high"])  # fmt: skip
    assert slurm_resources(args, exp.slurm) == SlurmResources(
        partition="gpu", time_min=90, qos="high"
    )
    bad = build_parser().parse_args(["run", str(path), "--nodes", "0"])
    with pytest.raises(ConfigError, match="--nodes: got 0, must be >= 1"):
        slurm_resources(bad, exp.slurm)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"partitoin": "gpu"}, "slurm.partitoin"),
        ({"gpus_per_node": -1}, "slurm.gpus_per_node: got -1"),
        ({"account": "lab; rm -rf /"}, "slurm.account: got 'lab; rm -rf /'"),
    ],
)
def test_a_bad_slurm_section_names_the_file_and_key(tmp_path, section, message):
    path = write_experiment(tmp_path / "exp.yaml", slurm=section)
    with pytest.raises(ConfigError, match=message) as info:
        load_experiment(path)
    assert str(path) in str(info.value)


def test_several_workers_for_ddp_runs_are_refused_before_anything_trains(tmp_path, capsys):
    path = write_experiment(tmp_path / "exp.yaml", train={"devices": 2})
    code = main(["run", str(path), "--workers", "2", "--store", str(tmp_path / "s"), "--dry-run"])
    assert code == 2
    assert "--workers: got 2; DDP runs" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_new_train_knobs_at_their_defaults_leave_run_ids_unchanged(tmp_path):
    plain = load_experiment(write_experiment(tmp_path / "a.yaml"))[1][0]
    explicit = write_experiment(
        tmp_path / "b.yaml", train={"num_nodes": 1, "accumulate_grad_batches": 1}
    )
    assert load_experiment(explicit)[1][0].run_id == plain.run_id
    assert "accumulate_grad_batches" not in plain.config.to_dict()["train"]
    doubled = write_experiment(tmp_path / "c.yaml", train={"accumulate_grad_batches": 2})
    spec = load_experiment(doubled)[1][0]
    assert spec.run_id != plain.run_id and spec.config.train.effective_batch(16) == 32
    assert yaml.safe_load(doubled.read_text())["base"]["train"]["accumulate_grad_batches"] == 2
