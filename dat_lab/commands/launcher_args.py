"""``--launcher local|slurm`` and the SLURM resource flags, shared by ``run`` and ``sweep``."""

from __future__ import annotations

import argparse
from typing import Any

from dat_lab.launchers import LAUNCHERS


def add_launcher_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--launcher",
        choices=LAUNCHERS,
        default="local",
        help="local: this machine (default); slurm: submit SLURM jobs through submitit and "
        "return (see docs/cluster.md)",
    )
    p.add_argument("--wait", action="store_true", help="slurm: wait until the jobs have ended")
    g = p.add_argument_group("SLURM resources (override the file's `slurm:` section)")
    g.add_argument("--partition", default=None)
    g.add_argument("--nodes", type=int, default=None)
    g.add_argument("--gpus-per-node", dest="gpus_per_node", type=int, default=None)
    g.add_argument("--cpus-per-task", dest="cpus_per_task", type=int, default=None)
    g.add_argument("--mem-gb", dest="mem_gb", type=float, default=None, help="memory per node")
    g.add_argument("--time-min", dest="time_min", type=int, default=None, help="time limit")
    g.add_argument("--account", default=None)
    g.add_argument("--qos", default=None)


def resource_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The resource flags given on the command line (None where not given)."""
    from dat_lab.experiments.resources import FLAGS

    return {name: getattr(args, name) for name in FLAGS}


def slurm_resources(args: argparse.Namespace, from_file: Any) -> Any:
    """The file's ``slurm:`` section (or the defaults) with the flags on top, validated."""
    from dat_lab.experiments.resources import SlurmResources
    from dat_lab.schema import ConfigError

    base = from_file or SlurmResources()
    try:
        return base.with_flags(resource_flags(args))
    except ConfigError as err:  # a flag's bad value: name the flag, not a file key
        flag = "--" + err.key.replace("_", "-")
        given = resource_flags(args).get(err.key) is not None
        raise ConfigError(err.message, flag if given else err.key, err.file) from None
