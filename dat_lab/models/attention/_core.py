"""Scaled dot-product attention with a fused and an explicit branch.

Every attention type calls :func:`attend`. The fused branch uses
``F.scaled_dot_product_attention`` (a float additive bias is allowed); the explicit branch
computes ``softmax(q k^T / sqrt(d) + bias) v`` step by step and can return the weights (for
visualisation). Tests assert both branches agree; FLOP counting gives both the same count
(see ``dat_lab.flops.handles``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
    if fused and not return_weights:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias), None
    logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if bias is not None:
        logits = logits + bias
    weights = logits.softmax(dim=-1)
    return weights @ v, (weights if return_weights else None)
