"""``dat-lab data inspect``: classes, samples per split, stored image sizes and transforms."""

from __future__ import annotations

import pytest
from digit_forms import TRAIN, VAL, write_folder, write_wds

from dat_lab.cli import main


@pytest.mark.parametrize(("dataset", "write"), [("", write_folder), ("wds/", write_wds)])
def test_inspect_prints_classes_counts_sizes_and_transforms(dataset, write, tmp_path, capsys):
    root = write(tmp_path)
    argv = ["data", "inspect", "name=timm", f"data.path={root}", "--sample", "5"]
    assert main([*argv, f"dataset={dataset!r}" if dataset else "dataset=''"]) == 0
    out = capsys.readouterr().out
    assert "classes: 10 (d0, d1, d2" in out
    assert f"samples train: {TRAIN}" in out and f"samples val: {VAL}" in out
    assert "image sizes train (first 5, WxH): 16x16 (5)" in out
    assert "RandomResizedCropAndInterpolation(size=(224, 224)" in out
    assert "CenterCrop(size=(224, 224))" in out and "RandAugment" in out


def test_a_bad_key_is_named_and_exits_2(capsys):
    assert main(["data", "inspect", "name=timm", "path=/x", "img_sise=3"]) == 2
    assert "data.img_sise" in capsys.readouterr().err
