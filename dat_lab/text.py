"""How dat-lab writes for people: numbers with SI prefixes, tables, log lines.

One home for each, so the dry run's plan, ``dat-lab flops`` and the report's tables write a
count the same way (two decimals, like the paper's tables: ``4.59G``, ``6.69M``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DASH = "—"  # a missing value in a table


def si(value: float | None, missing: str = DASH) -> str:
    """``6685376`` -> ``"6.69M"``, ``4.59e9`` -> ``"4.59G"``, ``512`` -> ``"512"``; ``missing``
    for None or NaN."""
    if value is None or not math.isfinite(value):
        return missing
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table; a ``|`` inside a cell is escaped."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |\n"

    return line(header) + "|" + "|".join("---" for _ in header) + "|\n" + "".join(map(line, rows))


def text_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as lines of left-aligned columns two spaces apart (the first row is the header):
    the terminal's table, as ``--status`` and the race print it."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def print_line(message: str) -> None:
    """Print one log line now (flushed: the line reaches a pipe or a SLURM log at once)."""
    print(message, flush=True)


__all__ = ["DASH", "markdown_table", "print_line", "si", "text_table"]
