"""``dexworld generate --checkpoint RUN/checkpoint-N --image IMG --joints J.npz -o out.mp4``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import argtypes as at

# The shipped model's folder, found without importing torch (help texts must stay fast).
SHIPPED_INDEX = Path(__file__).resolve().parents[2] / "worldmodel" / "checkpoints" / "tiny-sim" / "model_index.json"
# The authors' sampling, recorded by 'dexworld convert-upstream' (worldmodel.wan.sampling.UPSTREAM_DEFAULTS).
UPSTREAM = {"num_inference_steps": 50, "guidance_scale": 5.0, "shift": 5.0, "uncond_control": "joints",
            "clip_preprocess": "resize", "first_frame": "generate", "color_match": "none"}
# What a folder saved before a setting existed samples with: SamplingDefaults' field default. Both dicts are copies
# kept torch-free for the help text; tests/test_sampling.py checks them against worldmodel.wan.sampling.
UNRECORDED = {"first_frame": "generate", "color_match": "none"}


def _index(path: Path) -> dict | None:
    try:
        return json.loads((path / "model_index.json" if path.is_dir() else path).read_text())
    except (OSError, ValueError):
        return None


def _named_checkpoint(argv: list[str]) -> Path | None:
    """The --checkpoint on the command line, so that ``generate --checkpoint DIR --help`` shows DIR's defaults."""
    for i, a in enumerate(argv):
        if a == "--checkpoint" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if a.startswith("--checkpoint="):
            return Path(a.split("=", 1)[1])
    return None


def _sampler(folder: Path, index: dict) -> str | None:
    """The scheduler class a folder's ``model_index.json`` names, marked as ``sampling.sampler_label`` marks it.

    A copy of that rule on the saved JSON, because help must not import torch; ``tests/test_shipped_model.py`` and
    ``tests/test_sampling.py`` check that both give the same label for the shipped sampler.
    """
    name = (index.get("scheduler") or [None, None])[1]
    config = _index(folder / "scheduler" / "scheduler_config.json") or {}
    return f"{name} (stochastic)" if name and config.get("stochastic_sampling") else name


def _help_defaults(argv: list[str]):
    """(label, sampling dict, scheduler name) of the checkpoint named on the command line, else the shipped one."""
    named = _named_checkpoint(argv)
    index = _index(named) if named is not None else None
    if index is not None and isinstance(index.get("sampling"), dict):
        return str(named), index["sampling"], _sampler(named if named.is_dir() else named.parent, index)
    index = _index(SHIPPED_INDEX) or {}
    return "tiny-sim", index.get("sampling") or {}, _sampler(SHIPPED_INDEX.parent, index)


def _default(key: str, label: str, sampling: dict) -> str:
    """Help text for a setting the checkpoint records: its value in that checkpoint and in converted ones."""
    value = sampling.get(key, UNRECORDED.get(key, "?"))
    return f"default: from the checkpoint ({label}: {value}; converted upstream: {UPSTREAM[key]})"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``generate`` subcommand."""
    import sys

    label, sampling, scheduler = _help_defaults(sys.argv[1:])
    shown = ", ".join(f"{k} {v}" for k, v in sampling.items()) or "unknown"
    p = subparsers.add_parser(
        "generate", help="generate a video from a reference image and hand joints with a trained checkpoint",
        description="Sample the joint-controlled Wan 2.1 I2V model. The joints file is a SparseJoints .npz/.h5 in "
                    "the camera frame, with K in the reference image's pixels (or pass --K). Its frame count "
                    "(or --num-frames) must be 4k+1. Sampling settings left out take the values the checkpoint "
                    f"records; {label}: {shown}, sampler {scheduler}. Name a checkpoint before --help to see its own "
                    "(dexworld generate --checkpoint DIR --help).")
    p.add_argument("--checkpoint", default=None,
                   help="model folder (HandControlPipeline.save_pretrained, 'dexworld convert-upstream'), a "
                        "checkpoint written by 'dexworld train' or its run folder (then its latest checkpoint; "
                        "default: the shipped tiny-sim model, worldmodel/checkpoints/tiny-sim)")
    p.add_argument("--image", required=True, help="reference image (first frame)")
    p.add_argument("--joints", required=True, help="SparseJoints file (.npz / .h5), camera frame")
    p.add_argument("-o", "--output", required=True, help="video file (.mp4 or .gif)")
    p.add_argument("--base-path", default=None, help="the base model folder (default: the one the checkpoint names)")
    p.add_argument("--prompt", default="", help="text prompt")
    p.add_argument("--negative-prompt", default="", help="negative prompt")
    p.add_argument("--K", default=None, help="intrinsics 'fx,fy,cx,cy' in image pixels (if the joints lack K)")
    p.add_argument("--num-frames", type=at.frames_4k1, default=None, help="use the first N joint frames (4k+1)")
    p.add_argument("--height", type=at.side16, default=None, help="default: from the checkpoint")
    p.add_argument("--width", type=at.side16, default=None, help="default: from the checkpoint")
    p.add_argument("--steps", type=at.positive_int, default=None,
                   help="denoising steps; " + _default("num_inference_steps", label, sampling))
    p.add_argument("--guidance", type=at.guidance, default=None,
                   help="guidance scale; " + _default("guidance_scale", label, sampling))
    p.add_argument("--shift", type=at.positive_float, default=None,
                   help="flow shift; " + _default("shift", label, sampling))
    p.add_argument("--uncond-control", choices=("unedited", "joints"), default=None,
                   help="what the unconditional branch sees: 'joints' = the joint condition in both branches; "
                        + _default("uncond_control", label, sampling))
    p.add_argument("--first-frame", choices=("generate", "reference"), default=None,
                   help="'reference': latent frame 0 is the reference image's latent at every step (Wan 2.2 TI2V "
                        "style), so frame 0 is the VAE's reconstruction of --image; 'generate': denoised like the "
                        "rest; " + _default("first_frame", label, sampling))
    p.add_argument("--color-match", choices=("none", "reference"), default=None,
                   help="'reference': shift each frame's colours by the VAE's own mean colour error on --image "
                        "(for a small VAE that loses a scene's absolute colour); " + _default("color_match", label,
                                                                                              sampling))
    p.add_argument("--seed", type=at.seed, default=0)
    p.add_argument("--device", type=at.device, default=None,
                   help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="transformer/text-encoder weights (the control module and VAE stay float32)")
    p.add_argument("--fps", type=at.positive_float, default=None, help="video fps (default: the joints')")
    p.add_argument("--overlay", action="store_true", help="write [video | video with joints] side by side")
    p.add_argument("--save-control", default=None, help="also save the control maps to this .npz")
    p.set_defaults(func=run)


def parse_K(text: str):
    """'fx,fy,cx,cy' → K (3, 3)."""
    import numpy as np

    try:
        fx, fy, cx, cy = (float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--K must be 'fx,fy,cx,cy', got {text!r}") from None
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])


def resolve_device(device: str | None) -> str:
    """--device, or cuda when available, else cpu."""
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import warnings

    import numpy as np

    from dexworld.checkpoints import resolve_checkpoint
    from dexworld.images import read_image
    from embodiments.io_utils import check_writable
    from embodiments.sparse import SparseJoints
    from embodiments.view_check import ViewWarning, check_view
    from worldmodel.evaluation.video import draw_joints, side_by_side, write_video
    from worldmodel.wan.pipeline import HandControlPipeline
    from worldmodel.wan.sampling import sampler_label

    out = Path(args.output)
    if out.suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"-o must end in .mp4 or .gif, got {out.name!r}")
    for path in (out, args.save_control):  # before the model runs: an unwritable output fails in a second
        if path:
            check_writable(path)
    image = read_image(args.image, "--image")
    joints = SparseJoints.load(args.joints)
    if args.K is not None:
        joints = joints.replace(K=parse_K(args.K))
    if args.num_frames is not None:
        if not 1 <= args.num_frames <= len(joints):
            raise ValueError(f"--num-frames must be in 1..{len(joints)}, got {args.num_frames}")
        joints = joints[: args.num_frames]
    with warnings.catch_warnings():  # errors before the model loads; the pipeline repeats the check and warns
        warnings.simplefilter("ignore", ViewWarning)
        check_view(image.shape[:2], joints, name=f"--image {args.image} with --joints {args.joints}")
    import torch

    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    checkpoint = resolve_checkpoint(args.checkpoint) if args.checkpoint is not None else "tiny-sim"
    pipe = HandControlPipeline.from_pretrained(checkpoint, torch_dtype=dtype, base=args.base_path)
    pipe.to(resolve_device(args.device))
    used = dataclasses.replace(pipe.defaults, **{k: v for k, v in (
        ("height", args.height), ("width", args.width), ("num_inference_steps", args.steps),
        ("guidance_scale", args.guidance), ("shift", args.shift), ("uncond_control", args.uncond_control),
        ("first_frame", args.first_frame), ("color_match", args.color_match), ("num_frames", len(joints)))
        if v is not None})
    height, width = used.height, used.width
    print(f"generating {len(joints)} frames at {width}x{height} (width x height) from {checkpoint}", flush=True)
    print(f"sampling: {used.describe(sampler_label(pipe.scheduler))}")
    result = pipe(image, joints, prompt=args.prompt, negative_prompt=args.negative_prompt, height=height,
                  width=width, num_inference_steps=args.steps, guidance_scale=args.guidance, shift=args.shift,
                  uncond_control=args.uncond_control, seed=args.seed, return_control=bool(args.save_control),
                  first_frame=args.first_frame, color_match=args.color_match)
    frames = result.frames
    if args.overlay:
        H, W = frames.shape[1:3]
        sx, sy = W / image.shape[1], H / image.shape[0]
        uvd, ok = joints.project()
        uv = uvd[..., :2] * np.array([sx, sy])
        frames = side_by_side(frames, draw_joints(frames, uv, ok))
    write_video(out, frames, fps=args.fps or joints.fps)
    if args.save_control:
        from embodiments.io_utils import atomic_path

        with atomic_path(args.save_control) as tmp, open(tmp, "wb") as f:
            np.savez(f, control=result.control[0].float().cpu().numpy(),
                     condition=result.condition[0].float().cpu().numpy())
    print(f"wrote {out} ({len(result.frames)} frames, {width}x{height})")
    return 0
