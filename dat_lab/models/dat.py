"""The DAT backbone: stem, stages of blocks, head (Xia et al. CVPR 2022, Fig. 3).

Built like timm's ``swin_transformer.py``: the model class carries timm's model API
(``forward_features``/``forward_head``, ``forward_intermediates`` and
``prune_intermediate_layers``, ``feature_info``, ``reset_classifier``, grad checkpointing);
``dat_lab.models.registry`` turns presets into timm models with ``build_model_with_cfg``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from timm.layers import SelectAdaptivePool2d, trunc_normal_
from timm.models._features import feature_take_indices
from torch import nn

from dat_lab.models.attention import DeformableAttention, DeformableMaps
from dat_lab.models.block import DatStage
from dat_lab.models.config import DatConfig
from dat_lab.models.conv_layers import ConvStem
from dat_lab.models.enums import Patchify
from dat_lab.models.layers import Stem, drop_path_rates

# Pools whose output width is num_features (the head is a Linear over num_features).
POOLS = ("avg", "max", "avgmax", "fast", "")


class DAT(nn.Module):
    """Deformable Attention Transformer built from a :class:`DatConfig`.

    Input of any size runs (windows pad, relative tables resample) unless a D block uses the
    fixed position bias, which is tied to ``cfg.img_size``.

    Args:
        cfg: the architecture (the one source of it).
        global_pool: pooling before the head (``avg``; ``''`` keeps the map, timm's convention).
        device, dtype: where and in which float type to create parameters and buffers.

    Shapes: ``(B, in_chans, H, W) -> (B, num_classes)``; features are channels-last
    (``output_fmt = 'NHWC'``, as timm's Swin).
    """

    output_fmt = "NHWC"

    def __init__(
        self,
        cfg: DatConfig,
        global_pool: str = "avg",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.in_chans = cfg.in_chans
        self.num_features = self.head_hidden_size = cfg.stages[-1].dim
        self.grad_checkpointing = False
        with torch.device(device) if device is not None else nullcontext():
            self._build(cfg, global_pool)
        if dtype is not None:
            self.to(dtype=dtype)

    def _build(self, cfg: DatConfig, global_pool: str) -> None:
        stem = ConvStem if cfg.stem == Patchify.CONV else Stem
        self.stem = stem(cfg.in_chans, cfg.stages[0].dim, cfg.patch_size)
        dprs = drop_path_rates(cfg.drop_path, [s.depth for s in cfg.stages])
        self.stages = nn.ModuleList()
        self.feature_info: list[dict[str, Any]] = []
        for i, stage in enumerate(cfg.stages):
            self.stages.append(DatStage(cfg, i, dprs[i]))
            info = dict(num_chs=stage.dim, reduction=self.stride(i), module=f"stages.{i}")
            self.feature_info.append(info)
        self.norm: nn.Module = nn.LayerNorm(self.num_features)
        self.global_pool = _pool(global_pool)
        self.head = (
            nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes else nn.Identity()
        )
        self.apply(_init_weights)

    # -- forward ---------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, h, w, num_features)`` (normalised, channels-last)."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool (unless ``global_pool=''``), then the classifier unless ``pre_logits``."""
        x = self.global_pool(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs (timm's contract), and the final normalised features.

        Args:
            indices: last n stages if int, all if None, those listed otherwise.
            norm: apply the final norm to the last stage's output (it is sized for it only).
            stop_early: stop after the last stage asked for.
            output_fmt: ``NCHW`` (default) or ``NHWC`` for the intermediates.
            intermediates_only: return only the intermediates.
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        stages = self.stages[: max_index + 1] if stop_early else self.stages
        last = len(self.stages) - 1
        intermediates, i = [], 0
        x = self.stem(x)
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                out = self.norm(x) if norm and i == last else x
                if output_fmt == "NCHW":
                    out = out.permute(0, 3, 1, 2).contiguous()
                intermediates.append(out)
        if intermediates_only:
            return intermediates
        if i == last:
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
        self,
        indices: int | list[int] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop the stages after the last index kept (and the norm/head as timm's Swin)."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        if prune_norm or prune_end:
            self.norm = nn.Identity()  # the final norm is sized for the last stage only
        self.stages = self.stages[: max_index + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices

    def forward_deformable_maps(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, list[DeformableRecord]]:
        """Logits and, for every D block, its reference/sampled points and attention weights.

        Attention is computed explicitly to expose the weights; logits equal ``forward``'s
        to float tolerance.
        """
        with self._recording():
            logits = self.forward(x)
            records = []
            for i, j, attn in self._deformable_blocks():
                if attn.last_maps is None:  # every block runs in forward: a bug
                    raise RuntimeError(f"stage {i} block {j} recorded no maps")
                records.append(DeformableRecord(i, j, self.stride(i), attn.last_maps))
        return logits, records

    # -- timm model API --------------------------------------------------------------------
    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new head with ``num_classes`` outputs (0: none), on the model's device and dtype."""
        if global_pool is not None:
            self.global_pool = _pool(global_pool)
        self.num_classes = num_classes
        ref = next(self.parameters())
        self.head = (
            nn.Linear(self.num_features, num_classes, device=ref.device, dtype=ref.dtype)
            if num_classes
            else nn.Identity()
        )
        if num_classes:
            _init_weights(self.head)
        self.head.train(self.training)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass (memory for compute)."""
        self.grad_checkpointing = enable
        for stage in self.stages:
            setattr(stage, "grad_checkpointing", enable)  # noqa: B010 (nn.Module typing)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups for layer-wise optimisers (timm's Swin layout)."""
        return dict(
            stem=r"^stem",
            blocks=r"^stages\.(\d+)"
            if coarse
            else [
                (r"^stages\.(\d+)\.downsample", (0,)),
                (r"^stages\.(\d+)\.blocks\.(\d+)", None),
                (r"^norm", (99999,)),
            ],
        )

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Full names of position tables (no weight decay on them, as the official code)."""
        return {
            n
            for n, _ in self.named_parameters()
            if n.endswith(("relative_position_bias_table", "rpe_table"))
        }

    def set_fused_attn(self, enable: bool) -> None:
        """Use ``F.scaled_dot_product_attention`` (True) or the explicit branch (False)."""
        attentions: list[Any] = [m for m in self.modules() if hasattr(m, "fused_attn")]
        for m in attentions:
            m.fused_attn = enable

    # -- helpers ----------------------------------------------------------------------------
    def stride(self, stage_index: int) -> int:
        """Input pixels per feature-map cell at a stage."""
        return self.cfg.patch_size * 2**stage_index

    def _deformable_blocks(self) -> Iterator[tuple[int, int, DeformableAttention]]:
        """(stage, block, attention) of every D block."""
        for i, stage in enumerate(self.stages):
            assert isinstance(stage, DatStage)
            for j, blk in enumerate(stage.blocks):
                attn = getattr(blk, "attn", None)
                if isinstance(attn, DeformableAttention):
                    yield i, j, attn

    @contextmanager
    def _recording(self) -> Iterator[None]:
        attns = [attn for _, _, attn in self._deformable_blocks()]
        for a in attns:
            a.record = True
        try:
            yield
        finally:
            for a in attns:
                a.record, a.last_maps = False, None


@dataclass(frozen=True)
class DeformableRecord:
    """One D block's :class:`DeformableMaps` with where it sits (stage, block, pixel stride)."""

    stage: int
    block: int
    stride: int
    maps: DeformableMaps

    def reference_pixels(self) -> torch.Tensor:
        """``(B, G, Hk, Wk, 2)`` reference points in input-pixel (y, x)."""
        return self.maps.to_pixels(self.maps.reference, self.stride)

    def sampled_pixels(self) -> torch.Tensor:
        """``(B, G, Hk, Wk, 2)`` deformed sampling points in input-pixel (y, x)."""
        return self.maps.to_pixels(self.maps.sampled, self.stride)


def _pool(global_pool: str) -> SelectAdaptivePool2d:
    """timm's pooling over channels-last maps; ``''`` keeps the map (no flatten)."""
    if global_pool not in POOLS:
        allowed = ", ".join(map(repr, POOLS))
        raise ValueError(
            f"global_pool {global_pool!r} is not supported by DAT; allowed: {allowed}"
        )
    return SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool), input_fmt="NHWC")


def _init_weights(m: nn.Module) -> None:
    """timm's ViT/Swin init: truncated normal (0.02) linear weights, zero biases."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def build_model(cfg: DatConfig, **kwargs: Any) -> DAT:
    """A DAT backbone from its config (``kwargs``: ``global_pool``, ``device``, ``dtype``)."""
    return DAT(cfg, **kwargs)
