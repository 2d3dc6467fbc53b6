"""The training settings every tiny test run shares (pytest puts this folder on sys.path).

Real Lightning training on CPU, one thread, deterministic, no augmentation and no warm-up, a
log line every step: each test folder adds its own epochs and learning rates on top.
"""

from __future__ import annotations

from typing import Any

CPU_TRAIN: dict[str, Any] = {
    "warmup_epochs": 0,
    "label_smoothing": 0.0,
    "mixup": 0.0,
    "cutmix": 0.0,
    "accelerator": "cpu",
    "deterministic": True,
    "threads": 1,
    "log_every_n_steps": 1,
}
