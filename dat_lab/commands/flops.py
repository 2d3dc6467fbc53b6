"""``dat-lab flops``: FLOPs and parameters, fvcore against the formulas, per stage and module.

Usage::

    dat-lab flops dat_tiny                                  # a preset
    dat-lab flops dat_tiny stages.2.offset_range=4 --size 256x256
    dat-lab flops dat_tiny --set stages.0.attn=PP --set stages.0.sr_ratio=8
    dat-lab flops experiments/offsets.yaml --format csv     # one row per variant
    dat-lab flops dat_base --per-module --format json

Overrides are dotted model-config keys (``stages.2.offset_range=4``), given after the preset or
with ``--set``; values are parsed as YAML. In an experiment file, the variants' ``model.*``
overrides apply; other keys do not change the model and are ignored here.

Exit status: 0 when every FLOP is accounted for (each module's ``fvcore - formula - residue``
is 0 and no op is unsupported), 1 when any difference is not 0, 2 on bad input.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from dat_lab.schema import ConfigError, load_yaml, parse_override

FORMATS = ("md", "csv", "json")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``flops`` on an ``argparse`` subparsers object; ``func`` is :func:`run`."""
    p = subparsers.add_parser(
        "flops",
        help="FLOPs (fvcore) checked against the analytic formulas, and parameters",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("target", help="a preset name or an experiment YAML file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted model-config overrides")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="a dotted model-config override (repeatable)")
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
    """``(name, DatConfig)`` pairs: one for a preset, one per variant for an experiment file."""
    from dat_lab.models.presets import resolve_model_config

    pairs = dict(parse_override(o) for o in overrides)
    if target.endswith((".yaml", ".yml")) or Path(target).is_file():
        return [
            (name, resolve_model_config(model, {**variant, **pairs}, file=target))
            for name, model, variant in experiment_variants(target)
        ]
    return [(target, resolve_model_config(target, pairs))]


def experiment_variants(path: str) -> list[tuple[str, Any, dict[str, Any]]]:
    """``(variant name, base model, model overrides)`` of an experiment file.

    Reads ``base.model`` (a preset name or a mapping with ``preset``) and ``variants``: a list
    of mappings (``name`` plus ``overrides``, or dotted keys directly) or a mapping from name to
    overrides. Only ``model.``-prefixed keys concern the model. This is a reader of the
    documented shape, to be replaced by ``dat_lab.experiments`` once its schema exists.
    """
    data = load_yaml(path)
    base = data.get("base")
    if not isinstance(base, dict) or "model" not in base:
        raise ConfigError("an experiment file needs base.model (a preset or a mapping)", "base.model", path)
    variants = data.get("variants")
    if variants is None:
        return [("base", base["model"], {})]
    if isinstance(variants, dict):
        items = [(str(k), v, f"variants.{k}") for k, v in variants.items()]
    elif isinstance(variants, list):
        items = [(None, v, f"variants.{i}") for i, v in enumerate(variants)]
    else:
        raise ConfigError(f"expected a list or a mapping, got {variants!r}", "variants", path)
    out = []
    for i, (name, body, key) in enumerate(items):
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ConfigError(f"expected a mapping of overrides, got {body!r}", key, path)
        body = dict(body)
        name = name or str(body.pop("name", f"variant{i}"))
        flat = body.pop("overrides", body)
        if not isinstance(flat, dict):
            raise ConfigError(f"expected a mapping of dotted keys, got {flat!r}", f"{key}.overrides", path)
        model = {k.removeprefix("model."): v for k, v in flat.items() if k.startswith("model.")}
        out.append((name, base["model"], model))
    return out


def run(args: argparse.Namespace) -> int:
    """Count, print, return the exit status (0 ok, 1 a difference, 2 bad input)."""
    try:
        size = parse_size(args.size)
        targets = resolve_targets(args.target, [*args.overrides, *args.sets])
        from dat_lab.flops import count_flops

        reports = [(name, count_flops(cfg, size, use_cache=not args.no_cache)) for name, cfg in targets]
    except (ConfigError, ValueError) as err:
        print(f"dat-lab flops: error: {err}", file=sys.stderr)
        return 2
    render = {"md": render_markdown, "csv": render_csv, "json": render_json}[args.format]
    sys.stdout.write(render(reports, args.per_module))
    bad = [name for name, r in reports if not r.ok]
    if bad:
        print(f"dat-lab flops: fvcore and formula + residue differ for: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


# -- rendering ------------------------------------------------------------------------------


def _items(residue: dict[str, int]) -> str:
    return "; ".join(f"{k} {v:,}" for k, v in residue.items())


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _part_rows(report) -> list[list[Any]]:
    rows = [[s.name, s.fvcore, s.formula, s.residue, s.difference, s.params] for s in report.stages]
    rows.append(["total", report.total, report.formula_total, report.residue_total,
                 report.difference, report.params])
    return rows


def _module_rows(report) -> list[list[Any]]:
    return [[r.name, r.kind, r.fvcore, r.formula, _items(r.residue), r.difference] for r in report.rows]


def render_markdown(reports: list, per_module: bool) -> str:
    out = io.StringIO()
    if len(reports) > 1:
        out.write(_md_table(
            ["variant", "GFLOPs", "fvcore", "formula", "residue", "difference", "params"],
            [[n, f"{r.total / 1e9:.2f}", f"{r.total:,}", f"{r.formula_total:,}",
              f"{r.residue_total:,}", f"{r.difference:,}", f"{r.params:,}"] for n, r in reports],
        ))
    for name, r in reports:
        if len(reports) > 1 and not per_module:
            continue
        out.write(f"\n## {name} (config {r.config_hash}, input {r.size[0]}x{r.size[1]})\n\n")
        out.write(_md_table(
            ["part", "fvcore", "formula", "residue", "difference", "params"],
            [[row[0], *(f"{v:,}" for v in row[1:])] for row in _part_rows(r)],
        ))
        out.write("\n")
        out.write(_md_table(["residue item", "FLOPs"],
                            [[k, f"{v:,}"] for k, v in r.residue_by_item().items()]))
        if per_module:
            out.write("\n")
            out.write(_md_table(
                ["module", "kind", "fvcore", "formula", "residue items", "difference"],
                [[m[0], m[1], f"{m[2]:,}", f"{m[3]:,}", m[4], f"{m[5]:,}"] for m in _module_rows(r)],
            ))
        status = "all differences 0" if r.ok else "DIFFERENCES FOUND"
        unsupported = ", ".join(r.unsupported) or "none"
        out.write(f"\n{r.total / 1e9:.2f} GFLOPs (multiply-adds, fvcore convention), "
                  f"{r.params / 1e6:.2f} M params; {status}; unsupported ops: {unsupported}\n")
    return out.getvalue()


def render_csv(reports: list, per_module: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if per_module:
        writer.writerow(["variant", "module", "kind", "fvcore", "formula", "residue_items", "difference"])
        for name, r in reports:
            writer.writerows([name, *row] for row in _module_rows(r))
    else:
        writer.writerow(["variant", "part", "fvcore", "formula", "residue", "difference", "params"])
        for name, r in reports:
            writer.writerows([name, *row] for row in _part_rows(r))
    return out.getvalue()


def render_json(reports: list, per_module: bool) -> str:
    docs = []
    for name, r in reports:
        doc = r.to_dict()
        if not per_module:
            doc.pop("rows")
        doc.update(name=name, formula_total=r.formula_total, residue_total=r.residue_total,
                   difference=r.difference, ok=r.ok)
        docs.append(doc)
    return json.dumps(docs, indent=1) + "\n"
