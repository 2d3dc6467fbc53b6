"""Normalisation constants and the image transforms of every data set.

Every data set is normalised per channel to ``(x - mean) / std`` with ``x`` in [0, 1]:

============  ==========================  ==========================  =========================
data set      mean                        std                         source
============  ==========================  ==========================  =========================
shapes        0.5                         0.5                         maps ink [0, 1] to [-1, 1]
digits        0.3053                      0.3760                      all 1,797 images, 8x8
cifar10       0.4914, 0.4822, 0.4465      0.2470, 0.2435, 0.2616      the 50,000 train images
cifar100      0.5071, 0.4865, 0.4409      0.2673, 0.2564, 0.2762      the 50,000 train images
imagefolder   0.485, 0.456, 0.406         0.229, 0.224, 0.225         ImageNet (timm default)
timm          0.485, 0.456, 0.406         0.229, 0.224, 0.225         ImageNet (timm default)
============  ==========================  ==========================  =========================

Augmentation: ``imagefolder`` and ``timm`` train with the paper's timm recipe
(:func:`imagenet_train`); ``cifar10`` and ``cifar100`` train with the usual random crop (4 px
zero padding) and horizontal flip;
``shapes`` and ``digits`` are not augmented (a flip would change a digit; shapes are endless).
Random choices use torch's generator, which the data loader seeds per worker from its own
generator (and, with ``num_workers=0``, the global one that ``seed_everything`` sets).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from timm.data.auto_augment import RandAugment

from dat_lab.data.config import AugmentConfig

MeanStd = tuple[tuple[float, ...], tuple[float, ...]]

NORMALIZATION: dict[str, MeanStd] = {
    "shapes": ((0.5,), (0.5,)),
    "digits": ((0.3053,), (0.3760,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagefolder": (tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)),
    "timm": (tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)),
}
CIFAR_PAD = 4


def resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """Float (C, H, W) -> (C, size, size), bilinear (antialiased when shrinking)."""
    if image.shape[-2:] == (size, size):
        return image
    shrink = image.shape[-1] > size
    return F.interpolate(
        image[None], size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
    )[0]


def random_crop_flip(image: torch.Tensor, pad: int = CIFAR_PAD) -> torch.Tensor:
    """uint8 (C, H, W): zero-pad by ``pad``, crop back to H x W at random, flip half the time."""
    h, w = image.shape[-2:]
    padded = F.pad(image, (pad, pad, pad, pad))
    top, left = torch.randint(0, 2 * pad + 1, (2,)).tolist()
    out = padded[:, top : top + h, left : left + w]
    if torch.rand(()) < 0.5:
        out = out.flip(-1)
    return out


def imagenet_train(img_size: int, aug: AugmentConfig) -> Callable:
    """The paper's train transform through timm: random-resized crop, flip, RandAugment,
    random erasing (per-pixel noise, one box), ImageNet normalisation.

    Colour jitter is off: timm skips it when an auto-augment policy is set anyway.
    """
    mean, std = NORMALIZATION["imagefolder"]
    transform = create_transform(
        img_size,
        is_training=True,
        auto_augment=aug.auto_augment,
        color_jitter=None,  # type: ignore[arg-type]  # timm's hint omits None, its 'off'
        interpolation=aug.interpolation,
        re_prob=aug.reprob,
        re_mode="pixel",
        re_count=1,
        mean=mean,
        std=std,
    )
    _fix_posterize(transform)
    return transform


def _posterize_keeping_zero_bits(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """timm's posterize, with 0 bits giving a black image as Pillow < 13 did.

    timm 1.0.31's ``PosterizeIncreasing`` (the ``inc1`` in ``rand-m9-mstd0.5-inc1``) asks for
    ``4 - int(level / 10 * 4)`` bits, which is 0 whenever the sampled magnitude reaches 10
    (with mstd 0.5, a few percent of the times posterize is picked). Pillow 13 raises
    ``ValueError`` for 0 bits, which would kill a training run at random; older Pillow, which
    the paper trained with, returned black.
    """
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def _fix_posterize(transform: Any) -> None:
    """Swap :func:`_posterize_keeping_zero_bits` into every posterize op of a RandAugment."""
    for t in getattr(transform, "transforms", []):
        if isinstance(t, RandAugment):
            for op in t.ops:
                if op.name.startswith("Posterize"):
                    op.aug_fn = _posterize_keeping_zero_bits


def imagenet_eval(img_size: int, aug: AugmentConfig) -> Callable:
    """Resize the short side to ``img_size / crop_pct``, centre-crop ``img_size``, normalise."""
    mean, std = NORMALIZATION["imagefolder"]
    return create_transform(
        img_size,
        is_training=False,
        interpolation=aug.interpolation,
        crop_pct=aug.crop_pct,
        mean=mean,
        std=std,
    )
