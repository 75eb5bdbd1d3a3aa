"""User hands for the command line: YAML hand specs named by ``--hand-spec FILE`` or found in ``DEXWORLD_HANDS``.

``DEXWORLD_HANDS`` holds one or more folders (separated like ``PATH``); every ``*.yaml`` in them is a hand spec
(see :mod:`embodiments.spec`). They are registered before a command that takes an embodiment runs. Built-in names
are reserved: a spec named like a built-in hand is refused.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ENV = "DEXWORLD_HANDS"
# Options through which a command takes a hand; commands with one of these (and `embodiments …`) get --hand-spec.
HAND_DESTS = frozenset({"embodiment", "target", "source"})
_loaded: dict[str, Path] = {}  # registered name -> spec file, so the same spec seen twice is not an error


def spec_files(hand_specs: list[Path] | None = None, env: str | None = None) -> list[Path]:
    """The spec files to load: those in the ``DEXWORLD_HANDS`` folders (sorted), then ``--hand-spec`` ones."""
    env = os.environ.get(ENV, "") if env is None else env
    files = []
    for folder in (Path(p) for p in env.split(os.pathsep) if p.strip()):
        if not folder.is_dir():
            raise ValueError(f"{ENV}: {folder} is not a folder (expected folders of hand spec *.yaml files, "
                             f"separated by '{os.pathsep}')")
        files += sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
    for path in hand_specs or []:
        if not path.is_file():
            raise ValueError(f"--hand-spec: no hand spec file at {path} (expected a YAML hand spec)")
        files.append(path)
    return files


def load_user_hands(hand_specs: list[Path] | None = None, env: str | None = None) -> list[str]:
    """Register every user spec (see :func:`spec_files`); returns their names. Errors name the spec file."""
    import embodiments
    from embodiments.spec import load_spec

    names = []
    for path in spec_files(hand_specs, env):
        resolved = path.resolve()
        name = load_spec(resolved).name
        if _loaded.get(name) == resolved:
            names.append(name)
            continue
        if name in _loaded:
            raise ValueError(f"hand spec {path}: a hand named {name!r} was already loaded from {_loaded[name]}")
        embodiments.register(resolved)
        _loaded[name] = resolved
        names.append(name)
    return names


def add_hand_spec_options(parser: argparse.ArgumentParser) -> None:
    """Give every (sub)command that takes an embodiment a repeatable ``--hand-spec FILE``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if name == "embodiments":
                    _add_to_leaves(sub)
                else:
                    add_hand_spec_options(sub)
    if any(a.dest in HAND_DESTS for a in parser._actions) and not _has_option(parser):
        _add(parser)


def _add_to_leaves(parser: argparse.ArgumentParser) -> None:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        _add(parser)
    for action in subs:
        for sub in action.choices.values():
            _add_to_leaves(sub)


def _has_option(parser: argparse.ArgumentParser) -> bool:
    return any("--hand-spec" in a.option_strings for a in parser._actions)


def _add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hand-spec", type=Path, action="append", default=None, metavar="FILE",
                        help=f"register a user hand from a YAML spec first (repeatable); specs in the folders named "
                             f"by ${ENV} are registered too")
