"""``dexworld synth``: synthetic paired clips from MuJoCo; ``dexworld simulate``: render a joint trajectory to mp4."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .. import argtypes as at
from ..scene_presets import SCENE_PRESETS

SYNTH_HELP = "render synthetic paired training clips (video + camera-frame joints + K) of a robot hand in MuJoCo"
SIM_HELP = "roll a robot hand joint trajectory through MuJoCo (kinematic or physics) and write an mp4"


def _size(text: str) -> tuple[int, int]:
    """'128' → (128, 128); '480x832' → (480, 832) as (H, W)."""
    try:
        parts = [int(p) for p in text.lower().replace("×", "x").split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 8 or max(parts) > at.MAX_SIDE:
        raise argparse.ArgumentTypeError(f"size must be N or HxW with sides between 8 and {at.MAX_SIDE}, got {text!r}")
    return parts[0], parts[1]


def register(subparsers) -> None:
    p = subparsers.add_parser("synth", help=SYNTH_HELP, description=SYNTH_HELP)
    p.add_argument("--embodiment", required=True,
                   help="registered robot hand, e.g. dex3_right, or a left,right pair such as "
                        "inspire_left,inspire_right: both hands in one scene, each with its own motion (with "
                        "--occlusion: crossing in depth)")
    p.add_argument("--episodes", type=at.positive_int, required=True, help="number of clips")
    p.add_argument("--frames", type=at.frames, default=17, help="frames per clip (default 17)")
    p.add_argument("--size", type=_size, default=(128, 128), help="frame size N or HxW (default 128)")
    p.add_argument("--fps", type=at.positive_float, default=16.0, help="frames per second (default 16)")
    p.add_argument("--out", type=Path, required=True, help="output folder (episode_000000.h5 …, manifest.json)")
    p.add_argument("--seed", type=at.seed, default=0, help="seed; clips are a function of (seed, episode index)")
    p.add_argument("--physics", action="store_true", help="simulate contacts instead of kinematic replay")
    p.add_argument("--motions", default="reach_grasp,human,random",
                   help="comma list of motion kinds to draw from (reach_grasp, human, random)")
    p.add_argument("--episodes-per-scene", type=at.positive_int, default=8,
                   help="episodes sharing one compiled scene (appearance is re-drawn for each)")
    p.add_argument("--scene-preset", choices=tuple(SCENE_PRESETS), default="default",
                   help="scene randomisation ranges: default, or tiny-sim (narrower camera, fewer objects/lights)")
    p.add_argument("--hand-style", choices=("auto", "detailed", "simple"), default="auto",
                   help="hand geometry: detailed (per-link geometry and the real hands' colours; the shipped "
                        "model's data), simple (the URDF's primitives), or auto (default: detailed for the "
                        "built-in Dex3-1 and Inspire hands, simple for others)")
    p.add_argument("--depth", action="store_true", help="also store depth maps")
    p.add_argument("--visibility", action="store_true",
                   help="store per-joint visibility (extra 'visible' (T, 42)) from segmentation and depth renders")
    p.add_argument("--occlusion", action="store_true",
                   help="the occlusion benchmark split: side/oblique grasps and hands behind objects (one hand) or "
                        "two hands crossing in depth (a pair); every clip has sustained occlusion (see "
                        "--occlusion-min-joints) and carries 'visible'")
    p.add_argument("--occlusion-min-joints", type=int, default=3,
                   help="sustained occlusion: at least this many joints hidden in at least half the frames "
                        "(default 3)")
    p.add_argument("--overwrite", action="store_true", help="re-render episodes that already exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)

    s = subparsers.add_parser("simulate", help=SIM_HELP, description=SIM_HELP)
    s.add_argument("trajectory", type=Path,
                   help=".npy (T, dof) joint angles, or .npz with 'q' (T, dof) and optional 'wrist_path' (T, 4, 4); "
                        "for two hands per-hand 'q_<hand>' / 'wrist_path_<hand>' (<hand>: name or side) or one 'q' "
                        "with the left hand's joints then the right's")
    s.add_argument("--embodiment", required=True,
                   help="registered robot hand, e.g. inspire_right, or a left,right pair: dex3_left,dex3_right")
    s.add_argument("--out", type=Path, required=True, help="output .mp4 (or .gif)")
    s.add_argument("--physics", action="store_true", help="physics rollout (default: kinematic replay)")
    s.add_argument("--camera", default="ego", help="scene camera: ego or third (default ego)")
    s.add_argument("--size", type=_size, default=(256, 256), help="frame size N or HxW (default 256)")
    s.add_argument("--fps", type=at.positive_float, default=16.0, help="frames per second (default 16)")
    s.add_argument("--seed", type=at.seed, default=0, help="scene seed")
    s.add_argument("--hand-style", choices=("auto", "detailed", "simple"), default="auto",
                   help="hand geometry: detailed (per-link geometry, real colours), simple, or auto (default: "
                        "detailed where the hand has a detailed look)")
    s.add_argument("--joints-out", type=Path, help="also save the camera-frame SparseJoints (.npz or .h5)")
    s.add_argument("--save-ref", type=Path, default=None,
                   help="also save the first frame as an image (.png): with --joints-out, the inputs of "
                        "'dexworld generate' and 'dexworld edit'")
    s.set_defaults(func=run_simulate)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from embodiments.io_utils import check_writable
    from sim_bridge.occlusion import OCCLUSION_SCENE
    from sim_bridge.scene import SceneConfig
    from sim_bridge.synth import SynthConfig, synthesize

    check_writable(args.out / "manifest.json")  # before any rendering
    motions = tuple(m.strip() for m in args.motions.split(",") if m.strip())
    scene = {**SCENE_PRESETS[args.scene_preset], **(OCCLUSION_SCENE if args.occlusion else {})}
    cfg = SynthConfig(frames=args.frames, size=args.size, fps=args.fps, physics=args.physics, motions=motions,
                      episodes_per_scene=args.episodes_per_scene, depth=args.depth, visibility=args.visibility,
                      occlusion=args.occlusion, occlusion_min_joints=args.occlusion_min_joints,
                      scene=SceneConfig(**scene, hand_style=args.hand_style))
    hands = [h.strip() for h in args.embodiment.replace("+", ",").split(",") if h.strip()]
    report = synthesize(hands[0] if len(hands) == 1 else hands, args.out, args.episodes, seed=args.seed, config=cfg,
                        progress=not args.no_progress, overwrite=args.overwrite)
    print(f"wrote {len(report.written)} clips to {args.out} ({report.existing} already there, "
          f"{len(report.skipped)} skipped) — {report.frames_rendered} frames in {report.seconds:.1f} s "
          f"({report.fps:.1f} frames/s)")
    for i, why in report.skipped:
        print(f"  skipped episode {i}: {why}")
    for note in report.notes:
        print(f"  note: {note}")
    return 0


def _load_trajectory(path: Path, embs) -> tuple[dict, dict]:
    """Per-hand joint angles (T, dof) and wrist paths (T, 4, 4) (absent ones left out) from a .npy or .npz file.

    Per hand: ``q_<name>`` or ``q_<side>``, else its columns of ``q`` (hands side by side, left first, as in the
    ``q`` of synthetic clips); ``wrist_path_<name>`` / ``wrist_path_<side>``, or ``wrist_path`` for one hand.
    """
    import numpy as np

    if not path.exists():
        raise FileNotFoundError(f"no trajectory file at {path}")
    if path.suffix not in (".npz", ".npy"):
        raise ValueError(f"trajectory must be .npy or .npz, got {path.suffix!r}")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        else:
            arrays = {"q": np.load(path, allow_pickle=False)}
    except Exception as e:  # zip and npy readers raise assorted types on empty or truncated files
        raise ValueError(f"trajectory {path}: not a readable {path.suffix} file ({type(e).__name__}: "
                         f"{e or 'empty or truncated'})") from None
    q, wrist = {}, {}
    dofs = [e.dof for e in embs]
    for i, e in enumerate(embs):
        key = next((f"q_{k}" for k in (e.name, e.side) if f"q_{k}" in arrays), None)
        if key is not None:
            q[e.name] = np.asarray(arrays[key])
            if q[e.name].ndim != 2 or q[e.name].shape[1] != e.dof:
                raise ValueError(f"{path}: '{key}' must have shape (T, {e.dof}) for {e.name}, got {q[e.name].shape}")
        elif "q" in arrays:
            full = np.asarray(arrays["q"])
            if full.ndim != 2 or full.shape[1] != sum(dofs):
                parts = " then ".join(f"{x.name}'s {x.dof}" for x in embs)
                raise ValueError(f"{path}: 'q' must have shape (T, {sum(dofs)}) ({parts} joints), got {full.shape}")
            q[e.name] = full[:, sum(dofs[:i]):sum(dofs[:i + 1])]
        else:
            raise ValueError(f"{path}: no joint angles for {e.name}; give 'q_{e.side}' (T, {e.dof}) or 'q' "
                             f"(T, {sum(dofs)})")
        keys = [f"wrist_path_{e.name}", f"wrist_path_{e.side}"] + (["wrist_path"] if len(embs) == 1 else [])
        key = next((k for k in keys if k in arrays), None)
        if key is not None:
            wrist[e.name] = arrays[key]
    return q, wrist


def run_simulate(args: argparse.Namespace) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    import numpy as np

    from embodiments.io_utils import check_writable
    from sim_bridge.motion import hand_axes, wrist_pose
    from sim_bridge.rollout import rollout
    from sim_bridge.scene import SceneConfig, build_scene, scene_hands
    from worldmodel.evaluation.video import write_video

    if args.out.suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"--out must end in .mp4 or .gif, got {args.out.name!r}")
    for out in (args.out, args.joints_out):  # before the rollout: an unwritable output fails in a second
        if out is not None:
            check_writable(out)

    if args.save_ref is not None and args.save_ref.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise ValueError(f"--save-ref must end in .png or .jpg, got {args.save_ref.name!r}")
    if args.joints_out is not None and args.joints_out.suffix.lower() not in (".npz", ".h5", ".hdf5"):
        raise ValueError(f"--joints-out must end in .npz or .h5, got {args.joints_out.name!r}")
    embs = scene_hands([h.strip() for h in args.embodiment.replace("+", ",").split(",") if h.strip()])
    q, wrist = _load_trajectory(args.trajectory, embs)
    for e in embs:
        if e.name not in wrist:  # a still hand over the table, palm down (a pair side by side)
            qe = np.asarray(q[e.name])
            x = (0.05 if len(embs) == 1 else 0.09) * (1 if e.side == "right" else -1)
            wrist[e.name] = np.repeat(wrist_pose(hand_axes(e), [x, 0.14, 0.1])[None], len(qe) if qe.ndim == 2 else 1,
                                      0)
    scene = build_scene(embs, SceneConfig(hand_style=args.hand_style), seed=args.seed)
    r = rollout(embs, q, wrist, camera=args.camera, mode="physics" if args.physics else "kinematic",
                size=args.size, scene=scene, fps=args.fps)
    write_video(args.out, r.frames, fps=args.fps)
    if args.joints_out is not None:
        r.joints.save(args.joints_out)
    if args.save_ref is not None:
        from dexworld.images import save_image

        save_image(args.save_ref, r.frames[0], "--save-ref")
    print(f"wrote {len(r)} frames to {args.out}" + ("" if r.stable else f" — {'; '.join(r.issues)}"))
    return 0 if r.stable else 1
