"""N's windows against natten itself, the library DAT++ calls.

natten 0.20+ builds without its CUDA library (pure Python, Flex Attention on CPU), so it runs
here, but it has no relative position bias (removed in 0.20) and no CPU backward: it checks
N's window rule (border windows shifted inward, never padded) in values, with the bias at
zero. The bias layout is checked against natten 0.14's index rules in test_neighborhood.py.
``.ci/run`` installs natten; elsewhere these tests skip, unless ``DAT_LAB_REQUIRE_NATTEN=1``
(CI), where they fail.
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from dat_lab.models.attention.neighborhood import NeighborhoodAttention


def _natten():
    try:
        import natten
    except ImportError:
        if os.environ.get("DAT_LAB_REQUIRE_NATTEN") == "1":
            pytest.fail("DAT_LAB_REQUIRE_NATTEN=1 but natten is not installed")
        pytest.skip("natten is not installed (pip install --no-build-isolation natten)")
    return natten


@pytest.mark.parametrize(
    ("h", "w", "kernel"), [(5, 7, 3), (6, 6, 5), (8, 9, 7), (7, 7, 7), (12, 10, 7)]
)
def test_windows_equal_natten_na2d_with_the_bias_at_zero(h, w, kernel):
    natten = _natten()
    torch.manual_seed(0)
    heads, head_dim = 2, 16  # natten's Flex backend needs head_dim >= 16
    attn = NeighborhoodAttention(heads * head_dim, heads, kernel)
    x = torch.randn(2, h, w, heads * head_dim)
    with torch.no_grad():
        attn.rpb.zero_()
        ours = attn(x)
        q, k, v = attn.qkv(x).view(2, h, w, 3, heads, head_dim).unbind(3)
        with warnings.catch_warnings():  # natten warns that Flex runs uncompiled on CPU
            warnings.simplefilter("ignore")
            core = natten.na2d(q, k, v, kernel_size=kernel)
        reference = attn.proj(core.reshape(2, h, w, heads * head_dim))
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_natten_differs_from_n_with_a_bias():
    """The check above can fail: with a non-zero bias N is no longer natten's plain NA."""
    natten = _natten()
    torch.manual_seed(0)
    attn = NeighborhoodAttention(32, 2, 3)
    x = torch.randn(1, 6, 6, 32)
    with torch.no_grad():
        attn.rpb.normal_()
        q, k, v = attn.qkv(x).view(1, 6, 6, 3, 2, 16).unbind(3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = attn.proj(natten.na2d(q, k, v, kernel_size=3).reshape(1, 6, 6, 32))
        assert not torch.allclose(attn(x), reference, atol=1e-3)
