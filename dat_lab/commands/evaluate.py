"""``dat-lab evaluate``: top-1, top-5 and loss of a checkpoint on a val split.

    dat-lab evaluate CHECKPOINT_OR_RUN_ID [KEY=VALUE ...] [--checkpoint last|best]
                     [--device auto|cpu|cuda] [--store DIR] [--out FILE.json]

The source is a checkpoint file (official DAT, a dat-lab Lightning checkpoint, a state dict)
or a run id of the store (a unique prefix is enough). KEY=VALUE: ``model=PRESET`` and
``model.<key>`` (for a file that does not name its architecture), ``data.<key>`` (the data:
a run's own by default; e.g. ``data.name=imagefolder data.path=/imagenet data.batch_size=64``).
Prints one row and writes the metrics as JSON (default reports/evaluate/<source>.json).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="top-1/top-5/loss of a checkpoint file or a run on a val split",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("source", metavar="CHECKPOINT_OR_RUN_ID", help="a checkpoint file or run id")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="model=, model.*, data.*")
    p.add_argument("--checkpoint", choices=("last", "best"), default="last", help="of a run")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--store", type=Path, default=None, help="run store (default ./runs)")
    p.add_argument("--out", type=Path, default=None, help="JSON file to write")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from dat_lab.experiments.store import DEFAULT_ROOT
    from dat_lab.results.evaluate import evaluate, write_json
    from dat_lab.schema import parse_override

    overrides = dict(parse_override(o) for o in args.overrides)
    result = evaluate(
        args.source, overrides, args.store or DEFAULT_ROOT, args.checkpoint, args.device,
        progress=not args.no_progress,
    )  # fmt: skip
    name = Path(args.source).stem if Path(args.source).is_file() else args.source
    out = write_json(result, args.out or Path("reports") / "evaluate" / f"{name}.json")
    print(result.row())
    print(f"wrote {out}")
    return 0
