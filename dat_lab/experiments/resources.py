"""What a SLURM job of dat-lab asks the scheduler for: the ``slurm:`` section of an experiment
or study file, and the ``--partition/--nodes/...`` flags that override it.

    slurm:
      partition: gpu        # sbatch --partition
      nodes: 1              # --nodes (a run's train.num_nodes must match)
      gpus_per_node: 4      # --gpus-per-node (0: a CPU job)
      cpus_per_task: 8      # --cpus-per-task (one task per device)
      mem_gb: 64            # --mem, per node
      time_min: 240         # --time; a job at its limit checkpoints and requeues itself
      account: my_lab       # --account
      qos: normal           # --qos

Nothing here talks to SLURM; ``dat_lab.launchers.slurm`` turns it into submitit parameters.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from dat_lab.schema import check

_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")  # partition, account and qos names


@dataclass(frozen=True)
class SlurmResources:
    """One job's resources (see the module docstring); ``None``: the cluster's default."""

    partition: str | None = None
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None
    time_min: int = 60
    account: str | None = None
    qos: str | None = None

    def __post_init__(self) -> None:
        for key in ("nodes", "cpus_per_task", "time_min"):
            value = getattr(self, key)
            check(value >= 1, key, f"got {value}, must be >= 1")
        check(self.gpus_per_node >= 0, "gpus_per_node", f"got {self.gpus_per_node}, must be >= 0")
        check(
            self.mem_gb is None or self.mem_gb > 0,
            "mem_gb",
            f"got {self.mem_gb}, must be > 0 or null (the partition's default)",
        )
        for key in ("partition", "account", "qos"):
            value = getattr(self, key)
            check(
                value is None or bool(_NAME.match(value)),
                key,
                f"got {value!r}: a SLURM name of letters, digits, '_', '.', ':', '-'",
            )

    def with_flags(self, flags: dict[str, Any]) -> SlurmResources:
        """These resources with the command line's flags (those not None) on top."""
        given = {k: v for k, v in flags.items() if v is not None}
        return dataclasses.replace(self, **given)


FLAGS = tuple(f.name for f in dataclasses.fields(SlurmResources))

__all__ = ["FLAGS", "SlurmResources"]
