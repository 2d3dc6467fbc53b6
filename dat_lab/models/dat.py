"""The DAT backbone: stem, stages of blocks, head (Xia et al. CVPR 2022, Fig. 3)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from timm.layers import trunc_normal_
from torch import nn

from dat_lab.models.attention import DeformableAttention, DeformableMaps
from dat_lab.models.block import DatStage
from dat_lab.models.config import DatConfig
from dat_lab.models.conv_layers import ConvStem
from dat_lab.models.enums import Patchify
from dat_lab.models.layers import Stem, drop_path_rates


class DAT(nn.Module):
    """Deformable Attention Transformer built from a :class:`DatConfig`.

    Input of any size runs (windows pad, relative tables resample) unless a D block uses the
    fixed position bias, which is tied to ``cfg.img_size``.

    Shapes: ``(B, in_chans, H, W) -> (B, num_classes)``.
    """

    def __init__(self, cfg: DatConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.num_features = cfg.stages[-1].dim
        stem = ConvStem if cfg.stem == Patchify.CONV else Stem
        self.stem = stem(cfg.in_chans, cfg.stages[0].dim, cfg.patch_size)
        dprs = drop_path_rates(cfg.drop_path, [s.depth for s in cfg.stages])
        self.stages = nn.ModuleList(DatStage(cfg, i, dprs[i]) for i in range(len(cfg.stages)))
        self.norm = nn.LayerNorm(self.num_features)
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
        x = x.mean(dim=(1, 2))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps after each stage, channels-first ``(B, C_i, H_i, W_i)``."""
        x, out = self.stem(x), []
        for stage in self.stages:
            x = stage(x)
            out.append(x.permute(0, 3, 1, 2))
        return out

    def forward_deformable_maps(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, list[DeformableRecord]]:
        """Logits and, for every D block, its reference/sampled points and attention weights.

        Attention is computed explicitly to expose the weights; logits equal ``forward``'s
        to float tolerance.
        """
        with self._recording():
            logits = self.forward(x)
            records = [
                DeformableRecord(stage=i, block=j, stride=self.stride(i), maps=blk.attn.last_maps)
                for i, j, blk in self._deformable_blocks()
            ]
        return logits, records

    # -- helpers ----------------------------------------------------------------------------
    def stride(self, stage_index: int) -> int:
        """Input pixels per feature-map cell at a stage."""
        return self.cfg.patch_size * 2**stage_index

    def _deformable_blocks(self) -> Iterator[tuple[int, int, nn.Module]]:
        for i, stage in enumerate(self.stages):
            for j, blk in enumerate(stage.blocks):
                if isinstance(blk.attn, DeformableAttention):
                    yield i, j, blk

    @contextmanager
    def _recording(self) -> Iterator[None]:
        attns = [blk.attn for _, _, blk in self._deformable_blocks()]
        for a in attns:
            a.record = True
        try:
            yield
        finally:
            for a in attns:
                a.record, a.last_maps = False, None

    def set_fused_attn(self, enable: bool) -> None:
        """Use ``F.scaled_dot_product_attention`` (True) or the explicit branch (False)."""
        for m in self.modules():
            if hasattr(m, "fused_attn"):
                m.fused_attn = enable

    def no_weight_decay(self) -> set[str]:
        """Full names of position tables (no weight decay on them, as the official code)."""
        return {
            n
            for n, _ in self.named_parameters()
            if n.endswith(("relative_position_bias_table", "rpe_table"))
        }


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


def _init_weights(m: nn.Module) -> None:
    """timm's ViT/Swin init: truncated normal (0.02) linear weights, zero biases."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def build_model(cfg: DatConfig) -> DAT:
    """Build a DAT backbone from its config."""
    return DAT(cfg)
