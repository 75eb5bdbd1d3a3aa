"""``dexworld`` command line: a thin layer over the four packages.

Each subcommand lives in ``dexworld/commands/<name>.py`` and defines ``register(subparsers)``, which adds its
parser and sets ``func`` to a ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import __version__, commands
from .hands import add_hand_spec_options, load_user_hands

# What a user's mistake raises (bad arguments, missing, unreadable or malformed files, a full or read-only disk):
# reported as one line. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, KeyError, OSError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dexworld", description="Video world models of dexterous hands.")
    parser.add_argument("--version", action="version", version=f"dexworld {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (may also be given after the subcommand)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    add_hand_spec_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; a user error prints ``dexworld CMD: error: ...`` (one line) and returns 1.

    As a program (``argv`` None) a ``kill`` (SIGTERM) unwinds the command as Ctrl-C does, so the temporary files and
    folders its outputs were being written to are removed on the way out and the files it replaces stay as they were.
    """
    if argv is None:
        _exit_on_sigterm()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        if hasattr(args, "hand_spec"):  # a command that takes an embodiment: user hands first
            load_user_hands(args.hand_spec)
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"dexworld {args.command}: error: {describe_error(e)}", file=sys.stderr)
        return 1


def _exit_on_sigterm() -> None:
    """SIGTERM → ``SystemExit(143)`` in the main thread: ``finally`` blocks and context managers run (the default
    action ends the process at once, leaving e.g. ``atomic_dir``'s temporary folder behind)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def describe_error(e: BaseException) -> str:
    """A user error's message on one line (a KeyError's without its quotes)."""
    msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(msg.split()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
