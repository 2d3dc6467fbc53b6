"""Whole-model figures at 224 px in fvcore's convention, against the DAT paper's tables.

The ablation rows are built by ``tests/models/test_dat.py::ablation_row`` (attention in stages
1-2 / offsets / position embedding). Each count must also be exact module by module.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import torch

from dat_lab.flops import compare as C
from dat_lab.flops import count_flops
from dat_lab.models import get_preset
from dat_lab.models.pos_embed import RelativePositionBias, cell_centres


def _load_ablation_row():
    path = Path(__file__).resolve().parents[1] / "models" / "test_dat.py"
    spec = importlib.util.spec_from_file_location("_dat_lab_test_dat_rows", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ablation_row


ablation_row = _load_ablation_row()


def gflops(report) -> float:
    return report.total / 1e9


def test_dat_tiny_is_4_59g_and_every_flop_is_accounted_for():
    report = count_flops(get_preset("dat_tiny"))
    assert report.ok and not report.unsupported
    assert report.total == 4_588_941_408  # pinned: any change to the model or the convention shows
    assert round(gflops(report), 2) == 4.59
    assert report.params == 28_319_138


ROW_2_REASON = (
    "paper 4.57G, ours 4.5801G: we count the relative-position table read as what it runs, a "
    "bilinear grid_sample (4 M HW Ns = 5,762,400 FLOPs); without it the row is 4.5743G. With "
    "offsets off at r = 1 every displacement is a whole number of pixels, so that read equals an "
    "integer-index gather (Swin's lookup, 0 in fvcore), the only convention found that gives all "
    "seven rows; the official code does not (its no-offset path still runs the offset network: "
    "4.58/4.59G). See docs/flops.md."
)


@pytest.mark.parametrize(
    "row, paper",
    [
        (("S", "off", "none"), 4.57),
        pytest.param(("S", "off", "relative"), 4.57, marks=pytest.mark.xfail(strict=True, reason=ROW_2_REASON)),
        (("S", "on", "none"), 4.58),
        (("S", "on", "fixed"), 4.58),
        (("S", "on", "dwconv"), 4.59),
        (("P", "on", "relative"), 4.48),
        (("S", "on", "relative"), 4.59),
    ],
)
def test_ablation_table_rows(row, paper):
    report = count_flops(ablation_row(*row))
    assert report.ok
    assert round(gflops(report), 2) == paper


def test_the_no_offsets_relative_row_differs_by_exactly_its_bilinear_table_lookup():
    report = count_flops(ablation_row("S", "off", "relative"))
    lookup = report.residue_by_item()[C.RELATIVE_LOOKUP]
    assert lookup == 3 * 4 * 12 * 196 * 196 + 4 * 24 * 49 * 49  # stage 3 (3 D blocks), stage 4
    assert round(gflops(report), 2) == 4.58
    assert round((report.total - lookup) / 1e9, 2) == 4.57


def test_without_offsets_the_bilinear_table_read_is_an_integer_index_gather():
    # Why counting row 2's lookup as a gather (0 FLOPs) is defensible: same values, exactly.
    h, w, heads = 5, 4, 2
    rpb = RelativePositionBias(heads, 1, (h, w), official=False)
    points = cell_centres(h, w).view(h * w, 2)
    with torch.no_grad():
        bias = rpb(points, points[None], h, w)[0]  # heads, HW (queries), HW (keys)
    ij = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), -1).view(-1, 2)
    d = ij[:, None, :] - ij[None, :, :]  # query - key, in pixels
    gathered = rpb.rpe_table.detach()[:, d[..., 0] + h - 1, d[..., 1] + w - 1]
    torch.testing.assert_close(bias, gathered, rtol=0, atol=1e-6)


def test_the_paper_rows_in_the_gather_convention():
    # Counting the lookup as a gather where offsets are off leaves every other row unchanged.
    paper = {("S", "off", "none"): 4.57, ("S", "off", "relative"): 4.57, ("S", "on", "none"): 4.58,
             ("S", "on", "fixed"): 4.58, ("S", "on", "dwconv"): 4.59, ("P", "on", "relative"): 4.48,
             ("S", "on", "relative"): 4.59}
    for row, figure in paper.items():
        report = count_flops(ablation_row(*row))
        gather = report.residue_by_item().get(C.RELATIVE_LOOKUP, 0) if row[1] == "off" else 0
        assert round((report.total - gather) / 1e9, 2) == figure, row


@pytest.mark.slow
def test_offset_range_zero_keeps_the_offset_network_and_misses_the_no_offset_rows():
    # The official code's "no offsets" (s = 0 here) still runs the offset network and sampling.
    assert round(gflops(count_flops(ablation_row("S", "official-off", "none"))), 2) == 4.58
    assert round(gflops(count_flops(ablation_row("S", "official-off", "relative"))), 2) == 4.59


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, paper, digits",
    [("dat_small", 9.0, 1), ("dat_base", 15.8, 1), ("dat_base_384", 49.8, 1)],
)
def test_big_presets(name, paper, digits):
    report = count_flops(get_preset(name))
    assert report.ok and not report.unsupported
    assert round(gflops(report), digits) == paper
