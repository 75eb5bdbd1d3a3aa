"""``dexworld embodiments list | show NAME | plot NAME``: look at the hands the registry knows."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import numpy as np

from .. import argtypes as at

HELP = "list, inspect and plot the registered hand embodiments"


def register(subparsers) -> None:
    parser = subparsers.add_parser("embodiments", help=HELP, description=HELP)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = sub.add_parser("list", help="table of every registered hand: side, DoF, slots covered per finger")
    p.set_defaults(func=run)

    p = sub.add_parser("show", help="one hand's joints with limits and its slot → frame map")
    p.add_argument("name", help="embodiment name, e.g. inspire_right")
    p.set_defaults(func=run)

    p = sub.add_parser("plot", help="three orthographic views of a hand's sparse joints and skeleton (PNG)")
    p.add_argument("name", help="embodiment name, e.g. mano_right")
    pose = p.add_mutually_exclusive_group()
    pose.add_argument("--q", nargs="+", metavar="ANGLE",
                      help="joint angles in radians, in the order `show` lists them (spaces or commas); "
                           "default: the neutral pose")
    pose.add_argument("--motion", help="a synthetic human motion (human hands only): "
                                       "open, power_grasp, pinch, point, wave, random")
    p.add_argument("--frames", type=at.frames, default=17, help="frames of --motion (default 17)")
    p.add_argument("--fps", type=at.positive_float, default=16.0, help="fps of --motion (default 16)")
    p.add_argument("--seed", type=at.seed, default=0, help="seed of --motion random (default 0)")
    p.add_argument("-o", "--out", type=Path, help="output image (default: NAME.png)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "show": _show, "plot": _plot}[args.action](args)


def _console():
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)


def _slot_coverage(hand) -> tuple[str, int]:
    """'wrist ✓ · thumb 4/4 · …' and the number of slots the hand fills."""
    from embodiments.layout import FINGERS, HAND_JOINT_NAMES, side_offset

    mask = hand.slot_mask[side_offset(hand.side):][:len(HAND_JOINT_NAMES)]
    parts = ["wrist " + ("✓" if mask[0] else "–")]
    for i, finger in enumerate(FINGERS):
        parts.append(f"{finger} {int(mask[1 + 4 * i:5 + 4 * i].sum())}/4")
    return " · ".join(parts), int(mask.sum())


def _list(args) -> int:
    from rich.table import Table

    import embodiments

    table = Table(title="Registered hand embodiments")
    for col in ("name", "side", "DoF", "slots", "slots per finger"):
        table.add_column(col, justify="right" if col in ("DoF", "slots") else "left")
    failed = 0
    for name in embodiments.names():
        try:
            hand = embodiments.get(name)
        except Exception as e:  # one broken hand must not hide the others; report it in its row
            failed += 1
            table.add_row(name, "?", "?", "?", f"[red]failed to load: {e}[/red]")
            continue
        coverage, count = _slot_coverage(hand)
        table.add_row(name, hand.side, str(hand.dof), f"{count}/21", coverage)
    _console().print(table)
    return 1 if failed else 0


def _show(args) -> int:
    from rich.table import Table

    import embodiments

    hand = embodiments.get(args.name)
    console = _console()
    coverage, count = _slot_coverage(hand)
    console.print(f"[bold]{hand.name}[/bold] — {hand.side} hand, {hand.dof} DoF, {count}/21 slots ({coverage})")
    if getattr(hand, "description", ""):
        console.print(hand.description)
    if getattr(hand, "root_link", None):
        console.print(f"root link: {hand.root_link}")
    joints = Table(title="actuated joints (q order)")
    for col in ("#", "joint", "lower (rad)", "upper (rad)", "lower (°)", "upper (°)"):
        joints.add_column(col, justify="left" if col == "joint" else "right")
    for i, (name, lo, hi) in enumerate(zip(hand.joint_names, hand.lower, hand.upper, strict=True)):
        joints.add_row(str(i), name, f"{lo:+.4f}", f"{hi:+.4f}", f"{math.degrees(lo):+.1f}",
                       f"{math.degrees(hi):+.1f}")
    console.print(joints)
    slots = Table(title="slot → model frame")
    slots.add_column("slot")
    slots.add_column("frame")
    for slot, frame in hand.slot_frames.items():
        slots.add_row(slot, frame)
    console.print(slots)
    return 0


def parse_q(values: list[str], dof: int, joint_names) -> np.ndarray:
    """Joint angles from CLI words ('0.1 0.2' or '0.1,0.2'); wrong count or non-numbers are clear errors."""
    words = [w for v in values for w in re.split(r"[,\s]+", v.strip()) if w]
    try:
        q = np.array([float(w) for w in words])
    except ValueError:
        raise ValueError(f"--q takes numbers (radians), got {' '.join(values)!r}") from None
    if q.shape != (dof,):
        raise ValueError(f"--q needs {dof} angles ({', '.join(joint_names)}), got {len(q)}")
    return q


def _plot(args) -> int:
    import embodiments
    from embodiments.plotting import plot_sparse_joints, save_figure

    hand = embodiments.get(args.name)
    out = args.out if args.out is not None else Path(f"{hand.name}.png")
    if args.motion is not None:
        from embodiments.human import HumanHand
        from embodiments.motions import human_motion

        if not isinstance(hand, HumanHand):
            raise ValueError(f"--motion is a human hand motion; {hand.name} is not a human hand (use mano_left or "
                             "mano_right, or --q for a pose)")
        sj = human_motion(args.motion, side=hand.side, fps=args.fps, frames=args.frames, seed=args.seed)
        positions, valid, title = sj.positions, sj.valid, f"{hand.name}: {args.motion}"
    else:
        q = hand.neutral() if args.q is None else parse_q(args.q, hand.dof, hand.joint_names)
        positions, valid = hand.sparse_joints(q)
        title = f"{hand.name}: {'neutral pose' if args.q is None else 'q = ' + np.array2string(q, precision=2)}"
    fig = plot_sparse_joints(positions, valid, title=title, frame="hand_root")
    save_figure(fig, out)
    print(f"wrote {out}")
    return 0
