"""Each training attempt logs into its own ``logs/version_K``; K counts numerically."""

from __future__ import annotations

from dat_lab.experiments.store import attempt_metrics_csvs
from dat_lab.train.log_dirs import attempt_dirs, attempt_index, next_version


def test_versions_count_numerically_and_other_folders_are_ignored(tmp_path):
    logs = tmp_path / "logs"
    assert next_version(logs) == "version_0"  # a new run: no logs folder yet
    for name in ("version_0", "version_2", "version_10", "version_x", "tensorboard"):
        (logs / name).mkdir(parents=True)
    assert [p.name for p in attempt_dirs(logs)] == ["version_0", "version_2", "version_10"]
    assert next_version(logs) == "version_11"
    assert attempt_index(logs / "version_x") is None and attempt_index(logs / "v_3") is None


def test_the_store_reads_the_metrics_of_each_attempt_in_order(tmp_path):
    for k in (10, 9, 1):
        folder = tmp_path / "logs" / f"version_{k}"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text("epoch\n0\n")
    (tmp_path / "logs" / "version_3").mkdir()  # an attempt killed before it logged
    assert [p.parent.name for p in attempt_metrics_csvs(tmp_path)] == [
        "version_1",
        "version_9",
        "version_10",
    ]
