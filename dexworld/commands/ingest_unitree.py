"""``dexworld ingest-unitree``: Unitree teleoperation recordings (xr_teleoperate / avp_teleoperate EpisodeWriter
folders) → training clips and/or a LeRobot dataset."""

from __future__ import annotations

from pathlib import Path

from .lerobot import _camera_args, _clip_args, ingest_paths

HELP = "turn Unitree teleoperation recordings (xr_teleoperate episode folders) into training clips and/or LeRobot"


def register(subparsers) -> None:
    p = subparsers.add_parser("ingest-unitree", help=HELP, description=HELP)
    p.add_argument("paths", type=Path, nargs="+", help="task folders of episode_*/ (or single episode folders)")
    p.add_argument("--robot", default="g1", help="robot body: g1 (default) or h1_2; the hands (Dex3-1 or Inspire) "
                                                 "are told from the hand qpos length")
    p.add_argument("-o", "--out", type=Path, default=None, help="output folder for clips")
    p.add_argument("--lerobot-root", type=Path, default=None, help="also write a LeRobot dataset here")
    p.add_argument("--repo-id", default=None, help="LeRobot repo id (default local/<root name>)")
    p.add_argument("--camera", default="color_0", help="colour stream of the head camera (default color_0)")
    p.add_argument("--task", default=None, help="task text (default: the episode's text.goal)")
    p.add_argument("--skip-bad", action="store_true", help="report and skip bad episodes instead of stopping")
    _camera_args(p)
    _clip_args(p, fps=16.0, num_frames=81)
    p.set_defaults(func=run)


def run(args) -> int:
    from sim_bridge.xr_teleoperate import ingest

    return ingest_paths(args, ingest, camera=args.camera)
