"""report.html: self-contained, and displayed by a real browser (headless Chromium).

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it); set
``DAT_LAB_CHROMIUM`` to use another binary. Without a browser these tests skip, unless
``DAT_LAB_REQUIRE_CHROMIUM=1`` (CI), where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from results_helpers import EXPERIMENTS, add_run, experiment_configs

from dat_lab.experiments.store import RunStore
from dat_lab.results.report import build_report

# Collects script errors and, once loaded, what the page displays, into <pre id=check>.
PROBE = """<script>
window.__errors = [];
addEventListener('error', e => __errors.push(String(e.message || (e.target && e.target.tagName)
  || e.type)), true);
addEventListener('load', () => {
  const imgs = [...document.images];
  const out = {tables: [...document.querySelectorAll('table')].map(t => t.rows.length),
    images: imgs.length, decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    errors: __errors, anchors: [...document.querySelectorAll('a[href^="#"]')]
      .filter(a => !document.getElementById(a.getAttribute('href').slice(1))).length};
  const pre = document.createElement('pre'); pre.id = 'check';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>"""

PROVENANCE = {
    "dat_lab": {"commit": "0123456789abcdef", "dirty": True, "version": "0.1.0"},
    "python": {"version": "3.11.2"},
    "torch": {"version": "2.14.1"},
    "machine": {"host": "node-7"},
    "started": "2026-01-02T03:04:05+00:00",
    "ended": "2026-01-02T03:05:06+00:00",
}


def chromium() -> str:
    found = (
        os.environ.get("DAT_LAB_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if not found:
        if os.environ.get("DAT_LAB_REQUIRE_CHROMIUM") == "1":
            pytest.fail("DAT_LAB_REQUIRE_CHROMIUM=1 but no chromium on PATH")
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    return found


def browser(binary: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def html_report(tmp_path_factory):
    """Two experiments with comparisons, claims, a failed run and figures, reported."""
    root = tmp_path_factory.mktemp("html")
    store = RunStore(root)
    for exp in ("offset_range", "stage_placement"):
        for i, (variant, config) in enumerate(experiment_configs(exp)[:5]):
            for seed in range(3):
                failed = i == 1 and seed == 2
                acc = 0.8 + 0.01 * i + 0.004 * ((seed * 7 + i) % 3)
                add_run(
                    store,
                    exp,
                    variant,
                    seed,
                    config,
                    state="failed" if failed else "finished",
                    final={"val/acc1": acc},
                    curve=[acc - 0.2, acc - 0.1, acc],
                    reason="NonFiniteLossError: nan",
                )
    store.write_json("offset_range-s0-0", "provenance", PROVENANCE)
    store.write_design(
        "stage_placement", {"baseline": "D_34", "claims": [{"better": "D_34", "than": "none"}]}
    )
    out = root / "out"
    names = [str(EXPERIMENTS / "offset_range.yaml"), "stage_placement"]
    build_report(root, names, ("md",), out, log=lambda m: None, jobs=1)
    return out / "report.html"


def test_html_is_one_offline_file_with_every_part(html_report):
    text = html_report.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched
    assert "<script" not in text and "<link" not in text
    assert text.count('src="data:image/svg+xml;base64,') == 4  # 2 plots + 2 curve figures
    for part in (
        "Contents",
        "offset_range: claims",
        "stage_placement: claims",
        "Δ vs s2 [95% CI]",
        "Δ vs D_34 [95% CI]",
        "runs and provenance",
        "Runs that did not finish",
        "NonFiniteLossError: nan",
        "Seeds to a decision",
    ):
        assert part in text, part
    assert 'href="#runs-offset_range-s0"' in text and 'id="runs-offset_range-s0"' in text
    row = re.search(r'<tr id="runs-offset_range-s0">(.*?)</tr>', text).group(1)
    for shown in (
        "0123456789",
        "True",
        "0.1.0",
        "3.11.2",
        "2.14.1",
        "node-7",
        "2026-01-02T03:04:05",
        "2026-01-02T03:05:06",
    ):
        assert f"<td>{shown}" in row, shown


@pytest.mark.slow
def test_chromium_displays_every_table_and_image_without_errors(html_report, tmp_path):
    binary = chromium()
    probe = tmp_path / "probe.html"
    probe.write_text(html_report.read_text().replace("<head>", "<head>" + PROBE, 1))
    dom = browser(binary, tmp_path, "--dump-dom", probe.as_uri()).stdout
    found = re.search(r'<pre id="check">(.*?)</pre>', dom, re.S)
    assert found, "the page did not finish loading in Chromium"
    check = json.loads(found.group(1).replace("&quot;", '"'))
    source = html_report.read_text()
    assert len(check["tables"]) == source.count("<table>") >= 6  # 2 x (table, claims?, runs)
    assert all(rows >= 2 for rows in check["tables"])  # a header and at least one row each
    assert check["images"] == source.count("<img ") == 4
    assert check["decoded"] == check["images"]  # every image decoded (naturalWidth > 0)
    assert check["errors"] == []
    assert check["anchors"] == 0  # every in-page link has its target
    shot = tmp_path / "report.png"
    browser(
        binary, tmp_path, f"--screenshot={shot}", "--window-size=1400,2400", html_report.as_uri()
    )
    assert shot.stat().st_size > 10_000
    if os.environ.get("DAT_LAB_SCREENSHOT"):
        shutil.copy(shot, os.environ["DAT_LAB_SCREENSHOT"])
