"""A sweep worker: claim a trial, train its run through the run store, report, repeat.

Each trial is one run of the run store (``runner.run_spec``): the same resolved config is the
same run, so a finished run is reused (not retrained), an interrupted one resumes from its
checkpoint, and two trials that sample the same config share one training (the second waits
for the first). The trial's ``user_attrs`` hold its ``run_id``.

Faults: a trial whose run fails (an exception, a non-finite loss, an impossible config) is
told FAIL with the reason in ``user_attrs["fail_reason"]`` and the worker goes on. Ctrl-C (or
SIGTERM, e.g. from SLURM) fails the current trial as "interrupted", enqueues it again (once:
under the study lock, and not if another worker already failed and retried it) and stops: its
run stays resumable, and rerunning the command completes the budget. A worker killed outright
is found by the others (``liveness``) and its trial retried.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from dat_lab.experiments.durable import StoreWriteError
from dat_lab.experiments.processes import host_name
from dat_lab.experiments.records import RunOutcome
from dat_lab.experiments.run_config import RunSpec
from dat_lab.experiments.runner import Ask, RunStopped, failed_runs, quiet_lightning, run_spec
from dat_lab.experiments.store import RunStore
from dat_lab.sweeps.liveness import (
    ATTR_HOST,
    ATTR_PID,
    ATTR_RETRIED,
    USER_FAIL_REASON,
    USER_RUN_ID,
    Heartbeat,
    Liveness,
    Retry,
    fail_and_retry,
)
from dat_lab.sweeps.pruning import OptunaPruning
from dat_lab.sweeps.schema import COST_METRICS
from dat_lab.sweeps.space import label
from dat_lab.sweeps.spec import Study
from dat_lab.sweeps.storage import StorageLocation
from dat_lab.sweeps.study import ClaimedTrial, Idle, claim_trial, open_study

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class WorkerOptions:
    """How one worker runs: the run store, retrying failed runs, liveness timing."""

    store: Path
    retry_failed: bool = False
    liveness: Liveness = field(default_factory=Liveness)
    quiet: bool = False  # no Lightning progress bar (parallel workers share one terminal)
    rerun_stale: bool = False  # train again a trial's run that other code made


@dataclass
class WorkerReport:
    """What this worker did: trial outcomes by state name (``COMPLETE``, ``FAIL``, ...)."""

    outcomes: Counter = field(default_factory=Counter)

    def __str__(self) -> str:
        return (
            ", ".join(f"{n} {s.lower()}" for s, n in sorted(self.outcomes.items())) or "no trials"
        )


class TrialFailed(Exception):
    """The trial's run failed (or could not be built); the message is the reason."""


def work(
    study: Study, location: StorageLocation, options: WorkerOptions, log=print
) -> WorkerReport:
    """Run trials of ``study`` until its budget is used up (or Ctrl-C)."""
    quiet_lightning()
    storage = location.open()
    with location.lock(study.name):
        optuna_study = open_study(study, location, storage)
    store = RunStore(options.store)
    restore_complete_trials(optuna_study, study, store, options, log)
    report = WorkerReport()
    while True:
        with location.lock(study.name):
            claim = claim_trial(optuna_study, study, options.liveness, log)
        if claim is Idle.DONE:
            return report
        if claim is Idle.WAIT:  # others still run the last trials; they may die: keep watching
            time.sleep(options.liveness.poll_s)
            continue
        state = _run_claimed(optuna_study, study, claim, store, options, location, log)
        report.outcomes[state.name] += 1


def restore_complete_trials(
    optuna_study: optuna.Study, study: Study, store: RunStore, options: WorkerOptions, log=print
) -> int:
    """Train again the run of each COMPLETE trial that the store no longer holds: quarantined
    as damaged (``quarantine.py``), or deleted. The trial keeps its values (Optuna's record);
    the store gets its run back, under the same run id, so reports and races see it again.
    Returns how many runs were restored."""
    restored = 0
    for trial in optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        run_id = trial.user_attrs.get(USER_RUN_ID)
        if run_id is None or store.get(run_id, lenient=True) is not None:
            continue  # lenient: a damaged run reads as None; run_spec quarantines it
        spec = study.run_spec(trial.params)
        if spec.run_id != run_id:
            continue  # stored under another study file's settings: not this study's run
        log(f"trial {trial.number} ({run_id}): its run is missing or damaged; training it again")
        ask = Ask(rerun_stale=options.rerun_stale)
        label_ = f"trial {trial.number} ({run_id})"
        outcome = run_spec(spec, store, {}, log, label=label_, quiet=options.quiet, ask=ask)
        restored += outcome.result is RunOutcome.FINISHED
    return restored


def _run_claimed(
    optuna_study: optuna.Study,
    study: Study,
    claim: ClaimedTrial,
    store: RunStore,
    options: WorkerOptions,
    location: StorageLocation,
    log,
) -> TrialState:
    trial = claim.trial
    log(f"trial {trial.number}: {label(claim.params)}")
    try:
        with Heartbeat(optuna_study._storage, trial._trial_id, options.liveness.interval_s):
            if claim.error is not None:
                raise TrialFailed(claim.error)
            values = _train_trial(optuna_study, study, claim, store, options, log)
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C in fit into SystemExit
        requeue_interrupted(optuna_study, study, trial._trial_id, location, log)
        raise KeyboardInterrupt from None
    except StoreWriteError:  # a full disk: not the trial's fault; it runs again once freed
        with contextlib.suppress(OSError):  # the study's journal may sit on the same disk
            requeue_interrupted(optuna_study, study, trial._trial_id, location, log)
        raise
    except RunStopped as stop:
        return _tell(optuna_study, trial, TrialState.PRUNED, None, log, str(stop))
    except TrialFailed as err:
        return _tell(optuna_study, trial, TrialState.FAIL, None, log, str(err), fail_reason=True)
    except Exception as err:  # noqa: BLE001 - a bug or a storage error: fail this trial, go on
        reason = f"{type(err).__name__}: {err}"
        return _tell(optuna_study, trial, TrialState.FAIL, None, log, reason, fail_reason=True)
    return _tell(
        optuna_study,
        trial,
        TrialState.COMPLETE,
        values,
        log,
        ", ".join(f"{v:.4g}" for v in values),
    )


def requeue_interrupted(
    optuna_study: optuna.Study, study: Study, trial_id: int, location: StorageLocation, log=print
) -> Retry:
    """Fail a trial stopped by Ctrl-C and enqueue it again, at most once: under the study lock,
    as the reaper does, so that a reaper that took this worker for dead (and failed and retried
    the trial already) and this worker never both enqueue it."""
    with location.lock(study.name):
        trial = optuna_study._storage.get_trial(trial_id)
        reason = "interrupted (Ctrl-C or SIGTERM)"
        outcome = fail_and_retry(
            optuna_study, trial, reason, study.file.max_retries, force_retry=True
        )
    note = " (its run resumes from its checkpoint)" if outcome is Retry.ENQUEUED else ""
    log(f"trial {trial.number}: interrupted; {outcome.value}{note}")
    return outcome


def _train_trial(
    optuna_study: optuna.Study,
    study: Study,
    claim: ClaimedTrial,
    store: RunStore,
    options: WorkerOptions,
    log,
) -> list[float]:
    """Train (or reuse) the trial's run; its objective values."""
    assert claim.config is not None
    spec = RunSpec(study.run_experiment_name, label(claim.params), study.seed, claim.config)
    ask = Ask(rerun_stale=options.rerun_stale)
    callbacks = []
    if study.file.pruner.type != "none":
        callbacks.append(OptunaPruning(claim.trial, study.file.objectives[0].metric))
    retry = failed_runs([spec], store) if options.retry_failed else {}
    while True:
        holder_store = _store_for_lock_of(spec.run_id, store, optuna_study)
        outcome = run_spec(
            spec,
            holder_store,
            retry,
            log,
            label=f"trial {claim.trial.number} ({spec.run_id})",
            quiet=options.quiet,
            extra_callbacks=callbacks,
            ask=ask,
        )
        if outcome.result not in (RunOutcome.BUSY, RunOutcome.LOST):  # lost: another host took it
            break
        time.sleep(options.liveness.poll_s)  # another trial trains this run: reuse its result
    if outcome.result in (RunOutcome.FAILED, RunOutcome.NOT_RETRIED):
        raise TrialFailed(f"run {spec.run_id} {outcome.result}: {outcome.detail}")
    reused = outcome.result is RunOutcome.SKIPPED
    if reused:  # says so when other model/train/data code made it (--rerun-stale retrains)
        log(f"trial {claim.trial.number} ({spec.run_id}): {outcome.detail}")
    claim.trial.set_user_attr("run", "reused" if reused else "trained")
    return objective_values(study, store, spec.run_id)


def _store_for_lock_of(run_id: str, store: RunStore, optuna_study: optuna.Study) -> RunStore:
    """``store``, or, when the run's lock is held from another host by a worker of this study
    that the heartbeats declared dead (its trial failed and retried), a view of the store that
    takes that lock over. The store alone cannot tell a dead holder on another host from a
    live one; the study's heartbeats can. Holders that are no worker of ours are waited for."""
    holder = store.lock_holder(run_id) if store.get(run_id, lenient=True) is not None else None
    if holder is None or holder.host == host_name():
        return store  # same host: the store checks the pid itself
    for trial in optuna_study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        attrs = trial.system_attrs
        if (attrs.get(ATTR_HOST), attrs.get(ATTR_PID), attrs.get(ATTR_RETRIED)) == (
            holder.host,
            holder.pid,
            True,
        ):
            return RunStore(store.root, foreign_lock_timeout=0.0)
    return store


def objective_values(study: Study, store: RunStore, run_id: str) -> list[float]:
    """The objectives of a finished run, from its final.json and cost.json."""
    record = store.require(run_id)
    values = []
    for objective in study.file.objectives:
        source, name = (
            (record.cost, "cost.json")
            if objective.metric in COST_METRICS
            else (record.final, "final.json")
        )
        value = (source or {}).get(objective.metric)
        if value is None:
            have = ", ".join(sorted(source or {})) or "nothing"
            raise TrialFailed(
                f"run {run_id} has no {objective.metric!r} in {name} (it has: {have})"
            )
        values.append(float(value))
    return values


def _tell(
    optuna_study: optuna.Study,
    trial: optuna.Trial,
    state: TrialState,
    values: list[float] | None,
    log,
    detail: str,
    fail_reason: bool = False,
) -> TrialState:
    """Finish the trial; ``fail_reason``: also record ``detail`` as its failure reason."""
    try:
        if fail_reason:
            trial.set_user_attr(USER_FAIL_REASON, detail)
        optuna_study.tell(trial, values, state=state if values is None else None)
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError) as err:
        # Another worker took us for dead and failed the trial; the run is kept in the store.
        log(f"trial {trial.number}: could not be told {state.name} ({err})")
        return TrialState.FAIL
    log(f"trial {trial.number}: {state.name.lower()} ({detail})")
    return state


__all__ = ["WorkerOptions", "WorkerReport", "objective_values", "requeue_interrupted", "work"]
