"""``dexworld retarget INPUT --to ROBOT``: map recorded hand motion to a robot hand's joint angles."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .. import argtypes as at

HELP = ("retarget a hand motion (SparseJoints .npz/.h5, MediaPipe landmarks .json/.npz, or a raw (T, 21|25, 3) "
        ".npy of one hand) to a robot hand's joint angles")


def register(subparsers) -> None:
    p = subparsers.add_parser("retarget", help=HELP, description=HELP)
    p.add_argument("input", type=Path,
                   help="SparseJoints file (.npz, .h5), MediaPipe hand landmarks (.json, .npz), or a .npy (T, J, 3) "
                        "of one hand: J = 21 (MANO/OpenPose order) or 25 (WebXR / Vision Pro, with --from webxr_*)")
    p.add_argument("--to", required=True, dest="target", help="target hand, e.g. inspire_right, dex3_left")
    p.add_argument("--from", dest="source", default=None,
                   help="source hand (default: the file's embodiment if registered, else mano_<target side>)")
    p.add_argument("--method", default="vector", choices=("vector", "position", "dexpilot"))
    p.add_argument("-o", "--out", type=Path, required=True, help="output .npz: q (T, dof), joint_names, report")
    p.add_argument("--plot", type=Path, default=None, help="also write a GIF of source and robot keypoints")
    p.add_argument("--config", type=Path, default=None, help="pair config YAML (default: shipped or generic)")
    p.add_argument("--scale", type=at.positive_float, default=None,
                   help="target metres per source metre (default: auto)")
    p.add_argument("--lowpass", type=at.positive_float, default=None, metavar="HZ", help="zero-phase low-pass cutoff")
    p.add_argument("--device", default="cpu", help="torch device for the solver: cpu, cuda, auto")
    p.add_argument("--fps", type=float, default=None, help="frame rate of a .npy or MediaPipe input (default 30)")
    p.add_argument("--swap-handedness", action="store_true",
                   help="MediaPipe input from an unmirrored camera: swap its Left/Right labels")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import embodiments
    from embodiments.io_utils import atomic_path
    from retarget import Retargeter

    if args.out.suffix.lower() != ".npz":
        raise ValueError(f"--out must be a .npz file, got {args.out}")
    motion = _read_motion(args)
    target = embodiments.get(args.target)
    source = args.source
    if source is None:
        emb = getattr(motion, "embodiment", None)
        source = emb if emb in embodiments.names() else f"mano_{target.side}"
    overrides = {"scale": args.scale} if args.scale is not None else {}
    if args.lowpass is not None:
        overrides["lowpass_hz"] = args.lowpass
    rt = Retargeter(source, args.target, args.method, config=args.config, device=args.device, **overrides)
    res = rt.solve(motion, fps=args.fps)
    fps = args.fps or getattr(motion, "fps", 30.0)
    robot_pos, robot_valid = target.sparse_joints(res.q)
    with atomic_path(args.out) as tmp, open(tmp, "wb") as f:
        np.savez(f, q=res.q.astype(np.float32), joint_names=np.array(res.joint_names), held=res.held,
                 cost=res.cost, scale=np.float64(res.scale), fps=np.float64(fps),
                 source=np.array(source), target=np.array(args.target), method=np.array(args.method),
                 robot_positions=robot_pos.astype(np.float32), robot_valid=robot_valid,
                 reference=res.reference.astype(np.float32))
    held = int(res.held.sum())
    print(f"{source} → {args.target} ({args.method}): {len(res.q)} frames, {target.dof} joints, scale "
          f"{res.scale:.3f}, {held} held frame(s) → {args.out}")
    if args.plot is not None:
        from retarget.plot import retarget_gif

        retarget_gif(res.reference, robot_pos, robot_valid, args.plot, titles=(source, args.target),
                     held=res.held)
        print(f"plot → {args.plot}")
    return 0


def _read_motion(args: argparse.Namespace):
    """SparseJoints from a SparseJoints or MediaPipe file, or the raw (T, J, 3) array of a .npy."""
    from embodiments import SparseJoints
    from embodiments.mediapipe import load_mediapipe

    path, suffix = args.input, args.input.suffix.lower()
    if not path.exists():
        raise FileNotFoundError(f"no motion file at {path}")
    if suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise ValueError(f"{path}: a .npy motion must be (T, 21, 3) or (T, 25, 3) joints of one hand, "
                             f"got shape {arr.shape}")
        return arr
    if suffix == ".json":
        return load_mediapipe(path, fps=args.fps, swap_handedness=args.swap_handedness)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
        if "positions" not in keys and keys & {"world_landmarks", "hand_world_landmarks", "landmarks",
                                               "hand_landmarks"}:
            return load_mediapipe(path, fps=args.fps, swap_handedness=args.swap_handedness)
    return SparseJoints.load(path)
