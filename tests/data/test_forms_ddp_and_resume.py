"""Across ranks and resumes: a 2-rank gloo DDP run over webdataset shards sees each sample
once per epoch; map-style forms resume mid-epoch exactly, iterable ones at the epoch boundary."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from digit_forms import (
    expected,
    fingerprint,
    write_cifar_python,
    write_folder,
    write_parquet,
    write_tar,
    write_wds,
)
from form_training import fit_and_record, pixel_datamodule, to_uint8_hwc

from dat_lab.data import DataConfig

WRITERS = {
    "folder": ("", write_folder),
    "tar": ("", write_tar),
    "hfds": ("hfds/", write_parquet),
    "wds": ("wds/", write_wds),
    "hfids": ("hfids/", write_parquet),
}


@pytest.fixture(autouse=True)
def hf_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.getbasetemp() / "hf_cache"))


def cfg(form, root, **extra):
    if form == "cifar10":
        return DataConfig(name="cifar10", img_size=32, batch_size=16, path=root, **extra)
    dataset = WRITERS[form][0]
    return DataConfig(name="timm", dataset=dataset, path=root, img_size=16, batch_size=16, **extra)


def write(form, tmp_path):
    return write_cifar_python(tmp_path) if form == "cifar10" else WRITERS[form][1](tmp_path)


def batches(dm, loader, limit=None):
    out = []
    for x, y in itertools.islice(loader, limit):  # asks for no batch past the limit
        images = to_uint8_hwc(x, dm.mean_std)
        out.append([(fingerprint(im), int(t)) for im, t in zip(images, y.tolist(), strict=True)])
    return out


@pytest.mark.parametrize("form", ["folder", "tar", "hfds", "cifar10"])
def test_a_map_style_form_resumed_mid_epoch_sees_the_rest_of_the_epoch(form, tmp_path):
    root = write(form, tmp_path)
    full_dm = pixel_datamodule(cfg(form, root))
    full = batches(full_dm, full_dm.train_dataloader())
    first_dm = pixel_datamodule(cfg(form, root))
    assert batches(first_dm, first_dm.train_dataloader(), limit=5) == full[:5]
    state = first_dm.state_dict()
    resumed_dm = pixel_datamodule(cfg(form, root))
    resumed_dm.load_state_dict(state)
    assert batches(resumed_dm, resumed_dm.train_dataloader()) == full[5:]


def _epoch(dm, epoch):
    dm._current_epoch = lambda: epoch  # the trainer's epoch, as a resumed trainer has it
    return [s for b in batches(dm, dm.train_dataloader()) for s in b]


def test_webdataset_shards_resume_at_the_epoch_boundary(tmp_path):
    root = write_wds(tmp_path)
    config = cfg("wds", root, num_workers=2)
    epoch1 = _epoch(pixel_datamodule(config), 1)
    assert sorted(epoch1) == expected("train")
    assert _epoch(pixel_datamodule(config), 1) == epoch1  # a fresh process, same epoch
    assert _epoch(pixel_datamodule(config), 0) != epoch1
    dm = pixel_datamodule(config)
    with pytest.warns(UserWarning, match="epoch boundary"):
        dm.load_state_dict({"epoch": 1, "batches_done": 3})
        dm.train_dataloader()


@pytest.mark.slow
@pytest.mark.parametrize("form", ["wds", "hfids", "folder"])
def test_two_gloo_ranks_see_each_sample_once_per_epoch(form, tmp_path):
    """Iterable readers shard themselves over 2 ranks x 2 workers; map-style ones go through
    the epoch-seeded sharded sampler."""
    root = write(form, tmp_path / form)
    records = fit_and_record(cfg(form, root, num_workers=2), tmp_path / "out", devices=2)
    assert len(records) == 4  # 2 epochs x 2 ranks, sorted rank0-epoch0, rank0-epoch1, ...
    want = expected("train")
    for epoch in (0, 1):
        rank0, rank1 = records[epoch]["seen"], records[2 + epoch]["seen"]
        assert rank0 and rank1
        assert sorted(map(tuple, rank0 + rank1)) == want
        assert not Counter(map(tuple, rank0)) & Counter(map(tuple, rank1))
