"""``dexworld dataset show``: one episode of a LeRobot dataset (or a clip) with its projected hand joints."""

from __future__ import annotations

from pathlib import Path

from .. import argtypes as at

HELP = "inspect datasets"
SHOW_HELP = "write an episode's frames with the projected hand joints drawn on them (GIF/MP4/PNG)"


def register(subparsers) -> None:
    parser = subparsers.add_parser("dataset", help=HELP, description=HELP)
    sub = parser.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    p = sub.add_parser("show", help=SHOW_HELP, description=SHOW_HELP)
    p.add_argument("path", type=Path, help="LeRobot dataset folder or a training clip (.h5)")
    p.add_argument("--episode", type=at.nonnegative_int, default=0, help="episode index (LeRobot datasets)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output image/video (.gif, .mp4, .png = first frame)")
    p.add_argument("--repo-id", default=None, help="LeRobot repo id (default local/<folder name>)")
    p.add_argument("--embodiment", nargs="+", default=None, help="hands in the state (foreign datasets)")
    p.add_argument("--robot", default=None, help="g1 or h1_2 (foreign Unitree datasets)")
    p.add_argument("--save-ref", type=Path, default=None,
                   help="also save the plain first frame (.png): with --joints-out, the inputs of 'dexworld generate'")
    p.add_argument("--joints-out", type=Path, default=None,
                   help="also save the episode's camera-frame SparseJoints with K (.npz or .h5)")
    p.set_defaults(func=run)


def run(args) -> int:
    import imageio.v3 as iio

    from embodiments.io_utils import atomic_path
    from worldmodel.evaluation.video import draw_joints

    if args.save_ref is not None and args.save_ref.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise ValueError(f"--save-ref must end in .png or .jpg, got {args.save_ref.name!r}")
    if args.joints_out is not None and args.joints_out.suffix.lower() not in (".npz", ".h5", ".hdf5"):
        raise ValueError(f"--joints-out must end in .npz or .h5, got {args.joints_out.name!r}")
    if args.out.suffix.lower() not in (".gif", ".mp4", ".png"):
        raise ValueError(f"output must end in .gif, .mp4 or .png, got {args.out.name!r}")
    if args.path.suffix.lower() in (".h5", ".hdf5"):
        from embodiments.clip import read_clip

        clip = read_clip(args.path)
        frames, joints, fps = clip.frames, clip.joints, clip.joints.fps
    else:
        from sim_bridge.lerobot_io import import_lerobot

        ep = next(import_lerobot(args.path, args.repo_id, hands=args.embodiment, robot=args.robot,
                                 episodes=[args.episode]))
        frames, joints, fps = ep.frames, ep.joints, ep.joints.fps
    uvd, ok = joints.project()
    drawn = draw_joints(frames, uvd[..., :2], ok, radius=2.0)
    suffix = args.out.suffix.lower()
    with atomic_path(args.out) as tmp:
        if suffix == ".png":
            iio.imwrite(tmp, drawn[0], extension=".png")
        elif suffix == ".gif":
            iio.imwrite(tmp, drawn, extension=".gif", duration=1000.0 / fps, loop=0)
        elif suffix == ".mp4":
            iio.imwrite(tmp, drawn, extension=".mp4", fps=fps)
        else:
            raise ValueError(f"output must end in .gif, .mp4 or .png, got {args.out.name!r}")
    if args.save_ref is not None:
        from dexworld.images import save_image

        save_image(args.save_ref, frames[0], "--save-ref")
    if args.joints_out is not None:
        joints.save(args.joints_out)
    print(f"{args.out}: {len(drawn)} frames")
    return 0
