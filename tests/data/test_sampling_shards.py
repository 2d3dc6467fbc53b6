"""The epoch-seeded sampler under DDP: each rank's shard of one permutation of the epoch."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from dat_lab.data.sampling import EpochShuffleSampler, ResumableDataLoader


def _shards(size: int, world: int, epoch: int) -> list[list[int]]:
    samplers = [
        EpochShuffleSampler(size, seed=7, num_replicas=world, rank=r) for r in range(world)
    ]
    for s in samplers:
        s.set_epoch(epoch)
    return [list(s) for s in samplers]


def test_the_ranks_see_every_sample_once_per_epoch_in_the_single_process_order():
    whole = EpochShuffleSampler(24, seed=7)
    for epoch in (0, 1):
        whole.set_epoch(epoch)
        order = list(whole)
        shards = _shards(24, 3, epoch)
        assert sorted(i for shard in shards for i in shard) == list(range(24))  # once each
        # Batch k of every rank together is batch k of one process at 3x the batch size.
        for k in range(2):
            step = {i for shard in shards for i in shard[4 * k : 4 * k + 4]}
            assert step == set(order[12 * k : 12 * k + 12])
    assert _shards(24, 3, 0) != _shards(24, 3, 1)  # a new order every epoch


def test_shards_of_a_size_that_does_not_divide_are_padded_to_equal_length():
    shards = _shards(21, 2, 0)
    assert [len(s) for s in shards] == [11, 11]  # every rank takes as many steps
    assert set(shards[0]) | set(shards[1]) == set(range(21))


def test_a_resumed_rank_continues_its_shard_where_it_stopped():
    data = TensorDataset(torch.arange(32))
    full = ResumableDataLoader(data, 3, num_replicas=2, rank=1, batch_size=4)
    expected = [b[0].tolist() for b in full]
    resumed = ResumableDataLoader(data, 3, num_replicas=2, rank=1, batch_size=4)
    resumed.load_state_dict({"epoch": 0, "batches_done": 2})
    assert [b[0].tolist() for b in resumed] == expected[2:]
