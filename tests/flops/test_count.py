"""``count_flops``: cached in memory and on disk by config hash and size; skipped modules."""

from __future__ import annotations

import json

import pytest

from dat_lab.flops import cache_dir, count_flops, count_model
from dat_lab.flops import count as count_module
from dat_lab.models import build_model, get_preset
from dat_lab.schema import ConfigError


class Recounted(Exception):
    pass


def forbid_counting(monkeypatch) -> None:
    """Make any real count raise, so a test can tell a cache hit from a recount."""

    def count_model_stub(*args, **kwargs):
        raise Recounted

    monkeypatch.setattr(count_module, "count_model", count_model_stub)


def test_reports_are_cached_by_config_hash_and_size(monkeypatch):
    cfg = get_preset("dat_nano").with_stage(2, offset_range=3.0)
    count_module.clear_memory_cache()
    first = count_flops(cfg, (40, 36))
    assert len(list(cache_dir().glob(f"{cfg.hash}-40x36-*.json"))) == 1
    assert count_flops(cfg, (40, 36)) is first  # memory

    forbid_counting(monkeypatch)
    count_module.clear_memory_cache()
    assert count_flops(cfg, (40, 36)) == first  # disk
    with pytest.raises(Recounted):
        count_flops(cfg, (40, 40))  # another size is another entry
    with pytest.raises(Recounted):
        count_flops(cfg.with_stage(2, offset_range=4.0), (40, 36))  # another config
    with pytest.raises(Recounted):
        count_flops(cfg, (40, 36), use_cache=False)


@pytest.mark.slow
def test_an_unreadable_cache_entry_is_counted_again():
    cfg = get_preset("dat_nano").with_stage(3, offset_range=5.0)
    count_module.clear_memory_cache()
    report = count_flops(cfg)
    [path] = cache_dir().glob(f"{cfg.hash}-*.json")
    path.write_text("{not json")
    count_module.clear_memory_cache()
    assert count_flops(cfg) == report
    assert count_module.FlopReport.from_dict(json.loads(path.read_text())) == report  # rewritten


def test_the_cache_key_includes_the_counting_code():
    # An edit to dat_lab/flops or dat_lab/models changes the fingerprint in every file name.
    assert len(count_module.code_fingerprint()) == 12
    assert count_module._cache_path(get_preset("dat_nano"), (32, 32)).name.endswith(
        f"-{count_module.code_fingerprint()}.json"
    )


def test_bad_sizes_are_refused_before_building_the_model(monkeypatch):
    forbid_counting(monkeypatch)
    with pytest.raises(ConfigError, match="size: the model cannot run at 4x4"):
        count_flops(get_preset("dat_nano"), (4, 4), use_cache=False)
    fixed = get_preset("dat_nano").with_stage(2, pos_enc="fixed")
    with pytest.raises(ConfigError, match="pos_enc fixed"):
        count_flops(fixed, (48, 48), use_cache=False)


@pytest.mark.slow
def test_a_module_with_weights_the_trace_never_enters_is_reported_as_skipped():
    model = build_model(get_preset("dat_nano"))
    assert count_model(model).skipped == ()
    model.stages[0].unused = type(model.head)(4, 4)  # a Linear nobody calls
    report = count_model(model)
    assert report.skipped == ("stages.0.unused",)
    assert not report.ok
