"""Iterable readers (``wds/``, ``hfids/``) under DDP and data-loader workers.

timm's iterable readers split their shards among *global* workers (rank x loader worker):
``set_loader_cfg(num_workers)`` tells the reader how many loader workers each rank runs (it
reads the rank from the DDP group, so the dataset is built in ``setup()``), and
``set_epoch(e)`` seeds the shard shuffle of epoch ``e``, which every worker of every rank
draws alike. Lightning calls ``set_epoch`` on samplers only; :class:`EpochLoader` calls it on
the dataset each time an epoch's pass starts, with the trainer's epoch, and seeds the
workers' base seed from ``(seed, epoch)`` as :class:`~dat_lab.data.sampling.ResumableDataLoader`
does. Every sample is then seen once per epoch across ranks and workers when the shards split
evenly: as many samples in every shard and a shard count that the global worker count divides
(timm's ``with_epoch`` gives each worker ``ceil(samples / global workers)`` samples, repeating
or leaving samples when its shards hold more or fewer).

Resume is at the epoch boundary: a run resumed from an epoch-end checkpoint reads that epoch
as the uninterrupted run did (with loader workers; in the main process the sample shuffle
buffer is seeded once per process). A mid-epoch checkpoint restarts the epoch's stream.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from dat_lab.data.sampling import epoch_seed
from dat_lab.schema import ConfigError


def configure(dataset: Any, num_workers: int) -> None:
    """Tell a timm iterable dataset the loader workers of each rank (before ``len()``)."""
    dataset.set_loader_cfg(num_workers=num_workers)


def check_shards(dataset: Any, world: int, num_workers: int, where: str) -> None:
    """ConfigError unless every global worker gets a shard; a warning if some get more."""
    filenames = getattr(
        getattr(getattr(dataset, "reader", None), "split_info", None), "filenames", None
    )
    if filenames is None:  # hfids: the datasets library splits by examples when it must
        return
    shards, workers = len(filenames), world * max(1, num_workers)
    if shards < workers:
        raise ConfigError(
            f"{where} has {shards} shards for {world} rank(s) x {max(1, num_workers)} "
            f"worker(s) = {workers} readers; each reader needs its own shard: use at most "
            f"{max(1, shards // world)} data.num_workers, or more shards",
            "data.num_workers",
        )
    if shards % workers:
        warnings.warn(
            f"{where}: {shards} shards do not split evenly over {workers} readers; an epoch "
            "repeats some samples and leaves out others",
            stacklevel=2,
        )


class EpochLoader(DataLoader):
    """A loader of a timm iterable dataset that sets its epoch before every pass.

    Args:
        dataset: a timm ``IterableImageDataset``.
        seed: the data seed (seeds the workers per epoch).
        epoch: the epoch about to run (the trainer's ``current_epoch``).
        **kwargs: DataLoader arguments.
    """

    def __init__(self, dataset: Any, seed: int, epoch: Callable[[], int], **kwargs: Any):
        super().__init__(dataset, generator=torch.Generator(), **kwargs)
        self.seed = seed
        self._epoch = epoch
        self._batches_done = 0
        self._current = 0

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        self._current = self._epoch()
        self.dataset.set_epoch(self._current)  # type: ignore[attr-defined]
        assert self.generator is not None
        self.generator.manual_seed(epoch_seed(self.seed, self._current))
        self._batches_done = 0
        for batch in super().__iter__():
            self._batches_done += 1
            yield batch

    def __len__(self) -> int:
        """Batches per epoch: each worker batches its own ``len(dataset) / workers`` samples,
        so its last batch may be partial (DataLoader's own count would drop those)."""
        workers = max(1, self.num_workers)
        per_worker = math.ceil(len(self.dataset) / workers)  # type: ignore[arg-type]
        assert self.batch_size is not None
        return workers * math.ceil(per_worker / self.batch_size)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._current, "batches_done": self._batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state.get("batches_done", 0)) > 0:
            warnings.warn(
                "an iterable reader (wds/, hfids/) resumes at the epoch boundary: this "
                "mid-epoch resume restarts the epoch's stream of samples",
                stacklevel=2,
            )
