"""DAT as a detection backbone: ``features_only`` DAT + FPN inside torchvision's Faster R-CNN.

    python examples/detection_faster_rcnn.py                 # one training step, synthetic data
    python examples/detection_faster_rcnn.py --model dat_tiny --weights dat_tiny_in1k_224.pth

The backbone is timm's feature extractor of a DAT preset (four stages, strides 4/8/16/32,
NCHW); torchvision's ``FeaturePyramidNetwork`` turns them into 256-channel maps plus a pooled
level, which Faster R-CNN's default anchors (5 levels) and RoI pooler expect. Official
ImageNet weights load from a file (``--weights``), with the ``official_in1k`` tag choosing
their sampling convention. The relative-position tables resample to each input size, so
detection-sized images (any multiple of 32) work without rebuilding the model.
"""

from __future__ import annotations

import argparse
from collections import OrderedDict

import timm
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

import dat_lab  # noqa: F401  (registers the DAT presets in timm)


class DatFpnBackbone(nn.Module):
    """DAT stages -> FPN: ``(B, 3, H, W) -> {'0'..'3', 'pool'}`` of ``out_channels`` each."""

    def __init__(
        self,
        model: str = "dat_tiny",
        out_channels: int = 256,
        weights: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__()
        name = f"{model}.official_in1k" if weights else model
        self.body = timm.create_model(
            name,
            pretrained=weights is not None,
            pretrained_cfg_overlay=dict(file=weights) if weights else None,
            features_only=True,
            out_indices=(0, 1, 2, 3),
            **kwargs,
        )
        self.fpn = FeaturePyramidNetwork(
            self.body.feature_info.channels(), out_channels, extra_blocks=LastLevelMaxPool()
        )
        self.out_channels = out_channels  # what torchvision's detectors read

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.body(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def build_detector(
    model: str = "dat_tiny", num_classes: int = 3, size: int = 512, weights: str | None = None
) -> FasterRCNN:
    """Faster R-CNN on a DAT-FPN backbone; images are resized to ``size`` (min and max side)."""
    return FasterRCNN(
        DatFpnBackbone(model, weights=weights), num_classes=num_classes, min_size=size,
        max_size=size,
    )  # fmt: skip


def synthetic_batch(n: int, size: int, num_classes: int, seed: int = 0):
    """Random images with 1-3 random boxes each (labels 1..num_classes-1; 0 is background)."""
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(n):
        images.append(torch.rand(3, size, size, generator=g))
        k = int(torch.randint(1, 4, (1,), generator=g))
        xy = torch.rand(k, 2, generator=g) * size * 0.6
        wh = 8 + torch.rand(k, 2, generator=g) * size * 0.35
        boxes = torch.cat([xy, xy + wh], dim=1).clamp(max=size - 1)
        labels = torch.randint(1, num_classes, (k,), generator=g)
        targets.append({"boxes": boxes, "labels": labels})
    return images, targets


def train_step(detector: FasterRCNN, images, targets, lr: float = 1e-4) -> dict[str, float]:
    """One AdamW step; returns the loss terms."""
    detector.train()
    opt = torch.optim.AdamW([p for p in detector.parameters() if p.requires_grad], lr=lr)
    losses = detector(images, targets)
    total = sum(losses.values())
    opt.zero_grad()
    total.backward()
    opt.step()
    return {k: float(v.detach()) for k, v in losses.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="dat_tiny")
    p.add_argument("--weights", default=None, help="official DAT checkpoint file")
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args()
    detector = build_detector(args.model, size=args.size, weights=args.weights)
    images, targets = synthetic_batch(2, args.size, 3)
    for name, value in train_step(detector, images, targets).items():
        print(f"{name}: {value:.4f}")


if __name__ == "__main__":
    main()
