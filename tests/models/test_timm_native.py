"""DAT as a timm-native model: registry, kwargs, features, grad checkpointing, buffers.

timm's own model tests run on the presets in ``tests/timm_upstream``; these check what they
do not: the registration on ``import dat_lab``, our kwargs mapping and its errors, equal
gradients under checkpointing, the layout of pruned features on the small presets.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import timm
import torch

from dat_lab.models import build_model, get_preset
from dat_lab.models.registry import ModelArgumentError
from dat_lab.schema import ConfigError


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.slow
@pytest.mark.parametrize("order", ["import dat_lab, timm", "import timm, dat_lab"])
def test_import_dat_lab_registers_every_preset_in_timm(order):
    code = (
        f"{order}\nimport sys\n"
        "m = timm.create_model('dat_nano', num_classes=3)\n"
        "print(type(m).__name__, m.head.out_features, ','.join(timm.list_models('dat_*')))"
    )
    name, classes, listed = _python(code).split()
    assert (name, classes) == ("DAT", "3")
    assert set(listed.split(",")) >= {"dat_tiny", "dat_small", "dat_base", "dat_base_384"}


@pytest.mark.slow
def test_import_dat_lab_alone_does_not_import_torch():
    # The CLI imports dat_lab first: registering with timm must wait until timm is imported.
    assert _python("import dat_lab, sys; print('torch' in sys.modules)") == "False"


def test_timm_kwargs_map_onto_the_config():
    m = timm.create_model(
        "dat_nano", num_classes=5, drop_path_rate=0.1, **{"stages.3.offset_range": 4.0}
    )
    assert m.cfg.num_classes == 5 and m.cfg.drop_path == 0.1
    assert m.cfg.stages[3].offset_range == 4.0
    assert m.cfg == get_preset("dat_nano").replace(num_classes=5, drop_path=0.1).with_stage(
        3, offset_range=4.0
    )


def test_unknown_and_invalid_kwargs_name_the_key():
    with pytest.raises(ModelArgumentError, match="unknown keyword argument 'window_size'"):
        timm.create_model("dat_nano", window_size=7)
    with pytest.raises(ConfigError, match=r"dat_nano\.stages\.3\.offset_range"):
        timm.create_model("dat_nano", **{"stages.3.offset_range": -1.0})
    with pytest.raises(TypeError):  # what timm and Python callers expect of a bad keyword
        timm.create_model("dat_nano", not_a_model_arg=1)


def test_pretrained_without_a_file_is_refused():
    with pytest.raises(ModelArgumentError, match="needs a weights file"):
        timm.create_model("dat_tiny.official_in1k", pretrained=True)


def test_tag_chooses_the_sampling_convention():
    assert timm.create_model("dat_nano").cfg.sampling.value == "consistent"
    assert timm.create_model("dat_tiny.official_in1k").cfg.sampling.value == "official"


def test_features_only_gives_four_nchw_stages():
    m = timm.create_model("dat_micro", features_only=True, out_indices=(1, 3))
    assert m.feature_info.reduction() == [8, 32]
    outs = m(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 8, 8), (2, 96, 2, 2)]
    full = timm.create_model("dat_micro", features_only=True)
    assert full.feature_info.channels() == [16, 32, 64, 96]
    assert full.feature_info.reduction() == [4, 8, 16, 32]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_pruned_features_end_at_the_stage_output(index):
    torch.manual_seed(0)
    model = build_model(get_preset("dat_nano")).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        taps = model.forward_intermediates(x, intermediates_only=True, output_fmt="NHWC")
        model.prune_intermediate_layers([index], prune_norm=True)
        torch.testing.assert_close(model.forward_features(x), taps[index])
    assert len(model.stages) == index + 1 and model.num_features == taps[index].shape[-1]


def test_grad_checkpointing_gives_the_same_gradients():
    cfg = get_preset("dat_nano").replace(drop_path=0.2)  # random drop path: RNG is replayed
    x = torch.randn(4, 3, 32, 32)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = build_model(cfg).train()
        model.set_grad_checkpointing(checkpointing)
        torch.manual_seed(1)
        model(x).logsumexp(-1).sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)


def test_index_buffers_are_not_in_the_state_dict():
    cfg = get_preset("dat_nano").with_stage(3, offsets=False)  # keys on pixels: a pixel index
    model = build_model(cfg)
    buffers = dict(model.named_buffers())
    assert "stages.0.blocks.0.attn.relative_position_index" in buffers
    assert "stages.3.blocks.1.attn.pos_bias.pixel_index" in buffers
    assert not set(buffers) & set(model.state_dict())


def test_device_and_dtype_keywords_place_every_tensor():
    m = timm.create_model("dat_nano", device="meta", dtype=torch.float64)
    tensors = [*m.parameters(), *m.buffers()]
    assert all(t.device.type == "meta" for t in tensors)
    assert {p.dtype for p in m.parameters()} == {torch.float64}
