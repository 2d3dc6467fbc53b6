"""Scaled dot-product attention with a fused and an explicit branch.

Every attention type calls :func:`attend`. The fused branch uses
``F.scaled_dot_product_attention`` (a float additive bias is allowed); the explicit branch
computes ``softmax(q k^T / sqrt(d) + bias) v`` step by step and can return the weights (for
visualisation). Tests assert both branches agree, in values and gradients; FLOP counting gives
both the same count (see ``dat_lab.flops.handles``).

Why the explicit branch also serves fused calls with a learned bias on CPU: there (torch
2.14) SDPA runs its fused kernel only when the additive bias needs no gradient; a learned bias
(relative position tables, the deformable block's position term) sends it to its composite
"math" path, which is slower than our explicit formula (forward+backward at DAT-T stage-3
shape, one thread: SDPA 113 ms, explicit 91 ms; see ``benchmarks/bench_backbone.py``). On
CUDA the fused kernels handle a bias gradient and are used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _fused_is_slower(q: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """SDPA on CPU with a bias that needs a gradient falls back to its slower math path."""
    return (
        q.device.type == "cpu"
        and bias is not None
        and bias.requires_grad
        and torch.is_grad_enabled()
    )


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None = None,
    fused: bool = True,
    return_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Multi-head attention ``softmax(q k^T / sqrt(d) + bias) v``.

    Args:
        q: ``(..., heads, Nq, d)``.
        k, v: ``(..., heads, Nk, d)``.
        bias: additive float bias broadcastable to ``(..., heads, Nq, Nk)``.
        fused: use ``F.scaled_dot_product_attention`` (ignored when weights are requested).
        return_weights: also return the attention weights ``(..., heads, Nq, Nk)``.

    Returns:
        ``(out, weights)`` with ``out`` of shape ``(..., heads, Nq, d)``; ``weights`` is
        ``None`` unless requested.
    """
    if fused and not return_weights and not _fused_is_slower(q, bias):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias), None
    logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if bias is not None:
        # In place: the product's backward needs q and k, not the logits; saves a pass.
        logits = logits.add_(bias)
    weights = logits.softmax(dim=-1)
    return weights @ v, (weights if return_weights else None)
