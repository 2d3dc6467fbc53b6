"""``dat-lab``: the command line. One module per subcommand in :mod:`dat_lab.commands`.

Bad input (a missing file, an unknown key, an impossible knob, a missing data path) prints
one message naming the file and the key and exits with code 2 before any work starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dat_lab.schema import ConfigError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

# Subcommand modules under dat_lab.commands, in the order `dat-lab --help` lists them.
COMMANDS = ("run", "sweep", "flops", "report", "visualize", "evaluate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dat-lab", description="DAT ablation and research framework"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"dat_lab.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(
            "interrupted: finished work is recorded; rerun the same command to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
