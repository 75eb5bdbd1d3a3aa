"""``dexworld cache --preset tiny --data CLIPS --out CACHE``: encode clips once for ``dexworld train --cache``."""

from __future__ import annotations

import argparse

from .. import argtypes as at


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cache`` subcommand."""
    p = subparsers.add_parser(
        "cache", help="precompute VAE latents, CLIP image and prompt embeddings of training clips",
        description="Encode every clip once (VAE latents + I2V condition, CLIP image embeddings, prompt "
                    "embeddings) into a folder of safetensors with a manifest of encoder fingerprints. "
                    "'dexworld train --cache DIR' trains from it and refuses it if the encoders changed.")
    p.add_argument("--preset", choices=("tiny", "wan2.1-i2v-14b-480p"), default=None, help="default tiny")
    p.add_argument("--base-path", default=None, help="local diffusers-format Wan 2.1 I2V directory (14B preset)")
    p.add_argument("--init", default=None,
                   help="a saved pipeline folder you will fine-tune with 'dexworld train --init' (e.g. "
                        "worldmodel/checkpoints/tiny-sim): encode with its encoders and at its recorded frame size "
                        "and count (loads the whole pipeline)")
    p.add_argument("--init-vae", default=None, help="with --init: the VAE folder you will pass to train --init-vae")
    p.add_argument("--config", default=None,
                   help="TrainConfig JSON of the run (preset, base_path, tiny, num_frames, height, width)")
    p.add_argument("--data", required=True, help="folder of .h5 clips (or one clip file)")
    p.add_argument("--out", required=True, help="cache folder to write (replaced atomically)")
    p.add_argument("--num-frames", type=at.frames_4k1, default=None, help="frames per window, 4k+1 (default: preset's)")
    p.add_argument("--height", type=at.side16, default=None)
    p.add_argument("--width", type=at.side16, default=None)
    p.add_argument("--window-stride", type=at.positive_int, default=None,
                   help="frames between cached window starts (default: --num-frames, non-overlapping)")
    p.add_argument("--batch-size", type=at.positive_int, default=1,
                   help="windows encoded together (default 1; 8 is faster on a CPU at the tiny models' sizes, and "
                        "needs more memory at full size)")
    p.add_argument("--device", default="cpu", help="torch device for the encoders (e.g. cuda)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from worldmodel.training.cache import build_cache, load_encoders, read_manifest
    from worldmodel.wan.presets import load_preset

    if args.no_progress:
        from dexworld.progress import quiet_library_progress

        quiet_library_progress()
    values: dict = {}
    if args.config:
        from embodiments.io_utils import read_json

        values = read_json(args.config, "--config file")
        if not isinstance(values, dict):
            raise ValueError(f"--config file {args.config}: expected a JSON object")
    for name in ("preset", "base_path", "init", "init_vae", "num_frames", "height", "width"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    preset = values.get("preset", "tiny")
    if values.get("init_vae") and not values.get("init"):
        raise ValueError("--init-vae replaces the VAE of the --init pipeline; give --init as well")
    if values.get("init"):  # the encoders exactly as `train --init` builds them
        from worldmodel.training.trainer import TrainConfig, start_from_pipeline

        cfg = TrainConfig(data=args.data, out=args.out, preset=preset, init=values["init"],
                          init_vae=values.get("init_vae"), base_path=values.get("base_path"))
        components = start_from_pipeline(cfg)[0]
        components.transformer = None  # not needed to encode; frees its memory before the encoding loop
    elif values.get("base_path"):
        components = load_encoders(values["base_path"])
    elif preset == "tiny":
        components = load_preset("tiny", **values.get("tiny", {}))
    else:
        raise ValueError(f"preset {preset!r} needs --base-path (a local diffusers-format directory)")
    out = build_cache(components, args.data, args.out, values.get("num_frames"), values.get("height"),
                      values.get("width"), window_stride=args.window_stride, device=args.device,
                      batch_size=args.batch_size, progress=not args.no_progress)
    m = read_manifest(out)
    windows = sum(len(c["starts"]) for c in m["clips"])
    print(f"wrote {out}: {len(m['clips'])} clips, {windows} windows of {m['fingerprint']['params']}")
    return 0
