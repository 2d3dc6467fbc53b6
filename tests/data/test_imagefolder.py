"""imagefolder: real small JPEG/PNG files in the ImageNet layout; each bad layout named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dat_lab.data import build_datamodule
from dat_lab.data.config import AugmentConfig, DataConfig
from dat_lab.schema import ConfigError

CLASSES = ("n01", "n02", "n03")


def write_image(file, colour: tuple[int, int, int], size=(40, 30)) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(file)


def make_tree(root, classes=CLASSES, val_classes=CLASSES, per_class=2):
    """One colour per class: red, green, blue, so a label can be checked from the pixels."""
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    for split, names in (("train", classes), ("val", val_classes)):
        for name in names:
            colour = colours[classes.index(name)]
            for i in range(per_class):
                ext = "JPEG" if i % 2 == 0 else "png"
                write_image(root / split / name / f"{name}_{i}.{ext}", colour)
    return root


def cfg(path, **extra):
    return DataConfig(name="imagefolder", img_size=32, batch_size=4, path=path, **extra)


def test_classes_are_known_before_setup_and_batches_have_the_eval_size(tmp_path):
    dm = build_datamodule(cfg(make_tree(tmp_path)))
    assert (dm.num_classes, dm.in_chans, dm.img_size) == (3, 3, 32)
    assert dm.class_names == CLASSES
    dm.setup("fit")
    assert len(dm.train_set) == 6 and len(dm.val_set) == 6
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.dtype.is_floating_point
    assert set(y.tolist()) <= {0, 1, 2}


def test_val_without_a_class_keeps_the_train_numbering(tmp_path):
    """torchvision alone would number val's (n01, n03) as (0, 1); n03 must stay 2."""
    make_tree(tmp_path, val_classes=("n01", "n03"))
    dm = build_datamodule(cfg(tmp_path, augment=AugmentConfig(auto_augment=None, reprob=0.0)))
    dm.setup("validate")
    labels = [label for _, label in dm.val_set.samples]
    assert sorted(set(labels)) == [0, 2]
    x, y = next(iter(dm.val_dataloader()))
    for image, label in zip(x, y, strict=True):
        # Normalised blue is far above red for class n03 (blue), and the reverse for n01.
        red, blue = image[0].mean().item(), image[2].mean().item()
        assert (blue > red) == (int(label) == 2)


def test_eval_transform_is_resize_then_centre_crop(tmp_path):
    make_tree(tmp_path)
    dm = build_datamodule(cfg(tmp_path, augment=AugmentConfig(crop_pct=0.5)))
    dm.setup("validate")
    transform = dm.val_set.transform
    names = [type(t).__name__ for t in transform.transforms]
    assert names[:2] == ["Resize", "CenterCrop"]
    assert transform.transforms[0].size == 64  # 32 / 0.5
    assert "bicubic" in str(transform.transforms[0].interpolation).lower()


def test_train_transform_has_the_paper_recipe(tmp_path):
    dm = build_datamodule(cfg(make_tree(tmp_path)))
    dm.setup("fit")
    text = repr(dm.train_set.transform)
    assert "RandomResizedCrop" in text and "RandAugment" in text and "RandomErasing" in text
    erasing = dm.train_set.transform.transforms[-1]
    assert erasing.probability == 0.25 and erasing.mode == "pixel"


@pytest.mark.parametrize(
    "layout, words",
    [
        ("no_root", "does not exist"),
        ("no_train", "train"),
        ("no_val", "val"),
        ("no_classes", "no class folders"),
        ("empty_class", "holds no image"),
        ("unknown_val_class", "has no train folder"),
    ],
)
def test_bad_layout_is_a_config_error_naming_key_and_path(tmp_path, layout, words):
    root = tmp_path / "imagenet"
    if layout != "no_root":
        make_tree(root)
    if layout == "no_train":
        import shutil

        shutil.rmtree(root / "train")
    elif layout == "no_val":
        import shutil

        shutil.rmtree(root / "val")
    elif layout == "no_classes":
        for f in (root / "val").rglob("*"):
            if f.is_file():
                f.unlink()
        for d in sorted((root / "val").iterdir()):
            d.rmdir()
    elif layout == "empty_class":
        (root / "train" / "n04").mkdir()
        (root / "train" / "n04" / "notes.txt").write_text("not an image")
    elif layout == "unknown_val_class":
        write_image(root / "val" / "n09" / "x.png", (1, 2, 3))
    with pytest.raises(ConfigError) as info:
        build_datamodule(cfg(root))
    assert info.value.key == "data.path"
    assert words in info.value.message
    assert str(root) in info.value.message


def test_images_in_nested_folders_count(tmp_path):
    make_tree(tmp_path)
    write_image(tmp_path / "train" / "n04" / "sub" / "a.jpg", (9, 9, 9))
    dm = build_datamodule(cfg(tmp_path))
    assert dm.num_classes == 4


def test_pixels_survive_the_eval_pipeline(tmp_path):
    """A flat grey image normalises to (grey/255 - mean) / std in every channel."""
    make_tree(tmp_path)
    write_image(tmp_path / "val" / "n01" / "grey.png", (128, 128, 128))
    dm = build_datamodule(cfg(tmp_path))
    dm.setup("validate")
    index = [i for i, (p, _) in enumerate(dm.val_set.samples) if p.endswith("grey.png")][0]
    x, _ = dm.val_set[index]
    mean, std = np.array(dm.mean_std[0]), np.array(dm.mean_std[1])
    expected = (128 / 255 - mean) / std
    assert np.allclose(x.mean(dim=(1, 2)).numpy(), expected, atol=1e-3)


def test_randaugment_posterize_to_zero_bits_gives_black_instead_of_crashing(tmp_path):
    """timm 1.0.31 asks Pillow 13 for 0-bit posterize at magnitude 10; Pillow raises."""
    from dat_lab.data.transforms import _posterize_keeping_zero_bits

    dm = build_datamodule(cfg(make_tree(tmp_path)))
    dm.setup("fit")
    ops = [
        op
        for t in dm.train_set.transform.transforms
        if hasattr(t, "ops")
        for op in t.ops
        if op.name.startswith("Posterize")
    ]
    assert ops and all(op.aug_fn is _posterize_keeping_zero_bits for op in ops)
    image = Image.new("RGB", (8, 8), (200, 100, 50))
    assert np.asarray(_posterize_keeping_zero_bits(image, 0)).max() == 0
    assert (
        np.asarray(_posterize_keeping_zero_bits(image, 8)).tolist() == np.asarray(image).tolist()
    )
    assert np.asarray(_posterize_keeping_zero_bits(image, 1))[0, 0].tolist() == [128, 0, 0]


def test_classes_keep_the_listed_folders_labelled_in_list_order(tmp_path):
    dm = build_datamodule(cfg(make_tree(tmp_path), classes=("n03", "n01")))
    assert dm.class_names == ("n03", "n01") and dm.num_classes == 2
    dm.setup("fit")
    labels = {Path(path).parent.name: label for path, label in dm.train_set.samples}
    assert labels == {"n03": 0, "n01": 1}


def test_a_listed_class_without_a_folder_is_named(tmp_path):
    with pytest.raises(ConfigError, match="'n09'") as info:
        build_datamodule(cfg(make_tree(tmp_path), classes=("n01", "n09")))
    assert info.value.key == "data.classes"
