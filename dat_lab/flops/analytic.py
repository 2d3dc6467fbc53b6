"""Closed-form FLOP counts (multiply-adds, fvcore's convention), one function per term.

Two kinds of function live here, both plain integer arithmetic on sizes:

- *formulas*: the published complexity of each module kind, e.g. the DAT paper's
  ``Omega(DA) = 2 HW Ns C + 2 HW C^2 + 2 Ns C^2 + (k^2 + 2) Ns C`` or Swin's
  ``Omega(W-MSA) = 4 hw C^2 + 2 M^2 hw C``;
- *residue terms*: what fvcore also counts but the formulas leave out (LayerNorm at 5 per
  element, bilinear sampling at 4 per output element, the relative-position lookup, padding of
  windows, ...), each a named function so that nothing hides in a tolerance.

:mod:`dat_lab.flops.compare` decides which terms a module gets; a test checks that fvcore's
count equals formula + residue exactly for every module kind.

Worked example (DAT paper, section 3.3): stage 3 of a Swin-T-sized model at 224 px has
H = W = 14, C = 384, and with r = 2 (Ns = 7 x 7 = 49)
``deformable_attention(14, 14, 384, 49) = 7,375,872 + 57,802,752 + 14,450,688 = 79,629,312``,
the paper's 79.63M. The paper quotes 5.08M for the offset network (k = 5); the formula gives
``offset_network(49, 384, 5) = 27 * 49 * 384 = 508,032`` = 0.51M, exactly a tenth of the quoted
figure (a slipped decimal point is the likely cause; see docs/flops.md).
"""

from __future__ import annotations

LAYER_NORM_PER_ELEMENT = 5  # fvcore's estimate for an affine LayerNorm
BILINEAR_PER_OUTPUT = 4  # fvcore's grid_sampler / upsample_bilinear2d: 4 taps
BICUBIC_PER_OUTPUT = 16  # our upsample_bicubic2d handle: 16 taps


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def key_grid(h: int, w: int, r: int) -> tuple[int, int]:
    """Key grid ``Hk x Wk = ceil(H/r) x ceil(W/r)`` of a deformable block (paper: HW / r^2)."""
    return ceil_div(h, r), ceil_div(w, r)


# -- formulas -----------------------------------------------------------------------------


def deformable_attention(h: int, w: int, c: int, ns: int) -> int:
    """DAT paper: ``Omega(attention) = 2 HW Ns C + 2 HW C^2 + 2 Ns C^2``.

    Projections of q and the output (``HW C^2`` each), of k and v from the ``Ns`` sampled
    features (``Ns C^2`` each), and ``q k^T`` plus ``weights v`` (``HW Ns C`` each).
    """
    return 2 * h * w * ns * c + 2 * h * w * c * c + 2 * ns * c * c


def offset_network(ns: int, c: int, k: int) -> int:
    """DAT paper: ``Omega(offset network) = (k^2 + 2) Ns C``.

    The depthwise ``k x k`` conv (``k^2 Ns C``) and the 1x1 conv to 2 channels (``2 Ns C``);
    its LayerNorm and GELU are not in the formula (see :func:`layer_norm`).
    """
    return (k * k + 2) * ns * c


def window_attention(h: int, w: int, c: int, window: tuple[int, int]) -> int:
    """Swin: ``Omega(W-MSA) = 4 hw C^2 + 2 M^2 hw C`` (``M^2`` = window area ``wh * ww``).

    ``4 hw C^2`` for the q, k, v and output projections, ``2 M^2 hw C`` for ``q k^T`` and
    ``weights v`` inside windows. Same for shifted windows (SW-MSA). A map smaller than the
    window uses a window of the map's size, as in Swin.
    """
    return 4 * h * w * c * c + 2 * window[0] * window[1] * h * w * c


def global_attention(n: int, c: int) -> int:
    """ViT multi-head self-attention over ``n`` tokens: ``4 n C^2 + 2 n^2 C``."""
    return 4 * n * c * c + 2 * n * n * c


def spatial_reduction_attention(n: int, n_kv: int, c: int, sr: int) -> int:
    """PVT SRA: ``2 n C^2 + 2 Nk C^2 + 2 n Nk C + sr^2 Nk C^2``.

    q and output projections over ``n`` queries, k and v over the ``Nk = (H/sr)(W/sr)``
    reduced tokens, the attention, and the ``sr x sr`` stride-``sr`` reduction conv (absent when
    ``sr = 1``, where this equals :func:`global_attention`). PVT states no closed form; this is
    the DAT formula's accounting applied to SRA.
    """
    reduction = sr * sr * n_kv * c * c if sr > 1 else 0
    return 2 * n * c * c + 2 * n_kv * c * c + 2 * n * n_kv * c + reduction


def neighborhood_attention(h: int, w: int, c: int, kernel: int) -> int:
    """NAT: ``4 HW C^2 + 2 HW k^2 C`` (Swin's formula with the window replaced by ``k x k``).

    q, k, v and output projections, and ``q k^T`` plus ``weights v`` over each query's
    ``k^2`` neighbours. The gather of the windows and the bias lookup are data movement.
    """
    return window_attention(h, w, c, (kernel, kernel))


def conv_mlp(n: int, c: int, hidden: int) -> int:
    """DAT++ ConvFFN: the two linear layers plus a 3x3 depthwise conv on the hidden layer."""
    return mlp(n, c, hidden) + conv(n, 1, hidden, (3, 3))


def local_perception_unit(n: int, c: int) -> int:
    """DAT++ LPU: a 3x3 depthwise conv, ``9 HW C`` (its residual addition is pointwise)."""
    return conv(n, 1, c, (3, 3))


def conv_stem(n_half: int, n_out: int, in_chans: int, c: int) -> int:
    """DAT++ stem: 3x3 conv to ``C/2`` (``n_half`` outputs), then 3x3 conv to ``C``."""
    return conv(n_half, in_chans, c // 2, (3, 3)) + conv(n_out, c // 2, c, (3, 3))


def conv_downsample(n_out: int, c_in: int, c_out: int) -> int:
    """DAT++ downsampling: 3x3 conv, stride 2: ``(H/2)(W/2) C_out C_in 9``."""
    return conv(n_out, c_in, c_out, (3, 3))


def mlp(n: int, c: int, hidden: int) -> int:
    """Two linear layers ``C -> hidden -> C`` on ``n`` tokens: ``2 n C hidden`` (GELU free)."""
    return 2 * n * c * hidden


def conv(n_out: int, c_in_per_group: int, c_out: int, kernel: tuple[int, int]) -> int:
    """A convolution: ``n_out * c_out * (c_in / groups) * kh * kw`` (fvcore: no bias)."""
    return n_out * c_out * c_in_per_group * kernel[0] * kernel[1]


def patch_embed(n_out: int, in_chans: int, c: int, patch: int) -> int:
    """Stem: ``p x p`` conv, stride ``p``: ``(H/p)(W/p) C in_chans p^2``."""
    return conv(n_out, in_chans, c, (patch, patch))


def patch_merging(n_out: int, c_in: int, c_out: int) -> int:
    """Downsampling between stages: 2x2 conv, stride 2: ``(H/2)(W/2) C_out C_in 4``."""
    return conv(n_out, c_in, c_out, (2, 2))


def classifier(c: int, num_classes: int) -> int:
    """Linear head on the pooled features: ``C * num_classes`` (bias not counted)."""
    return c * num_classes


# -- residue terms ------------------------------------------------------------------------


def layer_norm(n: int, c: int) -> int:
    """LayerNorm of ``n`` tokens of width ``c``: fvcore's ``5 n c`` (affine)."""
    return LAYER_NORM_PER_ELEMENT * n * c


def bilinear_sampling(n_out: int, c: int) -> int:
    """``grid_sample`` producing ``n_out`` points of ``c`` channels: fvcore's ``4 n_out c``."""
    return BILINEAR_PER_OUTPUT * n_out * c


def relative_position_lookup(heads: int, n: int, ns: int) -> int:
    """D's relative position bias: one bilinear read per head, query and key: ``4 M HW Ns``."""
    return BILINEAR_PER_OUTPUT * heads * n * ns


def relative_table_resample(heads: int, h: int, w: int) -> int:
    """Bicubic resampling of the ``(2H-1) x (2W-1)`` table to another map size (16 taps)."""
    return BICUBIC_PER_OUTPUT * heads * (2 * h - 1) * (2 * w - 1)


def dwconv_position_encoding(n: int, c: int) -> int:
    """D's DWConv position encoding: a 3x3 depthwise conv of q: ``9 HW C``."""
    return conv(n, 1, c, (3, 3))


def log_cpb(heads: int, groups: int, n: int, ns: int, hidden: int = 32) -> int:
    """D's log-CPB: an MLP ``2 -> hidden -> heads/groups`` per group, query and key."""
    return groups * n * ns * 2 * hidden + n * ns * hidden * heads


def window_padding(n: int, n_padded: int, c: int, window: tuple[int, int]) -> int:
    """Extra work of L/S blocks on the padding that makes the map a multiple of the window."""
    extra = n_padded - n
    return 4 * extra * c * c + 2 * window[0] * window[1] * extra * c


def average_pool(n: int, c: int) -> int:
    """Global average pool of ``n`` tokens: one add per element (fvcore's adaptive pool)."""
    return n * c
