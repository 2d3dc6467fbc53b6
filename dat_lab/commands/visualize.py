"""``dat-lab visualize``: where each deformable block of a trained run looks, as a PNG.

    dat-lab visualize RUN_ID_OR_CHECKPOINT [--image PATH | --index N] [--query Y,X]
                      [--model PRESET] [--store DIR] [--out FILE]

Loads the run's model from its checkpoint (``last.ckpt``, or ``--checkpoint best``) and, for
every D block, draws the reference points with arrows to the deformed sampling points over
the input image, and the attention of one query (input pixel Y,X; default the centre) over
the sampled keys. The image is the run's validation image N (default 0) or a file.
A unique prefix of the run id is enough. A checkpoint file works too (official DAT weights
name their architecture; a plain state dict needs ``--model PRESET``); outside a run it needs
``--image``, prepared by the paper's evaluation transform.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "visualize",
        help="draw the deformable points and attention of a run",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "run_id", metavar="RUN_ID", help="a run id (or a unique prefix of one) or checkpoint file"
    )
    p.add_argument("--model", default=None, help="preset of a state-dict checkpoint file")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--image", type=Path, help="an image file, prepared like the run's data")
    source.add_argument("--index", type=int, help="index of a validation image (default 0)")
    p.add_argument("--query", metavar="Y,X", help="query pixel (default: the image centre)")
    p.add_argument(
        "--checkpoint",
        choices=("last", "best"),
        default="last",
        help="which checkpoint to load (default last: the final model)",
    )
    p.add_argument("--store", type=Path, default=None, help="run store (default ./runs)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="PNG to write (default reports/visualize/RUN_ID.png)",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("MPLBACKEND", "Agg")
    from dat_lab.experiments.store import DEFAULT_ROOT
    from dat_lab.results.visualize import visualize_run

    path, _, records = visualize_run(
        args.store or DEFAULT_ROOT, args.run_id, args.out, args.image, args.index, args.query,
        args.checkpoint, args.model,
    )  # fmt: skip
    print(f"wrote {path} ({len(records)} deformable block(s))")
    return 0
