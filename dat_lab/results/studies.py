"""Optuna studies that belong to the run store: found through the store only.

A sweep keeps its Optuna journal file under the run store and records each trial's run id in
the trial's user attributes (``run_id``). This module finds such journal files (any file under
the store, outside ``runs/``, whose first line is an Optuna journal operation) or uses a
storage URL given on the command line, and maps studies to run ids. Optuna is imported only
when a journal is found, so a report without sweeps does not pay for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna

from dat_lab.schema import ConfigError
from dat_lab.sweeps.liveness import USER_RUN_ID
from dat_lab.sweeps.storage import StorageError, StorageLocation

MAX_DEPTH = 3


def _is_journal(path: Path) -> bool:
    """Whether ``path`` starts with an Optuna journal record (a JSON object with op_code)."""
    try:
        with path.open("rb") as f:
            first = f.readline(1 << 16)
        record = json.loads(first)
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "op_code" in record


def find_journals(root: str | Path) -> list[Path]:
    """Optuna journal files under ``root`` (not under ``runs/``), at most 3 levels deep."""
    root = Path(root)
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        for entry in entries:
            if entry.is_dir() and not (folder == root and entry.name == "runs"):
                if depth < MAX_DEPTH:
                    walk(entry, depth + 1)
            elif entry.is_file() and not entry.name.startswith(".") and _is_journal(entry):
                found.append(entry)

    walk(root, 1)
    return found


def load_studies(root: str | Path, storage_url: str | None = None) -> dict[str, Any]:
    """``{study name: optuna.Study}`` from the store's journals and ``storage_url``."""
    journals = find_journals(root)
    if not journals and storage_url is None:
        return {}

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Opened as `dat-lab sweep` opens them: the same driver, and errors without the password.
    locations = [StorageLocation(journal=p) for p in journals]
    if storage_url is not None:
        locations.append(StorageLocation.parse(storage_url, default_journal=Path(root)))
    try:
        storages = [location.open() for location in locations]
    except StorageError as err:
        raise ConfigError(str(err), "--optuna-storage") from None
    studies = {}
    for storage in storages:
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
            studies[summary.study_name] = optuna.load_study(
                study_name=summary.study_name, storage=storage
            )
    return studies


def trial_run_ids(study: Any) -> dict[str, int]:
    """``{run id: trial number}`` of the study's trials that name a run."""
    out = {}
    for trial in study.get_trials(deepcopy=False):
        run_id = trial.user_attrs.get(USER_RUN_ID)
        if isinstance(run_id, str):
            out[run_id] = trial.number
    return out


def missing_trial_runs(root: str | Path, found: dict[str, Any]) -> list[tuple[str, int, str]]:
    """``(study, trial number, run id)`` of every finished trial of ``found`` (studies by name)
    whose run directory is not in the store at ``root``: its result cannot be reported."""
    runs = Path(root) / "runs"
    out = []
    for name, study in sorted(found.items()):
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            run_id = trial.user_attrs.get(USER_RUN_ID)
            if isinstance(run_id, str) and not (runs / run_id / "run.json").is_file():
                out.append((name, trial.number, run_id))
    return out
