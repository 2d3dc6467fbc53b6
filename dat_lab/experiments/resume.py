"""Which checkpoint a run resumes from: the newest one that loads into its model.

A checkpoint that does not load (cut short by a full disk or a copy, not a checkpoint at all,
or another model's: a file copied into the wrong run) would make the resumed run fail, and
retrying would fail the same way. Each candidate is opened the way Lightning opens it
(``torch.load(weights_only=True)``) and its ``model.*`` tensors are compared by name and shape
with the run's model; one that fails is set aside in the store's quarantine (never deleted)
and the next is tried: ``last.ckpt`` first, then the others (``best-epochNNN.ckpt``), newest
first. Every candidate is an end-of-epoch (or ``ckpt_every_n_steps``) checkpoint with the
full training state, so resuming from an older one is exact too: it trains the epochs after it
again. When none loads, the run trains from scratch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from dat_lab.experiments.quarantine import set_aside
from dat_lab.experiments.records import RunRecord
from dat_lab.experiments.store import RunStore
from dat_lab.models import build_model
from dat_lab.models.config import DatConfig

MODEL_PREFIX = "model."  # DatLitModule keeps the network as self.model
LAST = "last.ckpt"


def model_shapes(model_cfg: DatConfig) -> dict[str, tuple[int, ...]]:
    """The state-dict names and shapes a run's checkpoint holds for its model."""
    model = build_model(model_cfg)
    return {f"{MODEL_PREFIX}{k}": tuple(v.shape) for k, v in model.state_dict().items()}


def checkpoint_problem(path: Path, shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """Why the checkpoint at ``path`` cannot resume a run of a model with ``shapes``, or None.

    Opened memory-mapped: only the headers and the tensors' metadata are read."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - torch raises RuntimeError, EOFError, pickle errors
        text = str(err).strip()
        first = text.splitlines()[0].split(". ")[0] if text else ""  # torch adds advice
        return f"does not load ({type(err).__name__}: {first[:200]})"
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        return "holds no state_dict (not a Lightning checkpoint)"
    held = {k: tuple(v.shape) for k, v in state.items() if k.startswith(MODEL_PREFIX)}
    for name in sorted(set(held) | set(shapes)):
        if name not in held:
            return f"is another model's (it lacks {name})"
        if name not in shapes:
            return f"is another model's (it has {name}, which this model lacks)"
        if held[name] != shapes[name]:
            mine = list(shapes[name])
            return f"is another model's ({name}: shape {list(held[name])}, this model's {mine})"
    return None


@dataclass(frozen=True)
class ResumeChoice:
    """Where a run starts: ``checkpoint`` (None: from scratch) and what was set aside."""

    checkpoint: Path | None
    set_aside: tuple[str, ...] = ()  # one line per checkpoint that did not load


def candidates(checkpoints_dir: Path) -> list[Path]:
    """The run's checkpoints in the order they are tried: last.ckpt, then newest first."""
    found = [p for p in checkpoints_dir.glob("*.ckpt") if p.is_file()]
    found.sort(key=lambda p: (p.name != LAST, -p.stat().st_mtime_ns, p.name))
    return found


def choose_resume(
    store: RunStore,
    record: RunRecord,
    model_cfg: DatConfig,
    log: Callable[[str], None] = print,
) -> ResumeChoice:
    """The newest checkpoint of ``record`` that loads into its model; every one tried before
    it that does not is set aside (logged). Called under the run's lock."""
    found = candidates(record.checkpoints_dir)
    if not found:
        return ResumeChoice(None)  # nothing to resume: nothing to check
    shapes = model_shapes(model_cfg)
    lines: list[str] = []
    for path in found:
        problem = checkpoint_problem(path, shapes)
        if problem is None:
            return ResumeChoice(path, tuple(lines))
        moved = set_aside(store.root, path, record.path, record.run_id, f"{path.name} {problem}")
        line = f"checkpoints/{path.name} {problem}: set aside to {moved}"
        log(line)
        lines.append(line)
    return ResumeChoice(None, tuple(lines))


__all__ = ["ResumeChoice", "checkpoint_problem", "choose_resume", "model_shapes"]
