"""``dexworld export-lerobot`` / ``import-lerobot`` / ``ingest-humanoid-everyday``: LeRobot datasets and
Humanoid Everyday raw data ↔ training clips."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .. import argtypes as at

EXPORT_HELP = "write training clips (with joint states) as a LeRobot dataset; appends and resumes"
IMPORT_HELP = "turn a LeRobot dataset with hand joint states into training clips (hand FK in the camera)"
INGEST_HELP = "turn Humanoid Everyday raw tasks (folders or zips) into training clips and/or a LeRobot dataset"


def register(subparsers) -> None:
    p = subparsers.add_parser("export-lerobot", help=EXPORT_HELP, description=EXPORT_HELP)
    p.add_argument("clips", type=Path, help="a clip file or a folder of clips (.h5) carrying extra 'q'")
    p.add_argument("--repo-id", default=None, help="LeRobot repo id (default local/<root name>)")
    p.add_argument("--root", type=Path, required=True, help="dataset folder (created or appended to)")
    p.add_argument("--camera", default="ego", help="camera name: feature observation.images.<camera>")
    p.add_argument("--commit-every", type=at.positive_int, default=1, help="episodes per durable commit")
    p.add_argument("--dex3-convention", choices=("motor", "label"), default="motor",
                   help="Dex3 slot meaning: physical motor order (default) or Unitree's labels")
    p.add_argument("--skip-bad", action="store_true", help="report and skip bad clips instead of stopping")
    p.set_defaults(func=run_export)

    p = subparsers.add_parser("import-lerobot", help=IMPORT_HELP, description=IMPORT_HELP)
    p.add_argument("root", type=Path, help="LeRobot dataset folder")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder for clips")
    p.add_argument("--repo-id", default=None, help="LeRobot repo id (default local/<root name>)")
    p.add_argument("--embodiment", nargs="+", default=None,
                   help="registered hands in the state, e.g. dex3_left dex3_right (default: the dexworld sidecar)")
    p.add_argument("--camera", default=None, help="camera name (observation.images.<camera>)")
    p.add_argument("--robot", default=None,
                   help="g1, g1_inspire or h1_2: place hands with the arm joints in the state (default: told from "
                        "the feature names and robot_type)")
    _camera_args(p)
    _clip_args(p, fps=None, num_frames=None)
    p.add_argument("--episodes", type=at.nonnegative_int, nargs="+", default=None, help="episode indices (default all)")
    p.add_argument("--skip-bad", action="store_true",
                   help="v2.1 datasets: report and leave out episodes whose data or video files are missing")
    p.add_argument("--convert-dir", type=Path, default=None,
                   help="where a v2.1 dataset's converted v3.0 copy goes (default: $DEXWORLD_CACHE or "
                        "~/.cache/dexworld; the source is never written)")
    p.set_defaults(func=run_import)

    p = subparsers.add_parser("ingest-humanoid-everyday", help=INGEST_HELP, description=INGEST_HELP)
    p.add_argument("paths", type=Path, nargs="+", help="task folders or task zips")
    p.add_argument("-o", "--out", type=Path, default=None, help="output folder for clips")
    p.add_argument("--lerobot-root", type=Path, default=None, help="also write a LeRobot dataset (30 Hz) here")
    p.add_argument("--repo-id", default=None, help="LeRobot repo id (default local/<root name>)")
    p.add_argument("--robot", default=None, help="g1 or h1_2 (default: detected per episode)")
    p.add_argument("--task", default=None, help="task text (default: the task folder name)")
    p.add_argument("--check-depth", action="store_true", help="also check every depth file decodes")
    p.add_argument("--hand-order", choices=("left-first", "right-first"), default="left-first",
                   help="which hand hand_state lists first: left (README, default) or right (early H1 recordings; "
                        "a warning says when the data look swapped)")
    p.add_argument("--skip-bad", action="store_true", help="report and skip bad episodes instead of stopping")
    _camera_args(p)
    _clip_args(p, fps=16.0, num_frames=81)
    p.set_defaults(func=run_ingest)


def _camera_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--intrinsics", default=None, metavar="FX,FY,CX,CY",
                   help="pixel intrinsics of the colour images (default: the robot's published K, scaled)")
    p.add_argument("--camera-to-torso", type=Path, default=None, metavar="T.npy",
                   help="calibrated (4, 4) torso-from-camera transform (OpenCV camera axes), .npy or text")


def _clip_args(p: argparse.ArgumentParser, fps: float | None, num_frames: int | None) -> None:
    p.add_argument("--fps", type=at.positive_float, default=fps, help=f"clip frame rate (default {fps or 'unchanged'})")
    p.add_argument("--num-frames", type=at.frames, default=num_frames,
                   help=f"frames per clip (default {num_frames or 'whole episode'})")
    p.add_argument("--stride", type=at.positive_int, default=None,
                   help="frames between clip starts (default num-frames)")


def _parse_K(text: str | None) -> np.ndarray | None:
    if text is None:
        return None
    try:
        fx, fy, cx, cy = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--intrinsics must be four numbers FX,FY,CX,CY, got {text!r}") from None
    from embodiments.transforms import intrinsics

    return intrinsics(fx, fy, cx, cy)


def _parse_T(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    T = np.load(path) if path.suffix == ".npy" else np.loadtxt(path)
    if T.shape != (4, 4):
        raise ValueError(f"--camera-to-torso must hold a (4, 4) transform, {path} holds shape {T.shape}")
    return T


def _progress(total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="ep")


def run_export(args) -> int:
    from embodiments.clip import find_clips
    from sim_bridge.clips import episode_from_clip
    from sim_bridge.lerobot_io import check_root, export_lerobot

    check_root(args.root)  # before anything is read or shown: a --root that is not ours is refused up front
    paths = find_clips(args.clips)
    bar = _progress(len(paths), "export")
    failed = []

    def episodes():
        for p in paths:
            try:
                ep = episode_from_clip(p)
            except ValueError as e:
                if not args.skip_bad:
                    raise
                failed.append((str(p), str(e)))
                bar.update()
                continue
            yield ep

    rep = export_lerobot(episodes(), args.repo_id or f"local/{args.root.name}", args.root, camera=args.camera,
                         commit_every=args.commit_every, dex3_convention=args.dex3_convention,
                         skip_bad=args.skip_bad, progress=lambda ep: bar.update())
    bar.update(len(rep.skipped))
    bar.close()
    for src, msg in failed + rep.failed:
        print(f"skipped {src}: {msg}")
    print(f"{args.root}: wrote {len(rep.written)}, already there {len(rep.skipped)}, failed "
          f"{len(failed) + len(rep.failed)}; {rep.total_episodes} episodes in the dataset")
    return 1 if (failed or rep.failed) and not rep.written else 0


def run_import(args) -> int:
    from sim_bridge.clips import write_episode_clips
    from sim_bridge.lerobot_io import import_lerobot

    skipped: list[tuple[str, str]] = []
    eps = import_lerobot(args.root, args.repo_id, hands=args.embodiment, camera=args.camera, robot=args.robot,
                         K=_parse_K(args.intrinsics), T_torso_cam=_parse_T(args.camera_to_torso),
                         episodes=args.episodes, skip_bad=args.skip_bad, convert_dir=args.convert_dir,
                         skipped=skipped)
    n = 0
    with _progress(None, "import") as bar:
        for ep in eps:
            tail = ep.source.rpartition("#")[2]
            index = int(tail) if tail.isdigit() else (n if args.episodes is None else args.episodes[n])
            stem = f"{args.root.name}_ep{index:06d}"
            write_episode_clips(ep, args.out, stem, fps=args.fps, num_frames=args.num_frames, stride=args.stride)
            n += 1
            bar.update()
    for name, why in skipped:
        print(f"skipped {name}: {why}")
    print(f"{args.out}: clips of {n} episodes" + (f", {len(skipped)} skipped" if skipped else ""))
    return 0


def run_ingest(args) -> int:
    from sim_bridge.humanoid_everyday import ingest

    return ingest_paths(args, ingest, with_depth=args.check_depth, hand_order=args.hand_order)


def ingest_paths(args, ingest, **options) -> int:
    """Run a raw-recording reader (Humanoid Everyday, Unitree teleoperation) over ``args.paths`` with the options
    both commands share; one summary line per path, skipped episodes named. Exit 1 on skips without --skip-bad."""
    if args.out is None and args.lerobot_root is None:
        raise ValueError("give -o/--out for clips and/or --lerobot-root")
    K, T = _parse_K(args.intrinsics), _parse_T(args.camera_to_torso)
    failed = 0
    with _progress(None, "ingest") as bar:
        for path in args.paths:
            rep = ingest(path, out_dir=args.out, lerobot_root=args.lerobot_root, repo_id=args.repo_id,
                         fps=args.fps, num_frames=args.num_frames, stride=args.stride, robot=args.robot, K=K,
                         T_torso_cam=T, task=args.task, skip_bad=args.skip_bad, progress=lambda ep: bar.update(),
                         **options)
            for name, msg in rep.failed:  # named with their recording folder (some readers' names carry it)
                print(f"skipped {name if name.startswith(path.name) else f'{path.name}:{name}'}: {msg}")
            failed += len(rep.failed)
            print(f"{path.name}: {len(rep.episodes)} episodes, {len(rep.clips)} clips"
                  + (f", LeRobot +{len(rep.lerobot_written)}" if args.lerobot_root else ""))
    return 1 if failed and not args.skip_bad else 0
