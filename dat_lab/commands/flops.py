"""``dat-lab flops``: FLOPs and parameters, fvcore against the formulas, per stage and module.

Usage::

    dat-lab flops dat_tiny                                  # a preset
    dat-lab flops dat_tiny stages.2.offset_range=4 --size 256x192
    dat-lab flops dat_tiny --set stages.0.attn=PP --set stages.0.sr_ratio=8
    dat-lab flops experiments/offset_range.yaml --format csv     # one row per variant
    dat-lab flops experiments/imagenet_dat_tiny.yaml data.path=/data/imagenet
    dat-lab flops dat_base --per-module --format json

A preset takes dotted model-config overrides (``stages.2.offset_range=4``), given after it or
with ``--set``; values are parsed as YAML. An experiment file is resolved exactly as
``dat-lab run`` resolves it (``num_classes``, ``in_chans`` and ``img_size`` come from its data
section), and takes the same section-prefixed overrides (``model.stages.2.reduction=2``,
``data.path=DIR``). Counts are cached by config hash (``--no-cache`` counts again).

Exit status: 0 when every FLOP is accounted for (each module's ``fvcore - formula - residue``
is 0 and no op is unsupported), 1 when any difference is not 0, 2 on bad input (named key,
before anything is counted). See docs/flops.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from dat_lab.schema import ConfigError, parse_override
from dat_lab.text import markdown_table, si

FORMATS = ("md", "csv", "json")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``flops`` on an ``argparse`` subparsers object; ``func`` is :func:`run`."""
    p = subparsers.add_parser(
        "flops",
        help="FLOPs (fvcore) checked against the analytic formulas, and parameters",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("target", help="a preset name or an experiment YAML file")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides: model keys for a preset, model./data. keys for a file",
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one more override, as the positional ones (repeatable)",
    )
    p.add_argument("--size", help="input size HxW or S (default: the config's img_size)")
    p.add_argument("--per-module", action="store_true", help="a row per module, not per stage")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default md)")
    p.add_argument("--no-cache", action="store_true", help="count again, do not use the cache")
    p.set_defaults(func=run)
    return p


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"224"`` -> (224, 224); ``"160x224"`` -> (160, 224)."""
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"expected HxW or S with positive integers, got {text!r}", "--size")
    h, w = (int(parts[0]), int(parts[-1]))
    return h, w


def resolve_targets(target: str, overrides: list[str]) -> list[tuple[str, Any]]:
    """``(name, DatConfig)`` pairs: one for a preset, one per variant for an experiment file.

    A preset takes model keys (``stages.2.offset_range=4``); an experiment file takes the
    section-prefixed keys of ``dat-lab run`` (``model.stages.2.offset_range=4``,
    ``data.path=DIR``), because its model is resolved exactly as its runs are.
    """
    from dat_lab.models.presets import resolve_model_config

    pairs = dict(parse_override(o) for o in overrides)
    if target.endswith((".yaml", ".yml")) or Path(target).is_file():
        return experiment_models(target, pairs)
    return [(target, resolve_model_config(target, pairs))]


def experiment_models(path: str, overrides: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(variant, DatConfig)`` of every variant of an experiment file, in file order.

    Resolved by :func:`dat_lab.experiments.spec.load_experiment`, so the model is the one its
    runs train (``num_classes``, ``in_chans`` and ``img_size`` come from the data section).
    Seeds do not change the model: one row per variant.
    """
    from dat_lab.experiments.spec import load_experiment

    _, specs = load_experiment(path, overrides)
    models: dict[str, Any] = {}
    for spec in specs:
        models.setdefault(spec.variant, spec.config.model)
    return list(models.items())


def run(args: argparse.Namespace) -> int:
    """Count, print, return the exit status (0 ok, 1 a difference, 2 bad input)."""
    from dat_lab.flops import count_flops
    from dat_lab.flops.count import resolve_size

    size = None
    try:
        size = parse_size(args.size)
        targets = resolve_targets(args.target, [*args.overrides, *args.sets])
        for _, cfg in targets:  # every target checked before the first is counted
            resolve_size(cfg, size)
    except ConfigError as err:
        if err.key == "size" and size is not None:
            err = ConfigError(err.message, "--size", err.file)
        print(f"dat-lab flops: error: {err}", file=sys.stderr)
        return 2
    use_cache = not args.no_cache
    reports = [(name, count_flops(cfg, size, use_cache=use_cache)) for name, cfg in targets]
    render = {"md": render_markdown, "csv": render_csv, "json": render_json}[args.format]
    sys.stdout.write(render(reports, args.per_module))
    bad = [name for name, r in reports if not r.ok]
    if bad:
        print(
            f"dat-lab flops: not every FLOP is accounted for (a difference, an unsupported op "
            f"or a skipped module) in: {', '.join(bad)}",
            file=sys.stderr,
        )
        return 1
    return 0


# -- rendering ------------------------------------------------------------------------------


def _items(residue: dict[str, int]) -> str:
    return "; ".join(f"{k} {v:,}" for k, v in residue.items())


def _part_rows(report) -> list[list[Any]]:
    rows = [
        [s.name, s.fvcore, s.formula, s.residue, s.difference, s.params] for s in report.stages
    ]
    rows.append(
        [
            "total",
            report.total,
            report.formula_total,
            report.residue_total,
            report.difference,
            report.params,
        ]
    )
    return rows


def _module_rows(report) -> list[list[Any]]:
    return [
        [r.name, r.kind, r.fvcore, r.formula, _items(r.residue), r.difference] for r in report.rows
    ]


def render_markdown(reports: list, per_module: bool) -> str:
    out = io.StringIO()
    if len(reports) > 1:
        out.write(
            markdown_table(
                [
                    "variant",
                    "FLOPs",
                    "fvcore",
                    "formula",
                    "residue",
                    "difference",
                    "params",
                    "all accounted",
                ],
                [
                    [
                        n,
                        si(r.total),
                        f"{r.total:,}",
                        f"{r.formula_total:,}",
                        f"{r.residue_total:,}",
                        f"{r.difference:,}",
                        f"{r.params:,}",
                        "yes" if r.ok else "NO",
                    ]
                    for n, r in reports
                ],
            )
        )
    for name, r in reports:
        if len(reports) > 1 and not per_module:
            continue
        out.write(f"\n## {name} (config {r.config_hash}, input {r.size[0]}x{r.size[1]})\n\n")
        out.write(
            markdown_table(
                ["part", "fvcore", "formula", "residue", "difference", "params"],
                [[row[0], *(f"{v:,}" for v in row[1:])] for row in _part_rows(r)],
            )
        )
        out.write("\n")
        out.write(
            markdown_table(
                ["residue item", "FLOPs"], [[k, f"{v:,}"] for k, v in r.residue_by_item().items()]
            )
        )
        if per_module:
            out.write("\n")
            out.write(
                markdown_table(
                    ["module", "kind", "fvcore", "formula", "residue items", "difference"],
                    [
                        [m[0], m[1], f"{m[2]:,}", f"{m[3]:,}", m[4], f"{m[5]:,}"]
                        for m in _module_rows(r)
                    ],
                )
            )
        status = "all differences 0" if r.ok else "DIFFERENCES FOUND"
        unsupported = ", ".join(r.unsupported) or "none"
        skipped = ", ".join(r.skipped) or "none"
        out.write(
            f"\n{si(r.total)} FLOPs (multiply-adds, fvcore convention), "
            f"{si(r.params)} params; {status}; unsupported ops: {unsupported}; "
            f"skipped modules: {skipped}\n"
        )
    return out.getvalue()


def render_csv(reports: list, per_module: bool) -> str:
    """Per part (default) or per module; per module, each residue item is its own column."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if not per_module:
        header = ["variant", "part", "fvcore", "formula", "residue", "difference", "params"]
        writer.writerow(header)
        for name, r in reports:
            writer.writerows([name, *row] for row in _part_rows(r))
        return out.getvalue()
    items = list(dict.fromkeys(k for _, r in reports for row in r.rows for k in row.residue))
    writer.writerow(
        ["variant", "module", "kind", "stage", "fvcore", "formula", *items, "difference"]
    )
    for name, r in reports:
        for row in r.rows:
            stage = "" if row.stage is None else row.stage
            residue = [row.residue.get(k, 0) for k in items]
            writer.writerow(
                [
                    name,
                    row.name,
                    row.kind,
                    stage,
                    row.fvcore,
                    row.formula,
                    *residue,
                    row.difference,
                ]
            )
    return out.getvalue()


def render_json(reports: list, per_module: bool) -> str:
    docs = []
    for name, r in reports:
        doc = r.to_dict()
        if not per_module:
            doc.pop("rows")
        doc.update(
            name=name,
            formula_total=r.formula_total,
            residue_total=r.residue_total,
            difference=r.difference,
            ok=r.ok,
        )
        docs.append(doc)
    return json.dumps(docs, indent=1) + "\n"
