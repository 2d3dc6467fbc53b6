"""Runs made by other code, as a user meets them: the CLI on a copy of the package that the
test edits (PYTHONPATH points at the copy, so the copy is the installed code)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from experiment_helpers import cli_env, dat_lab_cmd, write_experiment

from dat_lab.experiments.spec import load_experiment
from dat_lab.fingerprint import RESULT_PACKAGES, package_dir, source_fingerprint


class Copy:
    """A copy of the dat_lab package and the CLI run on it."""

    def __init__(self, root: Path, cache: Path) -> None:
        self.root = root
        self.package = root / "dat_lab"
        shutil.copytree(package_dir(), self.package, ignore=shutil.ignore_patterns("__pycache__"))
        self.env = {**cli_env(cache), "PYTHONPATH": str(root)}

    def fingerprint(self) -> str:
        return source_fingerprint(RESULT_PACKAGES, root=self.package)

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.package / relative
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))

    def cli(self, cwd: Path, *args: str | Path) -> str:
        done = subprocess.run(dat_lab_cmd(*args), cwd=cwd, env=self.env, capture_output=True,
                              text=True, timeout=600, check=False)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


@pytest.mark.slow
def test_runs_of_edited_model_code_are_named_marked_and_retrained(tmp_path_factory, tmp_path):
    cache = tmp_path_factory.getbasetemp() / "experiment_cache"
    copy = Copy(tmp_path / "pkg", cache)
    exp = write_experiment(tmp_path / "exp.yaml")
    (spec,) = load_experiment(exp)[1]
    store, out = tmp_path / "store", tmp_path / "reports"
    provenance = store / "runs" / spec.run_id / "provenance.json"

    def run(*extra: str) -> str:
        return copy.cli(tmp_path, "run", exp, "--store", store, "--workers", "1", *extra)

    def report() -> str:
        copy.cli(tmp_path, "report", "--store", store, "--out", out, "--format", "md")
        return (out / "report.md").read_text()

    first = copy.fingerprint()
    assert "finished in" in run()
    assert json.loads(provenance.read_text())["code"]["fingerprint"] == first  # the copy ran

    # An edit outside the model, training and data code marks nothing.
    copy.edit("commands/run.py", "train every variant x seed", "train each variant x seed")
    assert copy.fingerprint() == first
    again = run()
    assert f"({spec.run_id}): skipped: finished before, val top-1" in again
    assert "other code" not in again
    assert "‡" not in report()

    # A fix in the deformable block: the stored run was made by other code.
    copy.edit(
        "models/attention/deformable.py",
        "from __future__ import annotations\n",
        "from __future__ import annotations\n\nFIXED = True  # the fix of a bug\n",
    )
    fixed = copy.fingerprint()
    assert fixed != first
    stale = run()
    assert f"({spec.run_id}): skipped: finished before, val top-1" in stale
    assert f"made by other code (code {first}" in stale
    assert f"installed code {fixed}; --rerun-stale retrains it" in stale
    marked = report()
    assert "| a ‡ |" in marked
    assert f"‡ code {first}: 1 run(s), not installed" in marked

    retrained = run("--rerun-stale")
    assert "training again from scratch (--rerun-stale)" in retrained
    assert "finished in" in retrained
    assert json.loads(provenance.read_text())["code"]["fingerprint"] == fixed
    assert (store / "runs" / spec.run_id / "superseded" / "0" / "final.json").is_file()
    assert "‡" not in report()
