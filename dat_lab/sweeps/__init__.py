"""Sweeps: Optuna studies over the DAT knobs, whose trials are runs of the run store.

- :mod:`.spec`: the study file schema (``sweeps/NAME.yaml``), validated before any run;
- :mod:`.space`: conditional parameters, sampling, explicit grids;
- :mod:`.storage`: journal file or PostgreSQL, the study lock, password masking;
- :mod:`.study`: sampler, pruner, opening a stored study, claiming trials within the budget;
- :mod:`.liveness`: worker records and heartbeats; failing and retrying dead workers' trials;
- :mod:`.pruning`: the Lightning callback that reports each epoch and prunes;
- :mod:`.worker`: the loop: claim, train through ``runner.run_spec``, tell;
- :mod:`.launch`: local worker processes (``--workers``, ``--gpus``);
- :mod:`.status`: the ``--status`` table.

Import the submodules directly; this package imports nothing heavy. See docs/sweeps.md.
"""
