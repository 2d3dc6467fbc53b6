"""Nothing the model runs is unsupported or skipped: every preset, every variant in experiments/.

Variants are resolved by ``load_experiment`` (the models their runs train: ``num_classes``,
``in_chans`` and ``img_size`` from the data section). A file whose data is an ImageFolder gets
a stand-in folder with ImageNet's 1,000 class folders (one empty ``.JPEG`` each): only the
class count matters to the model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dat_lab.commands.flops import experiment_models
from dat_lab.flops import count_flops
from dat_lab.models import get_preset, list_presets
from dat_lab.schema import config_files, load_config_file

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT_FILES = config_files(REPO / "experiments")


def assert_fully_accounted(report, name: str) -> None:
    assert not report.unsupported, (name, report.unsupported)
    assert not report.skipped, (name, report.skipped)
    assert report.ok, name


# The paper's presets take seconds each to trace: the fast tier keeps the small ones.
PAPER_SIZED = ("dat_tiny", "dat_small", "dat_base", "dat_base_384")


@pytest.mark.parametrize(
    "preset",
    [pytest.param(p, marks=pytest.mark.slow) if p in PAPER_SIZED else p for p in list_presets()],
)
def test_every_preset_runs_only_counted_or_zero_cost_ops(preset):
    assert_fully_accounted(count_flops(get_preset(preset)), preset)


@pytest.fixture(scope="module")
def imagefolder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet_stand_in")
    for split in ("train", "val"):
        for i in range(1000):
            folder = root / split / f"n{i:08d}"
            folder.mkdir(parents=True)
            (folder / "x.JPEG").touch()
    return root


def test_the_bundled_experiment_files_are_all_checked():
    bundled = ["attention_ablation", "datpp_components", "imagenet_dat_tiny", "offset_range"]
    assert [p.stem for p in EXPERIMENT_FILES] == [*bundled, "reduction", "stage_placement"]


@pytest.mark.slow
@pytest.mark.parametrize("path", EXPERIMENT_FILES, ids=lambda p: p.stem)
def test_every_variant_of_every_experiment_file(path, request):
    overrides = {}
    if load_config_file(path)["base"]["data"].get("name") == "imagefolder":
        overrides["data.path"] = str(request.getfixturevalue("imagefolder"))
    models = experiment_models(str(path), overrides)
    assert [name for name, _ in models] == list(load_config_file(path)["variants"])
    for name, cfg in models:
        assert_fully_accounted(count_flops(cfg), f"{path.stem}/{name}")
