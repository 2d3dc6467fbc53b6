"""Code fingerprints: what changes them (model, training, data code) and what does not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dat_lab.experiments import provenance
from dat_lab.fingerprint import (
    RESULT_PACKAGES,
    package_dir,
    result_code_fingerprint,
    source_fingerprint,
)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the dat_lab package that the test may edit."""
    target = tmp_path / "dat_lab"
    shutil.copytree(package_dir(), target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_a_copy_of_the_installed_code_has_the_installed_fingerprint(copy: Path) -> None:
    assert source_fingerprint(RESULT_PACKAGES, root=copy) == result_code_fingerprint()


@pytest.mark.parametrize(
    "edited", ["models/attention/deformable.py", "train/optim.py", "data/transforms.py"]
)
def test_an_edit_to_model_training_or_data_code_changes_it(copy: Path, edited: str) -> None:
    before = source_fingerprint(RESULT_PACKAGES, root=copy)
    _append(copy / edited, "\n# a changed line\n")
    assert source_fingerprint(RESULT_PACKAGES, root=copy) != before


def test_a_new_file_in_the_model_code_changes_it(copy: Path) -> None:
    before = source_fingerprint(RESULT_PACKAGES, root=copy)
    (copy / "models" / "extra.py").write_text("X = 1\n")
    assert source_fingerprint(RESULT_PACKAGES, root=copy) != before


@pytest.mark.parametrize("edited", ["commands/run.py", "results/tables.py", "cli.py"])
def test_an_edit_elsewhere_leaves_it(copy: Path, edited: str) -> None:
    before = source_fingerprint(RESULT_PACKAGES, root=copy)
    _append(copy / edited, '\n"""a changed docstring"""\n')
    assert source_fingerprint(RESULT_PACKAGES, root=copy) == before


def test_provenance_records_the_fingerprint_and_what_it_covers() -> None:
    code = provenance.collect(seed=0)["code"]
    assert code == {"fingerprint": result_code_fingerprint(), "covers": list(RESULT_PACKAGES)}
