"""examples/detection_faster_rcnn.py: DAT features + FPN in torchvision's Faster R-CNN train."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "detection_faster_rcnn.py"


def _example():
    spec = importlib.util.spec_from_file_location("detection_faster_rcnn", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_faster_rcnn_on_dat_features_trains_a_step():
    ex = _example()
    torch.manual_seed(0)
    detector = ex.build_detector("dat_micro", num_classes=3, size=128)
    images, targets = ex.synthetic_batch(2, 128, 3)
    body = detector.backbone.body
    before = {n: p.detach().clone() for n, p in body.named_parameters()}
    losses = ex.train_step(detector, images, targets, lr=1e-3)
    assert set(losses) == {
        "loss_classifier",
        "loss_box_reg",
        "loss_objectness",
        "loss_rpn_box_reg",
    }
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    grads = {n: p.grad for n, p in body.named_parameters()}
    assert all(g is not None for g in grads.values())  # every backbone tensor gets a gradient
    assert float(grads["model.stem.proj.weight"].abs().sum()) > 0
    assert float(grads["model.stages.3.blocks.1.attn.proj_q.weight"].abs().sum()) > 0
    moved = [n for n, p in body.named_parameters() if not torch.equal(p, before[n])]
    assert "model.stem.proj.weight" in moved


def test_backbone_gives_five_fpn_levels_at_strides_4_to_64():
    ex = _example()
    backbone = ex.DatFpnBackbone("dat_micro", out_channels=32).eval()
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 128, 96))
    assert list(out) == ["0", "1", "2", "3", "pool"]
    assert [tuple(t.shape[-2:]) for t in out.values()] == [
        (32, 24), (16, 12), (8, 6), (4, 3), (2, 2),
    ]  # fmt: skip
    assert all(t.shape[1] == 32 for t in out.values())
