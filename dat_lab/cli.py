"""``dat-lab``: the command line. One module per subcommand in :mod:`dat_lab.commands`.

Bad input (a missing file, an unknown key, an impossible knob, a missing data path) prints
one message naming the file and the key and exits with code 2 before any work starts. A write
to the run store that fails (a full disk or quota, an I/O error, a read-only filesystem)
prints one message naming the store and the errno and exits with code 3; the run it was
training is left interrupted, to resume once the store is writable again.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from dat_lab.experiments.durable import STORE_WRITE_EXIT, StoreWriteError, write_errno
from dat_lab.schema import ConfigError

EXIT_BAD_INPUT = 2
EXIT_STORE_WRITE = STORE_WRITE_EXIT
EXIT_INTERRUPTED = 130

# Subcommand modules under dat_lab.commands, in the order `dat-lab --help` lists them.
COMMANDS = ("run", "sweep", "flops", "report", "visualize", "evaluate", "store", "data")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dat-lab", description="DAT ablation and research framework"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"dat_lab.commands.{name}").add_parser(sub)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse a command line; a subcommand's flags may come before, between or after its
    positionals and dotted overrides (``run EXP --dry-run train.epochs=2``).

    argparse's ``parse_intermixed_args`` cannot take subparsers, so the command is found
    first and, if anything is left over, its own parser reads its arguments intermixed.
    """
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, rest = parser.parse_known_args(argv)
    if not rest:
        return args
    own = argv[argv.index(args.command) + 1 :]
    command = _subcommand_parser(parser, args.command)
    return command.parse_intermixed_args(own, argparse.Namespace(command=args.command))


def _subcommand_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:  # argparse keeps its subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise ValueError(f"no subcommand {name!r}")  # a bug: build_parser adds every command


def main(argv: list[str] | None = None) -> int:
    from dat_lab.experiments import ranks

    rank_run = ranks.from_env()
    if rank_run is not None:  # a DDP rank that Lightning started again from this command line
        from dat_lab.experiments.runner import follow

        return follow(rank_run)
    args = parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StoreWriteError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_STORE_WRITE
    except OSError as err:
        failed = write_errno(err)
        if failed is None:
            raise
        print(f"error: {StoreWriteError(_store_of(args, failed), failed)}", file=sys.stderr)
        return EXIT_STORE_WRITE
    except KeyboardInterrupt:
        print(
            "interrupted: finished work is recorded; rerun the same command to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


def _store_of(args: argparse.Namespace, err: OSError) -> str:
    """The store a command wrote to: ``--store``, else the folder of the file it could not
    write (a failed write outside a run names no store of its own)."""
    store = getattr(args, "store", None)
    if store is not None:
        return str(store)
    return str(Path(str(err.filename)).parent) if err.filename else "(unknown)"


if __name__ == "__main__":
    sys.exit(main())
