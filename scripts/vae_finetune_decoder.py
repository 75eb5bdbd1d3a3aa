"""Fine-tune a trained tiny VAE: by default only its decoder, keeping the encoder — and so the latent space — as it is.

The video model of a pipeline is trained on its VAE's latents, so a VAE trained further end to end needs the video
model retrained too. With the encoder frozen the latents (and ``latents_mean``/``latents_std``) do not change: the
new VAE drops into the existing pipeline (copy the pipeline folder, replace ``vae/``) and only the decoder changes.
``continue_vae`` with ``train_encoder=False`` (short windows, then 17-frame windows); the defaults are the run in
docs/results.md ("Fourth attempt"):

    .venv/bin/python scripts/vae_finetune_decoder.py --vae worldmodel/checkpoints/tiny-sim/vae \\
        --data outputs/tiny_sim/data/train_mix --out outputs/vae_decoder

``--train-encoder`` trains the whole VAE instead (a new latent space: retrain or continue stage 2 on it). With
``--anchor-weight`` the latents of frames 1 on are held near the starting VAE's and its latent statistics are kept,
so mostly frame 0's latent moves and a video model needs only a short continuation on it.

Writes ``--out/vae`` (every ``--save-every`` steps and at the end, atomically) and ``--out/vae_loss.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    from dexworld.argtypes import nonnegative_float, nonnegative_int, positive_float, positive_int, probability

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vae", type=Path, required=True, help="trained VAE folder (config.json + safetensors)")
    ap.add_argument("--data", required=True, help="training clips (folder of .h5)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the fine-tuned VAE and its loss log")
    ap.add_argument("--steps", type=nonnegative_int, default=9000, help="short-window (5-frame) steps")
    ap.add_argument("--long-steps", type=nonnegative_int, default=700, help="17-frame window steps")
    ap.add_argument("--lr", type=positive_float, default=1e-3, help="peak LR (warm-up + cosine; 17-frame phase: /3)")
    ap.add_argument("--hand-weight", type=nonnegative_float, default=0.0,
                    help="extra loss weight on the hand region (pixels near the clip's projected skeleton)")
    ap.add_argument("--hand-crop", type=probability, default=0.0,
                    help="share of training crops centred on the hand instead of drawn uniformly")
    ap.add_argument("--color-weight", type=nonnegative_float, default=0.0,
                    help="extra loss weight on the error's low frequencies (averaged over 8x8-pixel cells): "
                         "the scene's colour, which a small VAE underfits")
    ap.add_argument("--first-frame-weight", type=nonnegative_float, default=0.0,
                    help="extra loss weight on frame 0 (the reference image, which the causal VAE encodes and "
                         "decodes alone)")
    ap.add_argument("--new-decoder-width", type=positive_int, default=None, metavar="BASE_DIM",
                    help="replace the decoder with a new one of this base width, trained from scratch under the "
                         "frozen encoder (the latents stay, so the video model keeps working; default: keep it)")
    ap.add_argument("--train-encoder", action="store_true",
                    help="train the encoder too: the latent space moves, so train the video model on it again")
    ap.add_argument("--anchor-weight", type=nonnegative_float, default=0.0,
                    help="with --train-encoder: keep the latents of frames 1 on near the starting VAE's (weight of "
                         "their mean squared distance in units of latents_std), so the video model's latent space "
                         "barely moves while frame 0's may")
    ap.add_argument("--seed", type=nonnegative_int, default=0,
                    help="draws of clips, windows and crops (a continued run on a new seed sees new draws)")
    ap.add_argument("--save-every", type=positive_int, default=500, help="write --out/vae every N steps")
    args = ap.parse_args(argv)
    from worldmodel.training.vae import continue_vae

    if not (args.vae / "config.json").is_file():
        raise SystemExit(f"--vae {args.vae}: no config.json (expected a diffusers AutoencoderKLWan folder)")
    target = args.out / "vae"
    if target.exists() or (args.out / "vae_loss.jsonl").exists():
        raise SystemExit(f"--out {args.out} already holds a fine-tuned VAE; give another --out, or continue from it "
                         f"with --vae {target}")
    if args.new_decoder_width is not None and args.train_encoder:
        raise SystemExit("--new-decoder-width trains a decoder under the frozen encoder; drop --train-encoder")
    if args.anchor_weight and not args.train_encoder:
        raise SystemExit("--anchor-weight keeps a trained encoder's latents near the start: add --train-encoder")
    if args.steps + args.long_steps < 1:
        raise SystemExit("--steps and --long-steps: at least one step in all")
    args.out.mkdir(parents=True, exist_ok=True)
    continue_vae(args.vae, target, args.data, log=args.out / "vae_loss.jsonl", save_every=args.save_every,
                 steps=args.steps, long_steps=args.long_steps, lr=args.lr, long_lr=args.lr / 3,
                 train_encoder=args.train_encoder, hand_weight=args.hand_weight, hand_crop=args.hand_crop,
                 color_weight=args.color_weight, first_frame_weight=args.first_frame_weight,
                 anchor_weight=args.anchor_weight, seed=args.seed, decoder_base_dim=args.new_decoder_width)
    print(json.dumps({"vae": str(target), "from": str(args.vae), "steps": args.steps, "long_steps": args.long_steps,
                      "hand_weight": args.hand_weight, "hand_crop": args.hand_crop,
                      "color_weight": args.color_weight, "first_frame_weight": args.first_frame_weight,
                      "anchor_weight": args.anchor_weight, "seed": args.seed,
                      "new_decoder_width": args.new_decoder_width, "train_encoder": args.train_encoder}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
