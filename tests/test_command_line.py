"""The command line reads flags wherever the user types them, also after dotted overrides."""

from __future__ import annotations

import pytest

from dat_lab.cli import parse_args


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["run", "e.yaml", "--dry-run", "train.epochs=2", "--workers", "2", "data.val_size=8"],
            {"dry_run": True, "workers": "2", "overrides": ["train.epochs=2", "data.val_size=8"]},
        ),
        (
            ["sweep", "train.epochs=2", "--study", "free", "--status", "data.val_size=8"],
            {"study": "free", "status": True, "overrides": ["train.epochs=2", "data.val_size=8"]},
        ),
        (
            ["flops", "dat_nano", "--format", "csv", "stages.2.offset_range=3"],
            {"target": "dat_nano", "format": "csv", "overrides": ["stages.2.offset_range=3"]},
        ),
    ],
    ids=["run", "sweep", "flops"],
)
def test_flags_before_between_and_after_overrides_are_read(argv, expected):
    args = parse_args(argv)
    assert args.command == argv[0] and callable(args.func)
    assert {key: getattr(args, key) for key in expected} == expected


def test_an_unknown_flag_is_still_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        parse_args(["run", "e.yaml", "train.epochs=2", "--dryrun"])
    assert stop.value.code == 2
    assert "unrecognized arguments: --dryrun" in capsys.readouterr().err
