"""The default shapes task is learnable: a small CNN beats chance after a few epochs on CPU.

This pins the calibration of the default difficulty (dat_lab/data/config.py): if the generator
gets harder by accident, the ablations built on it would compare models at chance.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dat_lab.data import DataConfig, build_datamodule


def small_cnn() -> nn.Module:
    def block(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
        )

    return nn.Sequential(
        block(1, 16), block(16, 16), nn.MaxPool2d(2),
        block(16, 32), block(32, 32), nn.MaxPool2d(2),
        block(32, 64), block(64, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 2),
    )  # fmt: skip


@pytest.mark.slow
def test_small_cnn_learns_default_pathfinder_above_chance(tmp_path):
    torch.manual_seed(0)
    cfg = DataConfig(name="shapes", img_size=32, batch_size=32, train_size=2000, val_size=500,
                     cache_dir=tmp_path)  # fmt: skip
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    model = small_cnn()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    for _ in range(3):
        model.train()
        for x, y in dm.train_dataloader():
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in dm.val_dataloader())
    accuracy = correct / len(dm.val_set)
    # 500 balanced images: chance is 0.5 +- 0.022 (1 sd); 0.6 is 4.5 sd above it.
    assert accuracy > 0.6, accuracy
