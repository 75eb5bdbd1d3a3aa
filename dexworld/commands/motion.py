"""``dexworld motion NAME -o motion.npz``: a built-in human hand motion as a SparseJoints file."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import argtypes as at

HELP = "write a built-in human hand motion (MANO joints) as a SparseJoints file, e.g. the input of 'dexworld retarget'"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``motion`` subcommand."""
    from embodiments.motions import MOTIONS

    p = subparsers.add_parser("motion", help=HELP, description=HELP)
    p.add_argument("name", choices=MOTIONS, metavar="NAME", help=f"motion: {', '.join(MOTIONS)}")
    p.add_argument("-o", "--out", type=Path, required=True, help="output SparseJoints file (.npz or .h5)")
    p.add_argument("--side", choices=("left", "right"), default="right", help="hand side (default right)")
    p.add_argument("--frames", type=at.int_range(2, at.MAX_FRAMES), default=17, help="frames (default 17)")
    p.add_argument("--fps", type=at.positive_float, default=16.0, help="frames per second (default 16)")
    p.add_argument("--seed", type=at.seed, default=0, help="seed of the 'random' motion (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import embodiments

    if args.out.suffix.lower() not in (".npz", ".h5", ".hdf5"):
        raise ValueError(f"-o/--out must end in .npz or .h5, got {args.out.name!r}")
    joints = embodiments.human_motion(args.name, side=args.side, fps=args.fps, frames=args.frames, seed=args.seed)
    joints.save(args.out)
    print(f"wrote {args.out}: {args.name}, {len(joints)} frames at {joints.fps:g} fps, {joints.embodiment} joints "
          f"in its {joints.frame} frame")
    return 0
