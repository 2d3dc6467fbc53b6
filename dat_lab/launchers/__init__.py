"""Where the work of ``dat-lab run`` and ``dat-lab sweep`` executes.

- ``local`` (the default): this machine; a run's pool (``experiments.pool``) or a sweep's
  worker processes (``sweeps.launch``).
- ``slurm`` (:mod:`.slurm`): jobs submitted through submitit, one array task per pending run
  or per sweep worker; see docs/cluster.md.
"""

LAUNCHERS = ("local", "slurm")
