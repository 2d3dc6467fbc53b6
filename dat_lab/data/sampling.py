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
not (its RNG position is in no checkpoint). Under DDP Lightning wraps the sampler in its
``DistributedSamplerWrapper`` (which forwards ``set_epoch``); a mid-epoch resume there
restarts the epoch's order, with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed mixed from ``(seed, epoch)`` (numpy's SeedSequence: no simple collisions)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1)


class EpochShuffleSampler(Sampler[int]):
    """A permutation of ``range(size)`` that depends only on ``(seed, epoch)``.

    Args:
        size: number of samples.
        seed: the data seed.

    ``skip`` (set by :class:`ResumableDataLoader` on resume) drops that many leading indices
    of the next pass only; ``len()`` stays the full size, as Lightning counts the batches of
    the resumed epoch itself.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int) -> torch.Tensor:
        """The permutation of epoch ``epoch``."""
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        return torch.randperm(self.size, generator=generator)

    def __iter__(self) -> Iterator[int]:
        skip, self.skip = self.skip, 0
        yield from self.order(self.epoch)[skip:].tolist()

    def __len__(self) -> int:
        return self.size


class ResumableDataLoader(DataLoader):
    """A shuffling training loader whose position within an epoch goes into checkpoints.

    Args:
        dataset: the training set.
        seed: the data seed (orders batches, seeds workers per epoch).
        **kwargs: DataLoader arguments other than ``shuffle``/``sampler``/``generator``.
    """

    def __init__(self, dataset: Dataset, seed: int, **kwargs: Any) -> None:
        size = len(dataset)  # type: ignore[arg-type]
        sampler = kwargs.pop("sampler", None) or EpochShuffleSampler(size, seed)
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
        sampler.skip = min(batches * self.batch_size, len(sampler))
        return batches

    def state_dict(self) -> dict[str, int]:
        """Where this loader stands: the epoch and the batches of it handed out so far."""
        return {"epoch": self.epoch, "batches_done": self._batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = (int(state["epoch"]), int(state["batches_done"]))
