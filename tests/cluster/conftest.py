"""The cluster tests need a real SLURM cluster (``.ci/slurm.sh`` starts one on this machine).

Without one they skip, except where the cluster is required (CI, or
``DAT_LAB_REQUIRE_SLURM=1``): there a missing cluster fails them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))


def _slurm_answers() -> str | None:
    """None when ``sinfo`` lists an idle or mixed node; else why not."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                             timeout=20, check=False)  # fmt: skip
    except FileNotFoundError:
        return "sinfo is not installed"
    except subprocess.TimeoutExpired:
        return "sinfo timed out"
    if out.returncode != 0:
        return f"sinfo failed: {out.stderr.strip()}"
    if not {"idle", "mixed", "allocated"} & set(out.stdout.split()):
        return f"no usable node: {out.stdout.strip()!r}"
    return None


@pytest.fixture(scope="session")
def slurm() -> None:
    problem = _slurm_answers()
    if problem is None:
        return
    required = (
        os.environ.get("CI", "").lower() in ("1", "true", "yes")
        or os.environ.get("DAT_LAB_REQUIRE_SLURM") == "1"
    )
    message = f"no SLURM cluster ({problem}); start one with `source .ci/slurm.sh && start_slurm`"
    if required:
        pytest.fail(message)
    pytest.skip(message)
