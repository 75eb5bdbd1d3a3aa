"""``dexworld`` command line: a thin layer over the four packages.

Each subcommand lives in ``dexworld/commands/<name>.py`` and defines ``register(subparsers)``, which adds its
parser and sets ``func`` to a ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .hands import add_hand_spec_options, load_user_hands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dexworld", description="Video world models of dexterous hands.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    add_hand_spec_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        if hasattr(args, "hand_spec"):  # a command that takes an embodiment: user hands first
            load_user_hands(args.hand_spec)
        return int(args.func(args) or 0)
    except (ValueError, KeyError, FileNotFoundError) as e:
        # User errors are reported as one line, not a traceback.
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"dexworld {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
