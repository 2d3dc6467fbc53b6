"""DataModules: sizes before setup, batch shapes and ranges, deterministic loaders."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from dat_lab.data import DataConfig, build_datamodule
from dat_lab.data.config import ShapesConfig
from dat_lab.schema import ConfigError


def shapes_cfg(tmp_path, **extra):
    base = dict(name="shapes", img_size=32, batch_size=16, train_size=40, val_size=20)
    return DataConfig(**{**base, "cache_dir": tmp_path, **extra})


@pytest.mark.parametrize(
    "extra, sizes",
    [
        ({}, (2, 1, 32)),
        ({"shapes": ShapesConfig(task="svrt"), "img_size": 48}, (2, 1, 48)),
    ],
)
def test_shapes_batches_have_the_advertised_shape_dtype_and_labels(tmp_path, extra, sizes):
    dm = build_datamodule(shapes_cfg(tmp_path, **extra))
    assert isinstance(dm, pl.LightningDataModule)
    assert (dm.num_classes, dm.in_chans, dm.img_size) == sizes  # before prepare/setup
    dm.prepare_data()
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, dm.img_size, dm.img_size) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and set(y.tolist()) <= {0, 1}
    assert -1.0 <= x.min() and x.max() <= 1.0  # ink [0, 1] normalised by 0.5 / 0.5
    assert sum(len(b[1]) for b in dm.val_dataloader()) == 20
    assert sum(len(b[1]) for b in dm.test_dataloader()) == 20


def test_digits_batches_cover_ten_classes():
    dm = build_datamodule(DataConfig(name="digits", img_size=32, batch_size=360))
    assert (dm.num_classes, dm.in_chans, dm.img_size) == (10, 1, 32)
    dm.setup("validate")
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (360, 1, 32, 32) and x.dtype == torch.float32
    assert sorted(set(y.tolist())) == list(range(10))
    assert abs(x.mean().item()) < 0.2  # normalised around 0


def test_prepare_data_fills_the_cache_that_setup_reads(tmp_path):
    dm = build_datamodule(shapes_cfg(tmp_path))
    dm.prepare_data()
    files = sorted(f.name for f in tmp_path.iterdir())
    assert len(files) == 2 and all(f.endswith(".npz") for f in files)
    assert dm.train_set is None  # prepare_data holds no state
    mtimes = {f: f.stat().st_mtime_ns for f in tmp_path.iterdir()}
    dm.setup("fit")
    assert {f: f.stat().st_mtime_ns for f in tmp_path.iterdir()} == mtimes


def first_epoch_labels(dm):
    return torch.cat([y for _, y in dm.train_dataloader()]).tolist()


def test_same_seed_same_batch_order_and_another_seed_another(tmp_path):
    runs = []
    for seed in (5, 5, 6):
        dm = build_datamodule(shapes_cfg(tmp_path, seed=seed, shapes=ShapesConfig(task="svrt")))
        dm.setup("fit")
        runs.append([x.sum().item() for x, _ in dm.train_dataloader()])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_each_epoch_order_is_a_function_of_seed_and_epoch():
    def epochs(order):
        dm = build_datamodule(DataConfig(name="digits", img_size=8, batch_size=2000, seed=3))
        dm.setup("fit")
        loader = dm.train_dataloader()
        labels = {}
        for epoch in order:  # Lightning calls set_epoch before each epoch, resumes included
            loader.sampler.set_epoch(epoch)
            labels[epoch] = next(iter(loader))[1].tolist()
        return labels

    in_order = epochs([0, 1])
    assert in_order[0] != in_order[1]
    assert epochs([1, 0]) == in_order  # a resumed run that starts at epoch 1 sees epoch 1's order


def test_loader_skips_the_batches_a_mid_epoch_checkpoint_had_seen(tmp_path):
    dm = build_datamodule(shapes_cfg(tmp_path))
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(2)
    batches = iter(loader)
    whole = [next(batches)[1] for _ in range(len(loader))]
    batches = iter(loader)
    next(batches), next(batches)
    state = loader.state_dict()
    assert state == {"epoch": 2, "batches_done": 2}

    resumed = dm.train_dataloader()  # a new process: a fresh loader given the checkpoint's state
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(2)
    rest = [y for _, y in resumed]
    assert len(rest) == len(whole) - 2
    assert all(torch.equal(a, b) for a, b in zip(rest, whole[2:], strict=True))
    assert resumed.state_dict()["batches_done"] == len(whole)
    resumed.sampler.set_epoch(3)  # the skip applied once: the next epoch is whole
    assert len(list(resumed)) == len(whole)


def test_an_epoch_end_position_does_not_skip_the_next_epoch(tmp_path):
    dm = build_datamodule(shapes_cfg(tmp_path))
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader.load_state_dict({"epoch": 0, "batches_done": len(loader)})
    loader.sampler.set_epoch(1)
    assert len(list(loader)) == len(loader)


def test_workers_give_the_same_batches_as_the_main_process(tmp_path):
    cfg = shapes_cfg(tmp_path)
    dm0 = build_datamodule(cfg)
    dm2 = build_datamodule(DataConfig(**{**cfg.__dict__, "num_workers": 2}))
    for dm in (dm0, dm2):
        dm.setup("fit")
    for (x0, y0), (x2, y2) in zip(dm0.train_dataloader(), dm2.train_dataloader(), strict=True):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)


def test_loader_before_setup_says_what_to_do(tmp_path):
    dm = build_datamodule(shapes_cfg(tmp_path))
    with pytest.raises(RuntimeError, match="setup"):
        dm.train_dataloader()


def test_shapes_that_cannot_be_drawn_fail_at_build_time(tmp_path):
    cfg = shapes_cfg(tmp_path, shapes=ShapesConfig(path_length=12, distractors=6))
    with pytest.raises(ConfigError, match="fewer snakes") as info:
        build_datamodule(cfg)
    assert info.value.key == "data.shapes"
    assert list(tmp_path.iterdir()) == []  # nothing generated


def test_under_ddp_lightning_rebuilds_the_loader_and_shards_the_epoch_order():
    # What Lightning does to a training loader under DDP (its private helpers, as of 2.6):
    # rebuild the same loader class around a DistributedSamplerWrapper of our sampler.
    from lightning_fabric.utilities.data import _replace_dunder_methods
    from lightning_fabric.utilities.distributed import DistributedSamplerWrapper
    from pytorch_lightning.utilities.data import _update_dataloader
    from torch.utils.data import DataLoader, TensorDataset

    from dat_lab.data.sampling import ResumableDataLoader

    with _replace_dunder_methods(DataLoader, "dataset"):
        loader = ResumableDataLoader(TensorDataset(torch.arange(20)), 3, batch_size=4)
    wrapped = DistributedSamplerWrapper(loader.sampler, num_replicas=2, rank=1, shuffle=False)
    rank1 = _update_dataloader(loader, wrapped)
    assert type(rank1) is ResumableDataLoader and rank1.seed == 3
    rank1.sampler.set_epoch(1)  # forwarded to our sampler
    seen = [i for (batch,) in rank1 for i in batch.tolist()]
    assert seen == loader.sampler.order(1).tolist()[1::2]
