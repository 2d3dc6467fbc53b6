"""Where deformable attention looks (the paper's Fig. 1 and appendix figures), for a stored run.

For every D block of a run's trained model, two panels over the input image:

- left: the reference points (dots) and arrows to the deformed sampling points ``p + dp``,
  one colour per offset group;
- right: the attention of one query (a star) over the sampled keys: each sampled point sized
  and coloured by its weight (the mean over the heads of its offset group).

Coordinates are input pixels ``(y, x)`` with pixel ``i``'s centre at ``i`` (matplotlib's
``imshow`` convention), from :meth:`DeformableRecord.sampled_pixels`; points are drawn where
the model put them, also when they fall outside the image. The scatter artists carry
``gid`` ``"reference"``, ``"sampled"`` and ``"attention"`` (and ``"query"``) so tests can
read back exactly what was drawn. A key of head ``h`` is drawn at the point of its group
``h // (heads / G)``; with G > 1 that key also reads the other groups' channels at their
points (the keys project all channels), which one picture cannot show.
"""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg", force=False)

from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image, UnidentifiedImageError

from dat_lab.data.config import DataConfig
from dat_lab.data.datamodule import build_datamodule
from dat_lab.data.transforms import NORMALIZATION, imagenet_eval, resize
from dat_lab.experiments.run_config import RunConfig
from dat_lab.experiments.store import RunStore
from dat_lab.experiments.weights import checkpoint_path, find_run, model_for, read_weights
from dat_lab.models import build_model
from dat_lab.models.checkpoints import fit_weights
from dat_lab.schema import ConfigError

if TYPE_CHECKING:
    from dat_lab.models.dat import DAT

MODEL_PREFIX = "model."  # DatLitModule keeps the network as self.model


@dataclass(frozen=True)
class InputImage:
    """The network input ``(1, C, H, W)`` (normalised) and the picture to draw ``(H, W[, 3])``."""

    tensor: torch.Tensor
    picture: np.ndarray
    label: str


def _check_has_deformable_blocks(record: Any) -> None:
    """Before loading anything: a model without D blocks (``none`` of the stage-placement
    ablation) has nothing to draw."""
    stages = RunConfig.from_dict(record.config).model.stages
    if not any("D" in stage.attn for stage in stages):
        what = f"{record.identity.experiment}/{record.identity.variant}"
        raise ConfigError(
            f"run {record.run_id} ({what}) has no deformable (D) block to draw", "RUN_ID"
        )


def load_model(record: Any, which: str = "last") -> tuple[DAT, Any]:
    """The run's network with its checkpoint's weights (strict), in eval mode, and its config."""
    cfg = RunConfig.from_dict(record.config)
    model = build_model(cfg.model)
    path = checkpoint_path(record, which)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = {
        k.removeprefix(MODEL_PREFIX): v
        for k, v in ckpt["state_dict"].items()
        if k.startswith(MODEL_PREFIX)
    }
    model.load_state_dict(state, strict=True)
    return model.eval(), cfg


def _picture(x: torch.Tensor, mean_std) -> np.ndarray:
    """Normalised ``(C, H, W)`` -> displayable ``(H, W)`` or ``(H, W, 3)`` in [0, 1]."""
    mean = torch.tensor(mean_std[0]).view(-1, 1, 1)
    std = torch.tensor(mean_std[1]).view(-1, 1, 1)
    img = (x * std + mean).clamp(0, 1)
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()


def load_input(cfg: Any, image: str | Path | None = None, index: int | None = None) -> InputImage:
    """Image ``index`` of the run's validation set, or the file ``image`` prepared like it."""
    datamodule = build_datamodule(cfg.data)
    if image is not None:
        x = _read_image(Path(image), cfg, datamodule)
        return InputImage(x[None], _picture(x, datamodule.mean_std), Path(image).name)
    datamodule.prepare_data()
    datamodule.setup("validate")
    val = datamodule.val_set
    assert isinstance(val, Sized)  # setup('validate') builds a sized data set
    index = 0 if index is None else index
    if not 0 <= index < len(val):
        raise ConfigError(
            f"must be in 0..{len(val) - 1} (validation images), got {index}", "--index"
        )
    x, label = val[index]
    name = datamodule.class_names[label] if label < len(datamodule.class_names) else str(label)
    return InputImage(x[None], _picture(x, datamodule.mean_std), f"val[{index}], class {name}")


def _read_image(path: Path, cfg: Any, datamodule: Any) -> torch.Tensor:
    if not path.is_file():
        raise ConfigError(f"no such file {str(path)!r}", "--image")
    try:
        pil: Image.Image = Image.open(path)
        pil.load()
    except (UnidentifiedImageError, OSError) as err:
        raise ConfigError(f"cannot read {str(path)!r} as an image ({err})", "--image") from None
    if cfg.data.name == "imagefolder":
        return imagenet_eval(cfg.data.img_size, cfg.data.augmentation())(pil.convert("RGB"))
    pil = pil.convert("L" if datamodule.in_chans == 1 else "RGB")
    arr = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0)
    arr = arr[None] if arr.ndim == 2 else arr.permute(2, 0, 1)
    mean = torch.tensor(datamodule.mean_std[0]).view(-1, 1, 1)
    std = torch.tensor(datamodule.mean_std[1]).view(-1, 1, 1)
    return resize((arr - mean) / std, cfg.data.img_size)


def parse_query(text: str | None, height: int, width: int) -> tuple[int, int]:
    """``"Y,X"`` in input pixels (default: the image centre), checked against the image."""
    if text is None:
        return height // 2, width // 2
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise ConfigError(f"expected Y,X in pixels, e.g. 16,16; got {text!r}", "--query")
    y, x = (int(p) for p in parts)
    if not (0 <= y < height and 0 <= x < width):
        raise ConfigError(f"({y}, {x}) is outside the {height}x{width} image", "--query")
    return y, x


def query_index(record: Any, query: tuple[int, int]) -> int:
    """Flat index of the block's query cell that holds input pixel ``query``."""
    h, w = record.maps.size
    cy = min(h - 1, max(0, query[0] // record.stride))
    cx = min(w - 1, max(0, query[1] // record.stride))
    return cy * w + cx


def group_attention(record: Any, query: tuple[int, int]) -> np.ndarray:
    """``(G, Ns)``: the query's attention over the sampled keys, mean over each group's heads."""
    attn = record.maps.attention[0, :, query_index(record, query)]  # heads, Ns
    groups = record.maps.sampled.shape[1]
    return attn.reshape(groups, -1, attn.shape[-1]).mean(dim=1).float().numpy()


def _show(ax, picture: np.ndarray, alpha: float = 1.0) -> None:
    cmap = "gray" if picture.ndim == 2 else None
    ax.imshow(picture, cmap=cmap, vmin=0, vmax=1, alpha=alpha, interpolation="nearest")


def _frame(ax, picture: np.ndarray, points: np.ndarray) -> None:
    """Limits: the image (outlined), widened to show any point the model put outside it."""
    h, w = picture.shape[:2]
    ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, edgecolor="0.4", linewidth=0.8))
    ys, xs = points[..., 0].ravel(), points[..., 1].ravel()
    ax.set_xlim(min(-0.5, xs.min() - 0.5), max(w - 0.5, xs.max() + 0.5))
    ax.set_ylim(max(h - 0.5, ys.max() + 0.5), min(-0.5, ys.min() - 0.5))
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")


def deformable_figure(
    picture: np.ndarray, records: list, query: tuple[int, int], title: str = ""
) -> Figure:
    """Two panels per D block (rows): offsets, and the query's attention (see module doc)."""
    if not records:
        raise ValueError("the model has no deformable (D) block to draw")
    fig, axes = plt.subplots(len(records), 2, figsize=(9.0, 4.2 * len(records)), squeeze=False)
    for row, rec in zip(axes, records, strict=True):
        ref = rec.reference_pixels()[0].detach().numpy()  # G, Hk, Wk, 2 (y, x)
        smp = rec.sampled_pixels()[0].detach().numpy()
        weights = group_attention(rec, query)
        where = f"stage {rec.stage + 1} block {rec.block + 1}"
        name = f"{where} (stride {rec.stride}, {ref.shape[0]} group(s))"
        ax = row[0]
        _show(ax, picture)
        for g in range(ref.shape[0]):
            r, s = ref[g].reshape(-1, 2), smp[g].reshape(-1, 2)
            color = f"C{g % 10}"
            ax.scatter(r[:, 1], r[:, 0], s=12, color=color, gid="reference",
                       label="reference points" if g == 0 else None)  # fmt: skip
            ax.quiver(r[:, 1], r[:, 0], s[:, 1] - r[:, 1], s[:, 0] - r[:, 0], angles="xy",
                      scale_units="xy", scale=1, color=color, width=0.004)  # fmt: skip
            ax.scatter(s[:, 1], s[:, 0], s=14, marker="x", color=color, gid="sampled",
                       label="sampled points" if g == 0 else None)  # fmt: skip
        _frame(ax, picture, np.concatenate([ref, smp]))
        ax.set_title(f"{name}\nreference -> sampled points")
        ax.legend(loc="upper right", fontsize="x-small")
        ax = row[1]
        _show(ax, picture, alpha=0.5)
        # Colour and size span this block's weights (min..max): a nearly uniform attention
        # still shows its ranking; the colour bar gives the actual values.
        low, high = float(weights.min()), float(weights.max())
        for g in range(smp.shape[0]):
            s, w = smp[g].reshape(-1, 2), weights[g]
            dots = ax.scatter(s[:, 1], s[:, 0], s=15 + 300 * (w - low) / max(high - low, 1e-12),
                              c=w, cmap="viridis", vmin=low, vmax=high, edgecolors="white",
                              linewidths=0.5, gid="attention")  # fmt: skip
        fig.colorbar(dots, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
        ax.scatter([query[1]], [query[0]], marker="*", s=220, color="red", edgecolors="black",
                   gid="query", label=f"query ({query[0]}, {query[1]})")  # fmt: skip
        _frame(ax, picture, smp)
        ax.set_title(f"{name}\nattention of the query over the sampled keys")
        ax.legend(loc="upper right", fontsize="x-small")
    fig.suptitle(title or "Deformable attention")
    fig.tight_layout()
    return fig


def load_checkpoint_file(
    path: Path, preset: str | None, image: str | Path | None, index: int | None
) -> tuple[DAT, InputImage]:
    """A model from a checkpoint file and its input: the run's data if the file is in a run,
    otherwise ``image`` prepared by the paper's evaluation transform at the model's size."""
    weights = read_weights(path, key="RUN_ID")
    cfg = model_for(weights, preset, {})
    if not any("D" in stage.attn for stage in cfg.stages):
        raise ConfigError(
            f"{str(path)!r}: the model has no deformable (D) block to draw", "RUN_ID"
        )
    model = build_model(cfg)
    fit_weights(model, weights.state, source=str(path), key="RUN_ID")
    data = weights.data
    if data is None:
        if image is None:
            raise ConfigError(
                f"{str(path)!r} is not part of a run, so it has no validation images; "
                "pass --image FILE",
                "--image",
            )
        size = (cfg.img_size or (224, 224))[0]
        data = DataConfig(name="imagefolder", img_size=size, batch_size=1, path=Path("."))
    return model.eval(), _input_for(SimpleNamespace(data=data), image, index)


def _input_for(cfg: Any, image: str | Path | None, index: int | None) -> InputImage:
    if image is not None and cfg.data.name == "imagefolder":  # no folder to check for a file
        x = _read_image(Path(image), cfg, None)
        return InputImage(x[None], _picture(x, NORMALIZATION["imagefolder"]), Path(image).name)
    return load_input(cfg, image, index)


def visualize_run(
    root: str | Path,
    run_id: str,
    out: str | Path | None = None,
    image: str | Path | None = None,
    index: int | None = None,
    query: str | None = None,
    checkpoint: str = "last",
    preset: str | None = None,
) -> tuple[Path, Figure, list]:
    """Draw the D blocks of a run (or of a checkpoint file) on one image.

    Returns the PNG path, the figure and the records.
    """
    if Path(run_id).expanduser().is_file():
        path = Path(run_id).expanduser()
        model, inp = load_checkpoint_file(path, preset, image, index)
        name, title = path.stem, f"checkpoint {path.name}"
    else:
        record = find_run(RunStore(root), run_id)
        _check_has_deformable_blocks(record)
        model, cfg = load_model(record, checkpoint)
        inp = load_input(cfg, image, index)
        name = record.run_id
        title = (f"run {record.run_id}: {record.identity.experiment}/{record.identity.variant}, "
                 f"seed {record.identity.seed}")  # fmt: skip
    h, w = inp.picture.shape[:2]
    q = parse_query(query, h, w)
    with torch.no_grad():
        logits, records = model.forward_deformable_maps(inp.tensor)
    pred = int(logits.argmax(-1)[0])
    title = f"{title}\n{inp.label}, predicted class {pred}"
    fig = deformable_figure(inp.picture, records, q, title)
    path = Path(out) if out is not None else Path("reports") / "visualize" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path, fig, records
