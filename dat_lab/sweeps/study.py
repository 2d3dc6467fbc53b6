"""The Optuna side of a study: sampler, pruner, opening the stored study, claiming trials.

Every step here runs under the study lock (``StorageLocation.lock``), so the decisions that
need a consistent view of all trials are taken by one worker at a time:

1. fail the trials of dead workers and enqueue their retries (``liveness``);
2. for a grid, enqueue every point that no trial covers yet (by run id: a grid point is
   enqueued once, and enqueued again only if its trial was lost);
3. stop when the budget is used: finished + pruned + running + failed-for-good >= n_trials
   (a resumed study completes its budget, it does not add n more);
4. otherwise ask Optuna for a trial (an enqueued one first), sample its parameters, resolve
   its run and record the worker, all before the lock is released.
"""

from __future__ import annotations

import enum
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from dat_lab.experiments.run_config import RunConfig
from dat_lab.schema import ConfigError
from dat_lab.sweeps.liveness import (
    USER_RUN_ID,
    Liveness,
    Retry,
    counts_toward_budget,
    fail_and_retry,
    mark_alive,
    stale_reason,
)
from dat_lab.sweeps.schema import PrunerSpec, SamplerSpec
from dat_lab.sweeps.space import describe_run_error, suggest
from dat_lab.sweeps.spec import Study
from dat_lab.sweeps.storage import StorageLocation

ATTR_FINGERPRINT = "dat_lab:fingerprint"

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_sampler(spec: SamplerSpec, seed: int | None) -> optuna.samplers.BaseSampler:
    """The sampler of one claim. ``seed`` differs per claim (see :func:`claim_trial`)."""
    if spec.type == "tpe":
        # constant_liar: running trials count as bad guesses, so parallel workers spread out;
        # multivariate + group: conditional parameters are modelled per sub-space.
        return optuna.samplers.TPESampler(
            n_startup_trials=spec.startup_trials,
            seed=seed,
            multivariate=True,
            group=True,
            constant_liar=True,
        )
    if spec.type == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=spec.population_size, seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)  # random; a grid's trials are all enqueued


def make_pruner(spec: PrunerSpec, epochs: int) -> optuna.pruners.BasePruner:
    """The pruner of a study whose trials train ``epochs`` epochs. Steps are epoch indices
    from 0 (``pruning.OptunaPruning``), as in Optuna's own Lightning callback."""
    if spec.type == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec.startup_trials, n_warmup_steps=spec.warmup_epochs
        )
    if spec.type == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=spec.min_epochs,
            max_resource=epochs,
            reduction_factor=spec.reduction_factor,
        )
    return optuna.pruners.NopPruner()


def open_study(
    study: Study, location: StorageLocation, storage: optuna.storages.BaseStorage
) -> optuna.Study:
    """Create the stored study, or load it if its fingerprint matches (call under the lock)."""
    optuna_study = optuna.create_study(
        storage=storage,
        study_name=study.name,
        directions=study.file.directions,
        load_if_exists=True,
        sampler=make_sampler(study.file.sampler, study.file.sampler.seed),
        pruner=make_pruner(study.file.pruner, study.base.train.epochs),
    )
    stored = optuna_study.user_attrs.get(ATTR_FINGERPRINT)
    if stored is None:
        optuna_study.set_user_attr(ATTR_FINGERPRINT, study.fingerprint())
        optuna_study.set_user_attr("study_file", str(study.path))
        optuna_study.set_user_attr("objectives", [o.metric for o in study.file.objectives])
    elif (
        stored != study.fingerprint()
        or [d.name.lower() for d in optuna_study.directions] != study.file.directions
    ):
        raise ConfigError(
            f"study {study.name!r} in {location.masked()} was started from a different base run, "
            "search space, objectives or overrides; continue it with the same file and overrides, "
            "or start another with --study-name NEW",
            "--study",
            study.path,
        )
    return optuna_study


class Idle(enum.Enum):
    """Why a worker got no trial: the budget is used up, or only others' trials still run."""

    DONE = "done"
    WAIT = "wait"


@dataclass
class ClaimedTrial:
    """A trial this worker now runs: its parameters and run (``error`` if the sampled
    parameters make an impossible run: the trial is failed with it, the study goes on)."""

    trial: optuna.Trial
    params: dict[str, Any]
    config: RunConfig | None
    error: str | None = None


def budget_used(trials: list[FrozenTrial]) -> int:
    return sum(counts_toward_budget(t) for t in trials)


def reap_dead_workers(
    optuna_study: optuna.Study, study: Study, liveness: Liveness, log=print
) -> int:
    """Fail (and retry) every RUNNING trial whose worker is dead; how many were."""
    reaped = 0
    for trial in optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = stale_reason(trial, liveness)
        if reason is not None:
            outcome = fail_and_retry(optuna_study, trial, reason, study.file.max_retries)
            if outcome is not Retry.SETTLED:  # else its worker told it meanwhile: not dead
                log(f"trial {trial.number} failed: {reason}; {outcome.value}")
                reaped += 1
    return reaped


def enqueue_missing_grid_points(optuna_study: optuna.Study, study: Study) -> int:
    """Enqueue the grid points (within the budget) that no trial covers; how many."""
    covering = [
        t
        for t in optuna_study.get_trials(deepcopy=False)
        if t.state is TrialState.WAITING or counts_toward_budget(t)
    ]
    covered = {t.user_attrs.get(USER_RUN_ID) for t in covering}
    added = 0
    for point in study.grid[: study.n_trials]:
        if point.run_id not in covered:
            optuna_study.enqueue_trial(point.params, user_attrs={USER_RUN_ID: point.run_id})
            covered.add(point.run_id)
            added += 1
    return added


def claim_trial(
    optuna_study: optuna.Study, study: Study, liveness: Liveness, log=print
) -> ClaimedTrial | Idle:
    """The next trial for this worker, or why there is none (call under the study lock)."""
    reap_dead_workers(optuna_study, study, liveness, log)
    if study.grid:
        enqueue_missing_grid_points(optuna_study, study)
    trials = optuna_study.get_trials(deepcopy=False)
    running = any(t.state is TrialState.RUNNING for t in trials)
    if budget_used(trials) >= study.n_trials:
        return Idle.WAIT if running else Idle.DONE
    if study.grid and not any(t.state is TrialState.WAITING for t in trials):
        return Idle.WAIT if running else Idle.DONE
    # A new sampler per claim, seeded by the trial count: one worker repeats its sequence,
    # and parallel workers do not draw the same "random" startup trials.
    seed = study.file.sampler.seed
    optuna_study.sampler = make_sampler(
        study.file.sampler, None if seed is None else seed + len(trials)
    )
    trial = optuna_study.ask()
    mark_alive(optuna_study._storage, trial._trial_id)
    params = suggest(trial, study.file.space)
    try:
        config = study.run_config(params)
    except ConfigError as err:
        return ClaimedTrial(trial, params, None, f"impossible run: {describe_run_error(err)}")
    trial.set_user_attr(USER_RUN_ID, config.run_id)
    return ClaimedTrial(trial, params, config)


__all__ = [
    "ClaimedTrial",
    "Idle",
    "budget_used",
    "claim_trial",
    "make_pruner",
    "make_sampler",
    "open_study",
]
