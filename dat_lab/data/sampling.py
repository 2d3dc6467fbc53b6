"""Checkpoint-safe batch order: shuffling as a function of (seed, epoch), and a resumable loader.

A loader that shuffles with a ``torch.Generator`` seeded once holds its position in no
checkpoint, so a resumed run would see another batch order. Here the order of epoch ``e`` is
``randperm`` under a generator seeded from ``(seed, e)`` alone: Lightning calls ``set_epoch``
on the sampler before each epoch (also when resuming), so a resume from an epoch-end
checkpoint sees the same batches as the uninterrupted run.

Mid-epoch checkpoints (``ckpt_every_n_steps``): :class:`ResumableDataLoader` implements
``state_dict``/``load_state_dict``, which Lightning stores in the checkpoint (its "stateful
dataloader" interface). It records how many batches of which epoch were handed out; on
resume the sampler skips those samples, so the rest of the epoch is the uninterrupted run's.
Without worker processes this is exact (everything random then draws from the global RNGs,
which :class:`~dat_lab.train.callbacks.RngStateCheckpoint` restores). With workers, each
epoch's worker seeds also derive from ``(seed, epoch)`` (workers are not persistent, so an
epoch-end resume is exact); a random per-sample transform in a worker resumed mid-epoch is
not (its RNG position is in no checkpoint).

Under DDP the sampler shards itself: every rank draws the same permutation of epoch ``e`` and
takes every ``world``-th index of it from its rank on, so the ranks' batches together are
the single-process batch of ``world`` times their size, every sample is seen once per epoch
(when the size is a multiple of ``world``; otherwise the shards are padded to equal length
from the permutation's start, as torch's DistributedSampler does), and a mid-epoch resume
is exact on each rank. Being a ``DistributedSampler``, Lightning leaves it unwrapped. Any
other sampler Lightning wraps in its ``DistributedSamplerWrapper``; a mid-epoch resume there
restarts the epoch's order, with a warning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed mixed from ``(seed, epoch)`` (numpy's SeedSequence: no simple collisions)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1)


class EpochShuffleSampler(DistributedSampler):
    """A permutation of ``range(size)`` that depends only on ``(seed, epoch)``, or the shard
    of it that rank ``rank`` of ``num_replicas`` takes (see the module docstring).

    Args:
        size: number of samples.
        seed: the data seed.
        num_replicas, rank: the DDP group's size and this process's rank in it.

    ``skip`` (set by :class:`ResumableDataLoader` on resume) drops that many leading indices
    of this rank's next pass only; ``len()`` stays the full shard, as Lightning counts the
    batches of the resumed epoch itself.
    """

    def __init__(self, size: int, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        # Not DistributedSampler.__init__: it needs a data set and an initialised group.
        self.size = size
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.skip = 0
        self.num_samples = math.ceil(size / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int) -> torch.Tensor:
        """The permutation of epoch ``epoch`` (of all samples, before sharding)."""
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        return torch.randperm(self.size, generator=generator)

    def shard(self, epoch: int) -> torch.Tensor:
        """This rank's indices of epoch ``epoch``: every ``num_replicas``-th from ``rank``."""
        order = self.order(epoch)
        padded = self.num_samples * self.num_replicas
        if padded > self.size:  # equal shards, so that every rank takes as many steps
            order = torch.cat([order, order[: padded - self.size]])
        return order[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        skip, self.skip = self.skip, 0
        yield from self.shard(self.epoch)[skip:].tolist()

    def __len__(self) -> int:
        return self.num_samples


class ResumableDataLoader(DataLoader):
    """A shuffling training loader whose position within an epoch goes into checkpoints.

    Args:
        dataset: the training set.
        seed: the data seed (orders batches, seeds workers per epoch).
        num_replicas, rank: this process's shard under DDP (see the module docstring).
        **kwargs: DataLoader arguments other than ``shuffle``/``sampler``/``generator``.
    """

    def __init__(
        self, dataset: Dataset, seed: int, num_replicas: int = 1, rank: int = 0, **kwargs: Any
    ) -> None:
        size = len(dataset)  # type: ignore[arg-type]
        sampler = kwargs.pop("sampler", None) or EpochShuffleSampler(
            size, seed, num_replicas, rank
        )
        generator = kwargs.pop("generator", None) or torch.Generator()
        super().__init__(dataset, sampler=sampler, generator=generator, **kwargs)
        self.seed = seed
        self._batches_done = 0
        self._resume: tuple[int, int] | None = None  # (epoch, batches) to skip on the next pass

    @property
    def epoch(self) -> int:
        return getattr(self._epoch_sampler(), "epoch", 0)

    def _epoch_sampler(self) -> Any:
        """Our sampler, also when Lightning wrapped it for DDP."""
        sampler = self.sampler
        inner = getattr(getattr(sampler, "dataset", None), "_sampler", None)
        return inner if isinstance(inner, EpochShuffleSampler) else sampler

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        epoch = self.epoch
        # The base seed of this pass's worker processes (drawn from self.generator when the
        # iterator is made): a function of (seed, epoch), never of the global RNG.
        assert self.generator is not None
        self.generator.manual_seed(epoch_seed(self.seed, epoch))
        self._batches_done = self._skip_resumed(epoch)
        for batch in super().__iter__():
            self._batches_done += 1
            yield batch

    def _skip_resumed(self, epoch: int) -> int:
        """Apply a loaded mid-epoch position to this pass; return the batches skipped."""
        resume, self._resume = self._resume, None
        if resume is None or resume[0] != epoch or resume[1] <= 0:
            return 0  # an epoch-end checkpoint, or another epoch: start from the beginning
        sampler = self._epoch_sampler()
        if sampler is not self.sampler or not isinstance(sampler, EpochShuffleSampler):
            warnings.warn(
                "mid-epoch resume with a wrapped (distributed) sampler restarts the epoch's"
                " batch order; resume from an epoch-end checkpoint for an exact repeat",
                stacklevel=2,
            )
            return 0
        batches = resume[1]
        assert self.batch_size is not None
        sampler.skip = min(batches * self.batch_size, len(sampler))  # of this rank's shard
        return batches

    def state_dict(self) -> dict[str, int]:
        """Where this loader stands: the epoch and the batches of it handed out so far."""
        return {"epoch": self.epoch, "batches_done": self._batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = (int(state["epoch"]), int(state["batches_done"]))
