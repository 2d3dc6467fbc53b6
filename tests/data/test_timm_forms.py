"""data.name timm: the same digits as a folder, a tar, webdataset shards and a parquet HF
dataset (and CIFAR's python version): each trains, and each epoch sees every sample once."""

from __future__ import annotations

import pytest
import torch
from digit_forms import (
    NAMES,
    TRAIN,
    VAL,
    expected,
    write_cifar_python,
    write_folder,
    write_parquet,
    write_tar,
    write_wds,
)
from form_training import fit_and_record

from dat_lab.data import DataConfig, build_datamodule

FORMS = {
    "folder": ("", write_folder),
    "tar": ("", write_tar),
    "wds": ("wds/digits", write_wds),
    "hfds": ("hfds/", write_parquet),
    "hfids": ("hfids/", write_parquet),
}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    made = {}
    for name, (_, write) in FORMS.items():
        if name == "hfids":
            made[name] = made["hfds"]
            continue
        made[name] = write(tmp_path_factory.mktemp(name))
    made["cifar10"] = write_cifar_python(tmp_path_factory.mktemp("cifar"))
    return made


@pytest.fixture(autouse=True)
def hf_cache(tmp_path_factory, monkeypatch):
    """The arrow cache that datasets builds from local parquet, kept out of ~/.cache."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.getbasetemp() / "hf_cache"))


def cfg(form, roots, **extra) -> DataConfig:
    if form == "cifar10":
        return DataConfig(name="cifar10", img_size=32, batch_size=16, path=roots[form], **extra)
    return DataConfig(
        name="timm", dataset=FORMS[form][0], path=roots[form], img_size=16, batch_size=16, **extra
    )


@pytest.mark.slow  # 2 loader worker processes an epoch
@pytest.mark.parametrize("form", [*FORMS, "cifar10"])
def test_every_form_trains_and_each_epoch_sees_every_sample_once(form, roots, tmp_path):
    records = fit_and_record(cfg(form, roots, num_workers=2), tmp_path, epochs=2)
    assert len(records) == 2  # one per epoch
    want = expected("train", 32 if form == "cifar10" else 16)
    for record in records:
        assert sorted(map(tuple, record["seen"])) == want
        assert all(torch.isfinite(torch.tensor(record["losses"])))
    assert records[0]["seen"] != records[1]["seen"]  # reshuffled between epochs


@pytest.mark.parametrize("form", list(FORMS))
def test_classes_and_sizes_are_known_and_the_transforms_are_timms(form, roots):
    dm = build_datamodule(cfg(form, roots))
    assert dm.class_names == NAMES and dm.num_classes == 10 and dm.in_chans == 3
    dm.setup("fit")
    assert len(dm.train_set) == TRAIN and len(dm.val_set) == VAL
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (16, 3, 16, 16) and x.dtype == torch.float32
    assert "RandomResizedCrop" in repr(dm.train_set.transform)
