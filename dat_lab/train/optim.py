"""AdamW with the usual no-decay groups, and a per-step linear warm-up + cosine schedule."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

# Norm layers whose parameters are never decayed. Custom norms (e.g. a channels-first
# LayerNorm2d) are caught as well, because their affine parameters are 1-D.
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)


def no_decay_names(model: nn.Module) -> set[str]:
    """Names of the trainable parameters that get no weight decay.

    These are every parameter of a norm layer, every parameter with ``ndim <= 1`` (biases,
    norm scales, 1-D gains) and the names the model lists in ``no_weight_decay()`` (position
    tables). A name listed there that is not a parameter raises: a typo would otherwise
    silently decay the table.
    """
    params = dict(model.named_parameters())
    listed_fn = getattr(model, "no_weight_decay", None)
    listed: set[str] = set(listed_fn()) if callable(listed_fn) else set()
    unknown = sorted(listed - params.keys())
    if unknown:
        raise ValueError(f"no_weight_decay() names parameters the model lacks: {unknown}")
    names = set(listed)
    for module_name, module in model.named_modules():
        if isinstance(module, NORM_TYPES):
            prefix = f"{module_name}." if module_name else ""
            names.update(prefix + n for n, _ in module.named_parameters(recurse=False))
    names.update(n for n, p in params.items() if p.ndim <= 1)
    return names


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: ``decay`` (``weight_decay``) and ``no_decay`` (0).

    Frozen parameters are left out; an empty group is dropped. Each group carries a ``name``,
    which Lightning's LearningRateMonitor uses in its keys (``lr-AdamW/decay``).
    """
    skip = no_decay_names(model)
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if name in skip else decay).append(param)
    groups = [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def warmup_cosine_lr(
    step: int, *, total_steps: int, warmup_steps: int, lr: float, warmup_lr: float, min_lr: float
) -> float:
    """The learning rate of optimizer step ``step`` (0-based).

    Linear from ``warmup_lr`` (step 0) towards ``lr`` over ``warmup_steps``; then a half cosine
    from ``lr`` (step ``warmup_steps``) to ``min_lr`` (step ``total_steps``), held there after.
    The cosine spans the steps after the warm-up (timm's ``warmup_prefix=True``).
    """
    if step < warmup_steps:
        return warmup_lr + (lr - warmup_lr) * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    warmup_steps: int,
    warmup_lr: float,
    min_lr: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR that follows :func:`warmup_cosine_lr`, stepped once per optimizer step.

    Every group's initial ``lr`` is the peak ``lr``; the lambda returns the ratio to it, so
    ``state_dict``/resume is LambdaLR's own.
    """
    peaks = {g["initial_lr"] if "initial_lr" in g else g["lr"] for g in optimizer.param_groups}
    if len(peaks) != 1:
        raise ValueError(f"all parameter groups must share one peak lr, got {sorted(peaks)}")
    (peak,) = peaks

    def factor(step: int) -> float:
        return (
            warmup_cosine_lr(
                step,
                total_steps=total_steps,
                warmup_steps=warmup_steps,
                lr=peak,
                warmup_lr=warmup_lr,
                min_lr=min_lr,
            )
            / peak
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
