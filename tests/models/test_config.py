"""Every impossible model config is refused at build time with a message naming the key."""

from __future__ import annotations

import pytest

from dat_lab.models import DatConfig, PosEnc, StageConfig, get_preset, resolve_model_config
from dat_lab.schema import ConfigError, identity_mapping


def nano_dict() -> dict:
    return get_preset("dat_nano").to_dict()


@pytest.mark.parametrize(
    "overrides, key, message",
    [
        ({"stages.2.heads": 5}, "model.stages.2.heads", "dim 64 is not divisible by heads 5"),
        (
            {"stages.2.offset_groups": 3},
            "model.stages.2.offset_groups",
            "heads 4 are not divisible by offset_groups 3",
        ),
        ({"stages.0.offset_range": 2}, "model.stages.0.offset_range", "stage has no D block"),
        ({"stages.1.reduction": 2}, "model.stages.1.reduction", "stage has no D block"),
        ({"stages.2.sr_ratio": 2}, "model.stages.2.sr_ratio", "stage has no P block"),
        ({"stages.2.attn": "LZ"}, "model.stages.2.attn", "unknown letter 'Z'"),
        ({"stages.2.attn": "LDL"}, "model.stages.2.attn", "do not tile depth 2"),
        ({"stages.2.reduction": 8}, "model.stages.2.reduction", "larger than the 4x4 feature map"),
        ({"stages.2.offset_range": -1}, "model.stages.2.offset_range", "finite number >= 0"),
        ({"stages.2.offset_kernel": 4}, "model.stages.2.offset_kernel", "odd integer"),
        (
            {"stages.2.offsets": False, "stages.2.offset_range": 4},
            "model.stages.2.offset_range",
            "offsets: false",
        ),
        (
            {"stages.2.offset_mode": "clamped", "stages.2.offset_range": 4},
            "model.stages.2.offset_range",
            "clamped",
        ),
        (
            {"stages.2.pos_enc": "learned"},
            "model.stages.2.pos_enc",
            "allowed: 'none', 'fixed', 'dwconv', 'relative', 'log_cpb'",
        ),
        ({"img_size": None}, "model.stages.2.pos_enc", "needs a fixed input size"),
        ({"stages.0.shift": 9}, "model.stages.0.shift", "must be in 1..3"),
        ({"stages.0.window": "7"}, "model.stages.0.window", "expected an integer"),
        (
            {"stages.0.attn": "LP", "stages.0.sr_ratio": 32},
            "model.stages.0.sr_ratio",
            "larger than the 16x16",
        ),
        ({"drop_path": 1.5}, "model.drop_path", "must be in [0, 1)"),
        ({"img_size": [8, 8]}, "model.img_size", "8x8 leaves the feature map empty at stage 3"),
        ({"patch_size": 4, "img_size": [16, 16]}, "model.img_size", "at least 32"),
        ({"stages.2.ofset_range": 2}, "model.stages.2.ofset_range", "did you mean 'offset_range'"),
        ({"dims": [1, 2]}, "model.dims", "unknown key"),
        # DAT++ knobs
        ({"stem": "overlap"}, "model.stem", "allowed: 'patch', 'conv'"),
        ({"downsample": "pool"}, "model.downsample", "allowed: 'patch', 'conv'"),
        ({"mlp": "glu"}, "model.mlp", "allowed: 'plain', 'dwconv'"),
        ({"layer_scale": 0.0}, "model.layer_scale", "finite number > 0 or null"),
        ({"lpu": "yes"}, "model.lpu", "expected true or false"),
        ({"stem": "conv", "patch_size": 3}, "model.patch_size", "must be even"),
        ({"stages.2.nat_kernel": 3}, "model.stages.2.nat_kernel", "stage has no N block"),
        (
            {"stages.2.attn": "ND", "stages.2.nat_kernel": 4},
            "model.stages.2.nat_kernel",
            "odd integer",
        ),
        ({"stages.2.attn": "XD"}, "model.stages.2.window", "must be odd, got 4"),
        ({"stages.0.pos_enc": "log_cpb"}, "model.stages.0.pos_enc", "stage has no D block"),
    ],
)
def test_bad_config_is_refused_with_its_key_and_reason(overrides, key, message):
    with pytest.raises(ConfigError) as info:
        resolve_model_config("dat_nano", overrides, file="exp.yaml")
    err = info.value
    assert err.key == key and err.file == "exp.yaml"
    assert message in str(err)
    assert str(err).startswith(f"exp.yaml: {key}: ")


def test_fixed_pe_without_a_fixed_input_size_is_refused():
    with pytest.raises(ConfigError, match="needs a fixed input size"):
        resolve_model_config(
            "dat_nano",
            {"img_size": None, "stages.2.pos_enc": "fixed", "stages.3.pos_enc": "fixed"},
        )


def test_no_fixed_size_is_fine_without_size_bound_tables():
    cfg = resolve_model_config(
        "dat_nano", {"img_size": None, "stages.2.pos_enc": "dwconv", "stages.3.pos_enc": "none"}
    )
    assert cfg.img_size is None


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ConfigError, match="unknown preset 'dat_huge'; available: .*dat_tiny"):
        resolve_model_config("dat_huge")


def test_defaults_resolve_as_documented():
    stage = get_preset("dat_tiny").stages[2]
    spec = stage.deformable(2)
    assert (spec.offsets, spec.offset_range, spec.reduction) == (True, 2.0, 1)
    assert (spec.offset_groups, spec.offset_kernel, spec.pos_enc.value) == (3, 5, "relative")
    assert get_preset("dat_tiny").stages[3].deformable(3).offset_kernel == 3
    assert get_preset("dat_tiny").stages[0].shift_size == 4  # official: ceil(7 / 2)


def test_stage_widths_are_free():
    cfg = DatConfig(
        stages=(
            StageConfig(dim=32, depth=2, heads=2),
            StageConfig(dim=48, depth=2, heads=3, attn="LD"),
        ),
        img_size=(32, 32),
        num_classes=3,
    )
    assert cfg.stages[1].dim == 48


def test_config_hash_depends_on_content_only():
    a = resolve_model_config("dat_nano", {"stages.2.offset_range": 4})
    b = resolve_model_config({"preset": "dat_nano", "stages.2.offset_range": 4.0})
    c = resolve_model_config("dat_nano", {"stages.2.offset_range": 3})
    assert a.hash == b.hash != c.hash


def test_a_default_and_the_same_value_written_out_hash_alike():
    base = get_preset("dat_nano")
    explicit = base.with_stage(2, offset_range=2.0, pos_enc=PosEnc.RELATIVE, reduction=1)
    assert explicit != base and explicit.hash == base.hash
    assert base.with_stage(2, offset_range=3.0).hash != base.hash
    canonical = base.canonical()
    assert canonical.stages[2].offset_range == 2.0 and canonical.stages[0].offset_range is None
    assert canonical.canonical() == canonical


def test_dat_pp_knobs_round_trip_and_hash_their_defaults():
    cfg = resolve_model_config(
        "dat_nano",
        {
            "stem": "conv",
            "downsample": "conv",
            "mlp": "dwconv",
            "layer_scale": 1e-5,
            "lpu": True,
            "stages.0.attn": "NX",
            "stages.0.window": 3,
            "stages.2.pos_enc": "log_cpb",
        },
    )
    assert DatConfig.from_dict(cfg.to_dict()) == cfg
    explicit = cfg.with_stage(0, nat_kernel=7)
    assert explicit.hash == cfg.hash  # N's default kernel written out hashes alike
    assert cfg.with_stage(0, nat_kernel=5).hash != cfg.hash


def test_conv_stem_and_downsampling_round_odd_sides_up():
    cfg = resolve_model_config("dat_nano", {"img_size": [33, 30]})
    conv = cfg.replace(stem="conv", downsample="conv")
    assert cfg.feature_size(2) == (4, 3)  # 33 // 2 // 2 // 2, 30 // 2 // 2 // 2
    assert conv.feature_size(2) == (5, 4)  # ceil at each padded 3x3 conv


def test_dat_pp_knobs_enter_the_hash_only_when_set():
    """DAT configs keep the run ids they had before DAT++'s knobs existed."""
    dat = get_preset("dat_nano")
    identity = identity_mapping(dat)
    assert not {"stem", "downsample", "mlp", "layer_scale", "lpu"} & set(identity)
    assert all("nat_kernel" not in stage for stage in identity["stages"])
    assert dat.replace(lpu=True).hash != dat.hash
    assert dat.replace(layer_scale=1e-5).hash != dat.hash
    pp = get_preset("dat_pp_nano")
    assert pp.replace(lpu=False).hash != pp.hash
    assert identity_mapping(pp)["stages"][0]["nat_kernel"] == 3
