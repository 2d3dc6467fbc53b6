"""experiments/datpp_components.yaml: one DAT++ change removed per variant, back to DAT."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from dat_lab.cli import main
from dat_lab.experiments.spec import load_experiment
from dat_lab.experiments.store import RunState, RunStore
from dat_lab.models import get_preset

PATH = Path(__file__).resolve().parents[2] / "experiments" / "datpp_components.yaml"


def _models() -> dict:
    _, specs = load_experiment(PATH)
    return {s.variant: s.config.model for s in specs}


def _differences(a, b) -> set[str]:
    """Model-level fields and per-stage knobs in which two configs differ (every field, also
    those that ``to_dict`` leaves out at their default)."""
    a, b = a.canonical(), b.canonical()
    out = {f.name for f in fields(a) if f.name != "stages" and _differ(a, b, f.name)}
    for sa, sb in zip(a.stages, b.stages, strict=True):
        out |= {f"stages.{f.name}" for f in fields(sa) if _differ(sa, sb, f.name)}
    return out


def _differ(a, b, name: str) -> bool:
    return getattr(a, name) != getattr(b, name)


def test_each_variant_removes_one_dat_pp_change_and_dat_is_dat_nano():
    models = _models()
    full = models["dat_pp"]
    assert full.hash == get_preset("dat_pp_nano").replace(in_chans=full.in_chans).hash
    assert _differences(full, models["no_conv_patches"]) == {"stem", "downsample"}
    assert _differences(full, models["no_conv_ffn"]) == {"mlp"}
    assert _differences(full, models["no_lpu"]) == {"lpu"}
    assert _differences(full, models["N_to_S"]) == {
        "stages.attn",
        "stages.window",
        "stages.nat_kernel",
        "stages.shift",
    }
    assert _differences(full, models["bounded_offsets"]) == {
        "stages.offset_mode",
        "stages.offset_range",
    }
    dat = models["DAT"]
    assert dat.hash == get_preset("dat_nano").replace(in_chans=dat.in_chans).hash


@pytest.mark.slow
def test_one_epoch_of_every_variant_runs_end_to_end(tmp_path, cache, capsys):
    store = tmp_path / "store"
    tiny = [
        "train.epochs=1",
        "train.warmup_epochs=0",
        "train.val_every_n_epochs=1",
        "data.train_size=64",
        "data.val_size=32",
        "data.batch_size=32",
    ]
    one_seed = tmp_path / "datpp_components.yaml"  # the bundled file, one seed
    one_seed.write_text(f"extends: {PATH}\nseeds: [0]\n")
    assert main(["run", str(one_seed), *tiny, "--store", str(store), "--workers", "1"]) == 0
    records = RunStore(store).runs()
    assert len(records) == 7
    assert {r.state for r in records} == {RunState.FINISHED}
