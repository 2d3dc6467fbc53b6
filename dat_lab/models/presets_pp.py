"""DAT++ presets (Xia et al., arXiv 2309.01430; the official repository's main branch).

From the official ``configs/dat_{tiny,small,base,base_384}.yaml``: conv stem and conv
downsampling, ConvFFN, LPU, no LayerScale, ``N D`` alternating in stages 1-3 and ``D D`` in
stage 4, neighbourhood kernel 7, key strides r = 8/4/2/1, offset kernels 9/7/5/3, unbounded
offsets with clamped points, relative position bias. ``dat_pp_nano`` is the same recipe
shrunk for 32 px images on CPU.

Official DAT++ weights need ``sampling: official_pp`` (their coordinate convention). The presets
are listed, with the DAT v1 ones, in :data:`dat_lab.models.presets.PRESETS`.
"""

from __future__ import annotations

from dat_lab.models.config import DatConfig
from dat_lab.models.enums import MlpKind, OffsetMode, Patchify
from dat_lab.models.stage import StageConfig

PP_SPEC = ("ND", "ND", "ND", "DD")
PP_REDUCTION = (8, 4, 2, 1)


def _pp_stages(
    dims: tuple[int, ...],
    depths: tuple[int, ...],
    heads: tuple[int, ...],
    groups: tuple[int, ...],
    reduction: tuple[int, ...] = PP_REDUCTION,
    nat_kernel: int | None = None,
) -> tuple[StageConfig, ...]:
    return tuple(
        StageConfig(
            dim=d,
            depth=n,
            heads=h,
            attn=a,
            offset_groups=g,
            reduction=r,
            offset_mode=OffsetMode.CLAMPED,
            nat_kernel=nat_kernel if "N" in a else None,
        )
        for d, n, h, g, a, r in zip(dims, depths, heads, groups, PP_SPEC, reduction, strict=True)
    )


def _pp(stages: tuple[StageConfig, ...], **kw) -> DatConfig:
    return DatConfig(
        stages=stages,
        stem=Patchify.CONV,
        downsample=Patchify.CONV,
        mlp=MlpKind.DWCONV,
        lpu=True,
        **kw,
    )


def dat_pp_tiny() -> DatConfig:
    """DAT-T++: 4.3G FLOPs, 24M params, 83.9 top-1 (paper)."""
    stages = _pp_stages((64, 128, 256, 512), (2, 4, 18, 2), (2, 4, 8, 16), (1, 2, 4, 8))
    return _pp(stages, drop_path=0.2)


def dat_pp_small() -> DatConfig:
    """DAT-S++: 9.4G FLOPs, 53M params, 84.6 top-1 (paper)."""
    stages = _pp_stages((96, 192, 384, 768), (2, 4, 18, 2), (3, 6, 12, 24), (1, 2, 3, 6))
    return _pp(stages, drop_path=0.4)


def dat_pp_base() -> DatConfig:
    """DAT-B++: 16.6G FLOPs, 93M params, 84.9 top-1 (paper)."""
    stages = _pp_stages((128, 256, 512, 1024), (2, 4, 18, 2), (4, 8, 16, 32), (2, 4, 8, 16))
    return _pp(stages, drop_path=0.7)


def dat_pp_base_384() -> DatConfig:
    """DAT-B++ fine-tuned at 384 px: 85.9 top-1 (paper)."""
    return dat_pp_base().replace(img_size=(384, 384), drop_path=0.6)


def dat_pp_nano() -> DatConfig:
    """CPU DAT++ preset for 32 px images: maps 16/8/4/2 (conv stem, stride 2), N kernel 3.

    Widths, depths and heads of ``dat_nano``; offset groups 1/1/2/3; key strides 4/2/1/1
    (a 4x4 key grid in stages 1-3, as DAT++'s 7x7 at 224 px, and 2x2 in stage 4).
    """
    stages = _pp_stages(
        (16, 32, 64, 96), (2, 2, 2, 2), (1, 2, 4, 6), (1, 1, 2, 3), (4, 2, 1, 1), nat_kernel=3
    )
    return _pp(stages, img_size=(32, 32), patch_size=2, num_classes=2)
