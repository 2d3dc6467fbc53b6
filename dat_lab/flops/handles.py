"""fvcore op handles for DAT, and the strict analysis that uses them.

The counting convention is fvcore's (one multiply-add = one FLOP), which is the convention of
the DAT paper's FLOP figures. Every op the model runs is in exactly one of two tables:

- :data:`COUNTED_OPS`: fvcore's default handles (linear, conv, matmul, layer_norm at 5 per
  element, grid_sampler at 4 per output element, ...), plus the ops fvcore gets wrong or does not
  know: ``scaled_dot_product_attention`` counted as the two matmuls it fuses (fvcore counts it
  as 0), ``einsum`` counted exactly as an integer (fvcore rounds most equations through a float
  numpy path), ``mean`` counted as fvcore counts ``adaptive_avg_pool2d`` and bicubic upsampling
  counted as 16 taps per output element (fvcore's bilinear: 4).
- :data:`ZERO_COST_OPS`: ops that run but cost 0, each with the reason: data movement and
  shape ops, tensor construction, comparisons, and pointwise arithmetic/activations (add, mul,
  GELU, softmax, tanh, ...). fvcore counts no pointwise op (``aten::relu`` is in its own ignore
  list); the paper's figures leave them out too (see ``docs/flops.md``).

:func:`flop_analysis` builds a ``FlopCountAnalysis`` whose ignore list is *replaced* by
:data:`ZERO_COST_OPS` (not added to fvcore's built-in list), so ``unsupported_ops()`` names
every op that is in neither table. For DAT it is empty; a test asserts it.
"""

from __future__ import annotations

import math
import string
import typing
import warnings
from collections import Counter
from typing import Any

import numpy as np
import torch
from torch import nn

with warnings.catch_warnings():  # fvcore's import warns about TorchScript deprecation
    warnings.simplefilter("ignore")
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn import jit_handles as _jit

get_shape = _jit.get_shape

Handle = typing.Callable[[list[Any], list[Any]], "int | typing.Counter[str]"]


def _numel(shape: list[int] | None) -> int:
    if shape is None:
        raise ValueError("op has an input or output without a complete shape")
    return math.prod(shape)


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::scaled_dot_product_attention`` as its two matmuls, in fvcore's matmul convention.

    ``q k^T``: ``batch * Nq * Nk * E``; ``weights v``: ``batch * Nq * Nk * Ev``. This is exactly
    what fvcore's matmul handle gives the explicit branch (``(q * s) @ k^T``, ``w @ v``), so both
    branches of :func:`dat_lab.models.attention._core.attend` count the same. Scaling, the
    additive mask/bias and the softmax are pointwise: 0, as in the explicit branch.
    """
    q, k, v = (get_shape(t) for t in inputs[:3])
    if q is None or k is None or v is None:
        raise ValueError("scaled_dot_product_attention without complete shapes")
    if q[:-2] != k[:-2] or k[:-1] != v[:-1]:
        # Broadcast or grouped-query batches would make the two branches count differently.
        raise ValueError(f"unsupported SDPA shapes q={q} k={k} v={v}")
    batch, n_q, e = math.prod(q[:-2]), q[-2], q[-1]
    n_k, e_v = k[-2], v[-1]
    return batch * n_q * n_k * e + batch * n_q * n_k * e_v


def _expand_ellipsis(term: str, rank: int, fill: str) -> str:
    if "..." not in term:
        return term
    n = rank - (len(term) - 3)
    return term.replace("...", fill[len(fill) - n :] if n > 0 else "")


def einsum_flops(equation: str, shapes: list[list[int]]) -> int:
    """Exact multiply-adds of an einsum, contracting pairwise along numpy's optimal path.

    A pairwise contraction costs the product of the sizes of every index in either operand
    (fvcore's convention for its two special forms, e.g. ``abc,abd->acd`` = ``a*b*c*d``). A
    one-operand einsum (a sum, a trace, a transpose) is data movement plus additions: 0.
    """
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum {equation!r}: {len(terms)} operands, {len(shapes)} shapes")
    if not arrow:  # implicit output: broadcast dims, then letters seen once, sorted (numpy)
        counts = Counter(lhs.replace("...", "").replace(",", ""))
        once = "".join(sorted(c for c, n in counts.items() if n == 1))
        rhs = ("..." if "..." in lhs else "") + once
    spare = "".join(c for c in string.ascii_letters if c not in equation)
    spans = (len(s) - len(t) + 3 for t, s in zip(terms, shapes, strict=True) if "..." in t)
    n_broadcast = max(spans, default=0)
    terms = [_expand_ellipsis(t, len(s), spare) for t, s in zip(terms, shapes, strict=True)]
    rhs = _expand_ellipsis(rhs, n_broadcast + len(rhs) - 3, spare)
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, shapes, strict=True):
        for letter, n in zip(term, shape, strict=True):
            sizes[letter] = max(sizes.get(letter, 1), n)  # broadcast dims of size 1
    if len(terms) == 1:
        return 0
    shaped = [np.broadcast_to(np.empty(()), s) for s in shapes]  # shapes only, no memory
    path = np.einsum_path(f"{','.join(terms)}->{rhs}", *shaped, optimize="optimal")[0][1:]
    total = 0
    for pair in path:
        picked = [terms[i] for i in pair]
        for i in sorted(pair, reverse=True):
            del terms[i]
        remaining = set("".join(terms)) | set(rhs)
        letters = set("".join(picked))
        if len(picked) > 1:
            total += math.prod(sizes[c] for c in letters)
        terms.append("".join(sorted(letters & remaining)))
    return total


def einsum_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::einsum`` counted exactly (fvcore's own handle returns a rounded float)."""
    equation = inputs[0].toIValue()
    shapes = [get_shape(v) for v in inputs[1].node().inputs()]
    if any(s is None for s in shapes):
        raise ValueError(f"einsum {equation!r} without complete shapes")
    return einsum_flops(equation, shapes)


def mean_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::mean``: one add per input element, as fvcore counts ``adaptive_avg_pool2d``."""
    return _numel(get_shape(inputs[0]))


def bicubic_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::upsample_bicubic2d``: 16 taps per output element (fvcore's bilinear: 4)."""
    return 16 * _numel(get_shape(outputs[0]))


# fvcore's defaults (flop_count._DEFAULT_SUPPORTED_OPS), restated so the convention is visible
# here, then ours. einsum replaces fvcore's float-valued handle.
COUNTED_OPS: dict[str, Handle] = {
    "aten::addmm": _jit.addmm_flop_jit,
    "aten::bmm": _jit.bmm_flop_jit,
    "aten::_convolution": _jit.conv_flop_jit,
    "aten::matmul": _jit.matmul_flop_jit,
    "aten::mm": _jit.matmul_flop_jit,
    "aten::linear": _jit.linear_flop_jit,
    "aten::batch_norm": _jit.batchnorm_flop_jit,
    "aten::group_norm": _jit.norm_flop_counter(2),
    "aten::layer_norm": _jit.norm_flop_counter(2),
    "aten::instance_norm": _jit.norm_flop_counter(1),
    "aten::upsample_nearest2d": _jit.elementwise_flop_counter(0, 1),
    "aten::upsample_bilinear2d": _jit.elementwise_flop_counter(0, 4),
    "aten::adaptive_avg_pool2d": _jit.elementwise_flop_counter(1, 0),
    "aten::grid_sampler": _jit.elementwise_flop_counter(0, 4),
    # ours
    "aten::einsum": einsum_flop_jit,
    "aten::scaled_dot_product_attention": sdpa_flop_jit,
    "aten::mean": mean_flop_jit,
    "aten::upsample_bicubic2d": bicubic_flop_jit,
}

_MOVE = "data movement / shape only"
_MAKE = "builds a tensor (constants, index grids, masks): no arithmetic on activations"
_POINTWISE = "pointwise: fvcore's convention counts no pointwise op (it ignores aten::relu)"
_COMPARE = "comparison / logical: not arithmetic in fvcore's convention"
_INDEX = "indexing / gather (e.g. the L/S relative-bias table lookup): data movement"

ZERO_COST_OPS: dict[str, str] = {
    **dict.fromkeys(
        [
            "aten::view",
            "aten::reshape",
            "aten::permute",
            "aten::transpose",
            "aten::t",
            "aten::contiguous",
            "aten::flatten",
            "aten::unflatten",
            "aten::expand",
            "aten::expand_as",
            "aten::squeeze",
            "aten::unsqueeze",
            "aten::unsqueeze_",
            "aten::select",
            "aten::slice",
            "aten::narrow",
            "aten::roll",
            "aten::pad",
            "aten::constant_pad_nd",
            "aten::flip",
            "aten::cat",
            "aten::stack",
            "aten::split",
            "aten::split_with_sizes",
            "aten::chunk",
            "aten::unbind",
            "aten::repeat",
            "aten::clone",
            "aten::copy_",
            "aten::to",
            "aten::type_as",
            "aten::detach",
            "aten::alias",
            "aten::lift_fresh",
            "aten::size",
            "aten::Int",
            "aten::ScalarImplicit",
            "aten::dropout",
            "aten::numpy_T",
        ],
        _MOVE,
    ),
    **dict.fromkeys(
        [
            "aten::arange",
            "aten::zeros",
            "aten::zeros_like",
            "aten::ones",
            "aten::ones_like",
            "aten::empty",
            "aten::new_empty",
            "aten::full",
            "aten::full_like",
            "aten::new_full",
            "aten::new_zeros",
            "aten::new_ones",
            "aten::meshgrid",
            "aten::fill_",
            "aten::masked_fill",
            "aten::masked_fill_",
            "aten::linspace",
        ],
        _MAKE,
    ),
    **dict.fromkeys(
        ["aten::index", "aten::index_put_", "aten::gather", "aten::nonzero", "aten::index_select"],
        _INDEX,
    ),
    **dict.fromkeys(
        [
            "aten::eq",
            "aten::ne",
            "aten::ge",
            "aten::gt",
            "aten::le",
            "aten::lt",
            "aten::__and__",
            "aten::__or__",
            "aten::bitwise_not",
            "aten::logical_not",
        ],
        _COMPARE,
    ),
    **dict.fromkeys(
        [
            "aten::add",
            "aten::add_",
            "aten::sub",
            "aten::sub_",
            "aten::rsub",
            "aten::mul",
            "aten::mul_",
            "aten::div",
            "aten::div_",
            "aten::neg",
            "aten::pow",
            "aten::sqrt",
            "aten::rsqrt",
            "aten::exp",
            "aten::tanh",
            "aten::sigmoid",
            "aten::gelu",
            "aten::relu",
            "aten::relu_",
            "aten::silu",
            "aten::softmax",
            "aten::clamp",
            "aten::clamp_",
            "aten::clamp_min",
            "aten::clamp_max",
            "aten::floor",
            "aten::floor_divide",
            "aten::remainder",
            "aten::max",
            "aten::min",
            "aten::abs",
            "aten::sign",
            "aten::log2",
        ],
        _POINTWISE,
    ),
}

assert not set(COUNTED_OPS) & set(ZERO_COST_OPS), "an op is both counted and zero-cost"


def flop_analysis(model: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor, ...]):
    """A fvcore ``FlopCountAnalysis`` with :data:`COUNTED_OPS` and only :data:`ZERO_COST_OPS`.

    fvcore's built-in ignore list is dropped, so an op the model runs that is in neither table
    shows up in ``unsupported_ops()`` instead of vanishing. Warnings are off: callers read
    ``unsupported_ops()`` and ``uncalled_modules()`` themselves.
    """
    analysis = FlopCountAnalysis(model, inputs)
    analysis._ignored_ops = set()  # fvcore 0.1.5 keeps its ignore list here; replace it
    analysis.set_op_handle(**COUNTED_OPS)
    analysis.set_op_handle(**dict.fromkeys(ZERO_COST_OPS))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return analysis
