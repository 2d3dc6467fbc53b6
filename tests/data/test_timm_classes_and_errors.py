"""data.classes over timm's readers, and the errors of data.name timm: one line naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from digit_forms import NAMES, TRAIN, digits, write_folder, write_parquet, write_tar, write_wds

from dat_lab.data import DataConfig, build_datamodule, readers
from dat_lab.data.classes import read_class_file
from dat_lab.schema import ConfigError, config_hash, from_mapping, identity_mapping

PICK = ("d7", "d2", "d9")


@pytest.fixture(autouse=True)
def hf_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.getbasetemp() / "hf_cache"))


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return {
        "": write_folder(tmp_path_factory.mktemp("folder")),
        "tar": write_tar(tmp_path_factory.mktemp("tar")),
        "hfds/": write_parquet(tmp_path_factory.mktemp("parquet")),
        "wds/": write_wds(tmp_path_factory.mktemp("wds")),
    }


def timm_cfg(path, dataset="", **extra):
    return DataConfig(name="timm", dataset=dataset, path=path, img_size=16, batch_size=8, **extra)


@pytest.mark.parametrize("form", ["", "tar", "hfds/"])
def test_classes_keep_the_listed_ones_labelled_in_list_order(form, roots, tmp_path):
    listing = tmp_path / "classes.txt"
    listing.write_text("# three digits\nd7\n\nd2  # two\nd9\n")
    dm = build_datamodule(timm_cfg(roots[form], "" if form == "tar" else form, classes=listing))
    assert dm.class_names == PICK and dm.num_classes == 3
    dm.setup("fit")
    labels = digits()["train"][1].tolist()
    want = sorted(PICK.index(f"d{y}") for y in labels if f"d{y}" in PICK)
    got = sorted(int(t) for t in readers.targets(dm.train_set))
    assert got == want and len(dm.train_set) < TRAIN


def test_the_class_list_enters_the_run_id_by_its_names_not_its_file(roots, tmp_path):
    """The run id is the hash of the identity mapping, of which data's is a part."""
    (tmp_path / "a.txt").write_text("d7\nd2\nd9\n")
    (tmp_path / "b.txt").write_text("d7\nd2\nd9\n")
    (tmp_path / "c.txt").write_text("d2\nd7\nd9\n")

    def data_id(classes):
        data = {"name": "timm", "path": str(roots[""]), "img_size": 16, "batch_size": 8}
        if classes is not None:
            data["classes"] = classes
        return config_hash(from_mapping(DataConfig, data))

    ids = [data_id(str(tmp_path / n)) for n in ("a.txt", "b.txt", "c.txt")]
    assert ids[0] == ids[1] == data_id(list(PICK)) and ids[2] != ids[0]
    assert data_id(None) not in ids


def test_configs_without_the_new_keys_keep_their_mapping():
    """Existing run ids stay: the keys added here are left out while unset."""
    cfg = DataConfig(name="cifar10", path="/x", img_size=32, batch_size=8)
    assert set(identity_mapping(cfg)) == {
        "name", "img_size", "batch_size", "path", "num_workers", "seed", "train_size",
        "val_size", "cache_dir", "shapes", "augment",
    }  # fmt: skip


def test_a_listed_class_the_data_lacks_is_named(roots):
    with pytest.raises(ConfigError, match="'d11'") as info:
        build_datamodule(timm_cfg(roots[""], classes=("d1", "d11")))
    assert info.value.key == "data.classes"


@pytest.mark.parametrize(
    ("classes", "words"),
    [((), "empty"), (("d1", "d1"), "listed twice"), (("d1", " "), "blank")],
)
def test_a_bad_class_list_is_refused(classes, words):
    with pytest.raises(ConfigError, match=words) as info:
        DataConfig(name="timm", path="/x", img_size=16, batch_size=8, classes=classes)
    assert info.value.key == "classes"


def test_a_missing_class_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not found") as info:
        from_mapping(
            DataConfig,
            {"name": "timm", "path": "/x", "img_size": 16, "batch_size": 8,
             "classes": str(tmp_path / "none.txt")},
            prefix="data",
        )  # fmt: skip
    assert info.value.key == "data.classes" and "none.txt" in info.value.message


def test_classes_of_an_iterable_reader_are_refused(roots):
    with pytest.raises(ConfigError, match="iterable") as info:
        build_datamodule(timm_cfg(roots["wds/"], "wds/", classes=("d1",)))
    assert info.value.key == "data.classes"


@pytest.mark.parametrize("form", ["", "tar", "wds/", "hfds/"])
def test_a_missing_split_is_named_with_its_key(form, roots):
    dataset = "" if form == "tar" else form
    with pytest.raises(ConfigError, match="'nosuch'") as info:
        dm = build_datamodule(timm_cfg(roots[form], dataset, val_split="nosuch"))
        dm.setup("fit")
    assert info.value.key == "data.val_split"


def test_a_missing_path_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as info:
        build_datamodule(timm_cfg(tmp_path / "nowhere"))
    assert info.value.key == "data.path"


def test_a_reader_dat_lab_does_not_read_offline_is_refused():
    with pytest.raises(ConfigError, match="tfds") as info:
        DataConfig(name="timm", dataset="tfds/imagenet2012", path="/x", img_size=16, batch_size=8)
    assert info.value.key == "dataset"


def test_a_missing_package_names_its_extra(roots, monkeypatch):
    real = readers.importlib.util.find_spec
    monkeypatch.setattr(
        readers.importlib.util, "find_spec", lambda n: None if n == "webdataset" else real(n)
    )
    with pytest.raises(ConfigError, match=r"dat-lab\[wds\]") as info:
        build_datamodule(timm_cfg(roots["wds/"], "wds/"))
    assert info.value.key == "data.dataset"


def test_too_few_shards_for_the_workers_is_named(roots):
    dm = build_datamodule(timm_cfg(roots["wds/"], "wds/", num_workers=8))
    with pytest.raises(ConfigError, match="4 shards") as info:
        dm.setup("fit")
    assert info.value.key == "data.num_workers"


def test_timm_knobs_are_refused_for_other_data_sets():
    with pytest.raises(ConfigError, match="timm knob") as info:
        DataConfig(name="digits", img_size=16, batch_size=8, val_split="val")
    assert info.value.key == "val_split"


def test_nothing_is_fetched_from_the_hub(roots, monkeypatch):
    """hfds reads a local folder with the hub offline: a network call would raise here."""
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("network access")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    dm = build_datamodule(timm_cfg(roots["hfds/"], "hfds/"))
    dm.setup("fit")
    assert dm.class_names == NAMES and len(dm.val_set) > 0


def test_the_bundled_imagenet100_list_holds_100_distinct_wordnet_ids():
    names = read_class_file(Path(__file__).resolve().parents[2] / "docs" / "imagenet100.txt")
    assert len(names) == 100 and all(re.fullmatch(r"n\d{8}", n) for n in names)
    assert names[0] == "n02869837" and names[-1] == "n02090622"


def test_timm_knobs_written_at_their_defaults_make_the_same_run_id(roots):
    base = {"name": "timm", "path": str(roots[""]), "img_size": 16, "batch_size": 8}
    spelled = {**base, "dataset": "", "train_split": "train", "val_split": "validation"}
    assert config_hash(from_mapping(DataConfig, spelled)) == config_hash(
        from_mapping(DataConfig, base)
    )
