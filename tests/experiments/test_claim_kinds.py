"""Claims of an experiment file: plain, with a margin to beat, and equivalence; each bad claim
is one error naming the file and the key, before anything trains."""

from __future__ import annotations

import pytest
from experiment_helpers import write_experiment

from dat_lab.cli import main
from dat_lab.experiments.claims import ClaimKind, ReportClaim
from dat_lab.experiments.spec import load_experiment
from dat_lab.schema import ConfigError

VARIANTS = {"s0": {"model.stages.3.offset_range": 0}, "s2": {}, "s4": {}}


def _file(tmp_path, claims, **top):
    return write_experiment(tmp_path / "exp.yaml", VARIANTS, claims=claims, **top)


def test_three_kinds_of_claim_load_and_are_recorded_as_written(tmp_path):
    claims = [
        {"better": "s2", "than": "s0"},
        {"better": "s2", "than": "s0", "by": 0.5},
        {"better": "s2", "than": "s4", "within": 1},
        {"same": "s2", "as": "s4", "within": 0.5},
    ]
    exp, _ = load_experiment(_file(tmp_path, claims))
    assert exp.claims[1] == ReportClaim(ClaimKind.BETTER, "s2", "s0", by=0.5)
    assert exp.claims[3] == ReportClaim(ClaimKind.SAME, "s2", "s4", within=0.5)
    assert exp.design()["claims"] == [
        {**c, "within": float(c["within"])} if "within" in c else c for c in claims
    ]


BAD = {
    "unknown variant": ({"better": "s2", "than": "s9"}, "claims.0.than", "unknown variant 's9'"),
    "unknown variant of a same claim": (
        {"same": "s9", "as": "s2", "within": 1},
        "claims.0.same",
        "unknown variant 's9'; allowed: s0, s2, s4",
    ),
    "itself": ({"same": "s2", "as": "s2", "within": 1}, "claims.0", "compares 's2' with itself"),
    "margin zero": ({"better": "s2", "than": "s0", "by": 0}, "claims.0.by", "must be > 0"),
    "margin negative": (
        {"same": "s2", "as": "s0", "within": -0.5},
        "claims.0.within",
        "must be > 0",
    ),
    "margin not a number": (
        {"better": "s2", "than": "s0", "by": "half"},
        "claims.0.by",
        "expected a number of points > 0",
    ),
    "same without within": ({"same": "s2", "as": "s0"}, "claims.0.within", "needs its"),
    "by and within": (
        {"better": "s2", "than": "s0", "by": 1, "within": 1},
        "claims.0.by",
        "not both",
    ),
    "by on a same claim": (
        {"same": "s2", "as": "s0", "within": 1, "by": 1},
        "claims.0.by",
        "allowed: same, as, within",
    ),
    "two kinds": ({"better": "s2", "same": "s0"}, "claims.0", "expected {better: A"),
    "not a mapping": ("s2 > s0", "claims.0", "expected a mapping"),
}


@pytest.mark.parametrize("case", BAD, ids=str)
def test_a_bad_claim_is_one_error_naming_the_file_and_key(case, tmp_path):
    claim, key, message = BAD[case]
    path = _file(tmp_path, [{"better": "s2", "than": "s0"}, claim])
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert err.value.key == key.replace("claims.0", "claims.1")
    assert message in err.value.message and err.value.file == str(path)


def test_a_bad_claim_exits_2_before_anything_trains(tmp_path, cache, capsys):
    path = _file(tmp_path, [{"better": "s2", "than": "s0", "by": -1}])
    assert main(["run", str(path), "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"error: {path}: claims.0.by: got -1.0, a margin must be > 0 (points of the "
        "metric)\n"
    )
    assert not (tmp_path / "store").exists()
