"""``dexworld convert-upstream DIT [HAND] -o DIR``: the authors' released weights → a pipeline folder."""

from __future__ import annotations

import argparse
import json

from .. import argtypes as at


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``convert-upstream`` subcommand."""
    p = subparsers.add_parser(
        "convert-upstream", help="convert the paper's released dit.safetensors + hand controller to a checkpoint",
        description="Rename the authors' LoRA (DiffSynth Wan names) and widened patch embedding to diffusers + peft "
                    "names, load their hand controller into our upstream-compatible control module, and write a "
                    "pipeline folder (HandControlPipeline.from_pretrained, 'dexworld generate --checkpoint') that "
                    "names the base model and records the authors' sampling. See docs/scaling.md.")
    p.add_argument("dit", help="dit.safetensors: LoRA (q, k, v, o, ffn.0, ffn.2) + 52-channel patch embedding "
                               "(or DiffSynth's one training file holding the hand controller too)")
    p.add_argument("hand", nargs="?", default=None,
                   help="hand controller weights (.safetensors or torch.save dict), the authors' names; omit when "
                        "DIT is DiffSynth's one training file holding pipe.dit.* and pipe.hand_controler.*")
    p.add_argument("-o", "--out", required=True, help="pipeline folder to write")
    p.add_argument("--base-path", default=None,
                   help="local diffusers-format Wan 2.1 I2V directory the folder names as its base model")
    p.add_argument("--hand-config", default=None,
                   help="JSON file with the controller's constructor values (default: the file's metadata, "
                        "else inferred from the weight shapes)")
    p.add_argument("--lora-alpha", type=at.positive_float, default=None,
                   help="LoRA alpha (scale = alpha / rank); default: the file's .alpha keys, else rank (scale 1)")
    p.add_argument("--height", type=at.side16, default=480)
    p.add_argument("--width", type=at.side16, default=832)
    p.add_argument("--num-frames", type=at.frames_4k1, default=81)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from worldmodel.wan.convert import convert_upstream

    hand_config = None
    if args.hand_config:
        from embodiments.io_utils import read_json

        hand_config = read_json(args.hand_config, "--hand-config file")
    out = convert_upstream(args.dit, args.hand, args.out, base_path=args.base_path, hand_config=hand_config,
                           lora_alpha=args.lora_alpha, height=args.height, width=args.width,
                           num_frames=args.num_frames)
    from worldmodel.wan.convert import CONVERSION_FILE

    meta = json.loads((out / CONVERSION_FILE).read_text())
    print(f"wrote {out}: LoRA rank {meta['lora_rank']} (alpha {meta['lora_alpha']:g}) on {meta['lora_blocks']} "
          "blocks, widened patch embedding, hand controller; samples as the authors do (50 Euler steps, guidance 5 "
          "with the joints in both branches, shift 5, uncropped CLIP)")
    return 0
