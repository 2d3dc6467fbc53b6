"""The ``dat-lab`` subcommands, one module each.

Each module defines ``add_parser(subparsers)``, which registers its subcommand and sets
``func`` (``Namespace -> exit code``). :mod:`dat_lab.cli` lists them in ``COMMANDS``.
"""
