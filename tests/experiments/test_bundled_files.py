"""The bundled experiment and study files, composed with ``extends:``, resolve to exactly the
runs they resolved to when each file spelled out its whole base (ids recorded then in
``assets/bundled_run_ids.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dat_lab.experiments.spec import load_experiment
from dat_lab.schema import ConfigError, config_files, load_yaml
from dat_lab.sweeps.spec import load_study

REPO = Path(__file__).resolve().parents[2]
RECORDED = json.loads((Path(__file__).parent / "assets" / "bundled_run_ids.json").read_text())
# free.yaml's search space was fixed after the ids were recorded (s only with bounded
# offsets): its base run and budget are unchanged, its space (and so its fingerprint) is not.
SPACE_CHANGED = {"free.yaml"}


def _imagefolder() -> str:
    """The 2-class folder the ImageNet experiment was resolved with (its path is in the id)."""
    root = Path(RECORDED["imagefolder"])
    for split in ("train", "val"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            (root / split / name / "0.png").touch()
    return str(root)


def test_the_recorded_files_are_the_bundled_ones():
    assert [p.name for p in config_files(REPO / "experiments")] == sorted(RECORDED["experiments"])
    assert [p.name for p in config_files(REPO / "sweeps")] == sorted(RECORDED["studies"])


def test_the_shapes_experiments_extend_the_shared_base():
    extending = [p.stem for p in config_files(REPO / "experiments") if "extends" in load_yaml(p)]
    assert extending == [
        "attention_ablation",
        "datpp_components",
        "offset_range",
        "reduction",
        "stage_placement",
    ]


@pytest.mark.parametrize("name", sorted(RECORDED["experiments"]))
def test_every_experiment_resolves_to_its_recorded_run_ids(name):
    overrides = {"data.path": _imagefolder()} if name == "imagenet_dat_tiny.yaml" else {}
    _, specs = load_experiment(REPO / "experiments" / name, overrides)
    ids = {f"{s.variant}/{s.seed}": s.run_id for s in specs}
    assert ids == RECORDED["experiments"][name]


@pytest.mark.parametrize("name", sorted(RECORDED["studies"]))
def test_every_study_resolves_to_its_recorded_base_and_grid(name):
    study = load_study(REPO / "sweeps" / name)
    recorded = RECORDED["studies"][name]
    assert study.base.run_id == recorded["base"]
    assert [point.run_id for point in study.grid] == recorded["grid"]
    if name not in SPACE_CHANGED:
        assert study.fingerprint() == recorded["fingerprint"]


def test_a_seeds_key_appended_to_an_experiment_file_is_refused(tmp_path):
    for name in ("_shapes_nano.yaml", "offset_range.yaml"):
        (tmp_path / name).write_text((REPO / "experiments" / name).read_text())
    path = tmp_path / "offset_range.yaml"
    first = path.read_text().splitlines().index("seeds: [0]") + 1
    last = len(path.read_text().splitlines()) + 1
    path.write_text(path.read_text() + "seeds: [7]\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert err.value.file == str(path) and err.value.key == "seeds"
    assert f"first on line {first}, again on line {last}" in err.value.message


def test_a_key_written_twice_in_a_study_file_is_refused(tmp_path):
    text = (REPO / "sweeps" / "stage_placement.yaml").read_text()
    path = tmp_path / "stage_placement.yaml"
    path.write_text(text.replace("../experiments/", f"{REPO}/experiments/") + "sampler: tpe\n")
    with pytest.raises(ConfigError, match="duplicate key: first on line") as err:
        load_study(path)
    assert err.value.file == str(path) and err.value.key == "sampler"


def test_resolving_an_experiment_builds_one_data_module_per_distinct_data_config(monkeypatch):
    """An ImageFolder scans its class folders when built: not once per variant x seed."""
    import dat_lab.experiments.spec as spec

    built = []
    real = spec.build_datamodule
    monkeypatch.setattr(spec, "build_datamodule", lambda data: built.append(data) or real(data))
    _, specs = load_experiment(REPO / "experiments" / "stage_placement.yaml")
    assert len(specs) == 10 and len(built) == 1
    load_experiment(REPO / "experiments" / "stage_placement.yaml", {"data.val_size": 500})
    assert len(built) == 2 and built[1].val_size == 500
