"""``dexworld edit --image IMG --joints J.npz [--checkpoint DIR] [--host 127.0.0.1 [--allow-remote]] [--port 8080]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import argtypes as at


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``edit`` subcommand."""
    p = subparsers.add_parser(
        "edit", help="open the interactive joint editor in the browser",
        description="Serve a local web app (viser) to drag hand joints in 3D at keyframes, regenerate the video "
                    "with the hand-controlled model and simulate the edit on a robot hand in MuJoCo. The joints file "
                    "is a SparseJoints .npz/.h5 in the camera frame with K in the reference image's pixels.")
    p.add_argument("--image", required=True, help="reference image (the first frame)")
    p.add_argument("--joints", required=True, help="SparseJoints file (.npz / .h5), camera frame, with K")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint: a saved model folder, a checkpoint folder written by 'dexworld train', or its run "
                        "folder (its latest checkpoint; default: the shipped tiny model; without one, a freshly "
                        "initialised, untrained tiny model)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; others need --allow-remote)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --host other machines can reach; the printed URL then carries a token that every "
                        "connection needs")
    p.add_argument("--port", type=at.port, default=8080, help="port (default 8080; the next free one if taken)")
    p.add_argument("--out", default="dexworld_edit",
                   help="folder Export writes to (default ./dexworld_edit); the page can only pick a subfolder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from embodiments.sparse import SparseJoints

    from ..editor.access import is_loopback, new_token
    from ..editor.runners import VideoGenerator
    from ..editor.state import check_editable, check_image, check_image_matches
    from ..images import read_image

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    remote = not is_loopback(args.host)
    if remote and not args.allow_remote:
        raise ValueError(f"--host {args.host} serves the editor to other machines; add --allow-remote to do that "
                         "(the URL then needs a token), or bind 127.0.0.1")
    image = check_image(read_image(args.image, "--image"), name=f"--image {args.image}")
    joints = check_editable(SparseJoints.load(args.joints))
    check_image_matches(image, joints, name=f"--image {args.image}")
    from ..checkpoints import resolve_checkpoint

    generator = VideoGenerator(resolve_checkpoint(args.checkpoint) if args.checkpoint is not None else None)

    from ..editor.app import EditorApp

    app = EditorApp(image, joints, generator=generator, out_dir=args.out, host=args.host, port=args.port,
                    token=new_token() if remote else None)
    if remote:
        print(f"warning: the editor is reachable from other machines on {args.host}:{app.server.get_port()}; anyone "
              f"with the URL below can edit, run the model and export into {Path(args.out).resolve()}",
              file=sys.stderr, flush=True)
    print(f"dexworld editor running at {app.url}  (Ctrl+C to stop)", flush=True)
    if generator.untrained:
        print("note: untrained video model: " + generator.describe(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        app.stop()
    return 0
