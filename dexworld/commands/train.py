"""``dexworld train --preset tiny --data CLIPS --out RUN``: LoRA + control-module training on HDF5 clips."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import argtypes as at
from ._exit import finish

# CLI flag → TrainConfig field (only flags the user gave override the config file / defaults).
_FIELDS = ("data", "out", "preset", "base_path", "init", "init_vae", "fresh_control", "steps", "batch_size",
           "num_frames", "height", "width", "lora_rank", "lr_lora", "lr_lora_schedule", "lr_control", "warmup_steps",
           "cosine_steps", "joint_mask_prob", "timestep_sampling", "shift", "mixed_precision", "base_dtype",
           "checkpoint_every", "sample_every", "sample_steps", "seed", "num_workers", "gradient_accumulation_steps",
           "cache", "control_dropout", "hand_weight")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    p = subparsers.add_parser(
        "train", help="train the hand-control module + LoRA on Wan 2.1 I2V (flow matching)",
        description="Flow-matching training of the joint-controlled Wan 2.1 I2V model on clips written by "
                    "embodiments.clip.write_clip. Writes checkpoints, loss.jsonl and sample videos to --out; "
                    "see docs/worldmodel.md.")
    p.add_argument("--preset", choices=("tiny", "tiny-sim", "wan2.1-i2v-14b-480p"), default=None,
                   help="default tiny; tiny-sim: stage 1 trains the VAE on the clips, stage 2 the whole transformer "
                        "+ control module (the recipe of the shipped model, docs/results.md)")
    p.add_argument("--base-path", default=None, help="local diffusers-format Wan 2.1 I2V directory (14B preset)")
    p.add_argument("--init", default=None,
                   help="start from a saved pipeline's weights (e.g. worldmodel/checkpoints/tiny-sim or a converted "
                        "release): fine-tune it on --data; step, optimiser and schedule start fresh")
    p.add_argument("--init-vae", default=None,
                   help="with --init: a saved AutoencoderKLWan folder that replaces the pipeline's VAE (carry a "
                        "trained model onto a new latent space, e.g. a 4x VAE; the control module follows its grid)")
    p.add_argument("--fresh-control", action="store_true", default=None,
                   help="with --init: keep its video model, learn the control anew (a new control module from "
                        "--seed, the transformer's control inputs zeroed)")
    p.add_argument("--data", default=None, help="folder of .h5 clips (or one clip file)")
    p.add_argument("--out", default=None, help="run folder (checkpoints, loss log, samples)")
    p.add_argument("--config", default=None, help="JSON file with TrainConfig fields; flags override it")
    p.add_argument("--resume", nargs="?", const="latest", default=None,
                   help="continue a run: 'latest' (default when given without value) or a checkpoint folder")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an --out that holds a run: delete that run's checkpoints, logs, base and "
                        "samples first (nothing else in the folder)")
    p.add_argument("--steps", type=at.nonnegative_int, default=None, help="total optimiser steps (default 1600)")
    p.add_argument("--batch-size", type=at.positive_int, default=None)
    p.add_argument("--num-frames", type=at.frames_4k1, default=None, help="frames per sample, 4k+1 (default: preset's)")
    p.add_argument("--height", type=at.side16, default=None)
    p.add_argument("--width", type=at.side16, default=None)
    p.add_argument("--lora-rank", type=at.positive_int, default=None, help="default 64")
    p.add_argument("--lr-lora", type=at.nonnegative_float, default=None,
                   help="LoRA + patch embedding LR (default 1e-4)")
    p.add_argument("--lr-lora-schedule", choices=("constant", "cosine"), default=None,
                   help="LoRA/transformer LR: constant (default) or the control LR's warm-up + cosine (fine-tuning)")
    p.add_argument("--lr-control", type=at.nonnegative_float, default=None,
                   help="control module peak LR (default 2e-4)")
    p.add_argument("--warmup-steps", type=at.nonnegative_int, default=None, help="control LR warm-up (default 100)")
    p.add_argument("--cosine-steps", type=at.positive_int, default=None,
                   help="control LR reaches 0 here (default: --steps)")
    p.add_argument("--joint-mask-prob", type=at.probability, default=None, help="default 0.05")
    p.add_argument("--control-dropout", type=at.probability, default=None,
                   help="probability that a sample's joints are all dropped (default 0; tiny-sim 0.1)")
    p.add_argument("--hand-weight", type=at.nonnegative_float, default=None,
                   help="add this many times the loss on the latent cells that see the hand (within 6 px of the "
                        "projected skeleton), averaged over them (default 0)")
    p.add_argument("--train-base", action="store_true", default=None,
                   help="train the whole transformer, not only LoRA (default for tiny-sim)")
    p.add_argument("--vae-steps", type=at.nonnegative_int, default=None,
                   help="stage-1 VAE training steps for presets built from configs (tiny-sim default 4000; then 400 "
                        "on 17-frame windows; "
                        "0: no VAE stage, the default of the other presets)")
    p.add_argument("--timestep-sampling", choices=("uniform", "logit_normal", "upstream"), default=None,
                   help="noise levels: uniform or logit-normal σ, then shifted (default logit_normal); upstream: "
                        "the authors' recipe, uniform over 1000 shifted steps with a bell-curve loss weight")
    p.add_argument("--shift", type=at.positive_float, default=None, help="timestep shift (default 5.0)")
    p.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default=None)
    p.add_argument("--base-dtype", choices=("float32", "bfloat16"), default=None,
                   help="dtype of the frozen weights (bfloat16 needs --mixed-precision bf16)")
    p.add_argument("--gradient-checkpointing", action="store_true", default=None)
    p.add_argument("--fsdp", action=argparse.BooleanOptionalAction, default=None,
                   help="shard the transformer over the processes (FSDP2) instead of a full copy each (DDP); "
                        "a checkpoint resumes either way")
    p.add_argument("--fsdp-cpu-offload", action="store_true", default=None,
                   help="with --fsdp: keep the shards and their optimiser step in CPU memory (CUDA; ~6 GiB less per "
                        "GPU for 14B, slower)")
    p.add_argument("--gradient-accumulation-steps", type=at.positive_int, default=None,
                   help="micro-batches per optimiser step (global batch = this × batch size × processes)")
    p.add_argument("--offload-encoders", action="store_true", default=None,
                   help="keep the frozen VAE / image / text encoders in CPU memory")
    p.add_argument("--cache", default=None, help="train from a folder written by 'dexworld cache' (no --data needed)")
    p.add_argument("--checkpoint-every", type=at.positive_int, default=None, help="default 500")
    p.add_argument("--sample-every", type=at.nonnegative_int, default=None,
                   help="sample video every N steps (0: never)")
    p.add_argument("--sample-steps", type=at.positive_int, default=None, help="denoising steps of sample videos")
    p.add_argument("--seed", type=at.seed, default=None,
                   help="the data order and every sample's noise, noise level and joint mask (default 0); a run "
                        "continued from --init with the seed of the run before it sees the same draws again "
                        "(docs/results.md, twenty-first attempt: give each cycle its own)")
    p.add_argument("--num-workers", type=at.nonnegative_int, default=None)
    p.add_argument("--device", type=at.device, default=None,
                   help="cpu, or cuda[:N] (default: what accelerate picks, a GPU when there is one; under "
                        "`accelerate launch` leave it unset)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    from worldmodel.training.trainer import TrainConfig
    from worldmodel.wan.presets import TRAIN_DEFAULTS

    values: dict = {}
    if args.resume:
        # Start from the configuration the run was started with; flags given now override it.
        from worldmodel.training.trainer import Trainer
        from worldmodel.wan.checkpoint import read_checkpoint_meta

        out = Path(args.out) if args.out else (Path(args.resume).parent if args.resume != "latest" else None)
        if out is None:
            raise ValueError("--resume latest needs --out (the run folder)")
        values.update(read_checkpoint_meta(Trainer._resolve(out, args.resume))["config"])
    file_values: dict = {}
    if args.config:
        from embodiments.io_utils import read_json

        file_values = read_json(args.config, "--config file")
        if not isinstance(file_values, dict):
            raise ValueError(f"--config file {args.config}: expected a JSON object of TrainConfig fields")
    if not args.resume:  # a preset's recipe (e.g. tiny-sim) is the starting point; the file and flags override it
        preset = args.preset or file_values.get("preset", "tiny")
        values.update({"preset": preset, **TRAIN_DEFAULTS.get(preset, {})})
    values.update(file_values)
    for name in _FIELDS:
        v = getattr(args, name, None)
        if v is not None:
            values[name] = v
    if args.gradient_checkpointing:
        values["gradient_checkpointing"] = True
    if args.train_base:
        values["train_base"] = True
    if args.fsdp is not None:
        values["fsdp"] = args.fsdp
    if args.fsdp_cpu_offload:
        values["fsdp_cpu_offload"] = True
    if args.vae_steps is not None:
        values["vae"] = {**values.get("vae", {}), "steps": args.vae_steps}
    if args.offload_encoders:
        values["offload_encoders"] = True
    if args.no_progress:
        from dexworld.progress import quiet_library_progress

        quiet_library_progress()
        values["progress"] = False
    if not values.get("data") and not values.get("cache"):
        raise ValueError("--data is required (a folder of .h5 clips), or --cache (a 'dexworld cache' folder)")
    if not values.get("out"):
        raise ValueError("--out is required (the run folder)")
    return TrainConfig.from_dict(values)


def _check_run_folder(out: Path, resume: str | None, overwrite: bool) -> None:
    """A new run never lands on an old one unasked (it would cut the loss log and repoint ``latest``)."""
    from worldmodel.training.run_folder import is_started_run

    if not resume and not overwrite and is_started_run(out):
        raise ValueError(f"--out {out} already holds a training run; continue it with --resume, or start a new run "
                         "with a new --out (or --overwrite to delete that run's checkpoints, logs and samples)")


def make_device_accelerator(cfg, device: str | None):
    """The accelerator for --device (None: let accelerate choose, as under ``accelerate launch``)."""
    if device is None:
        return None
    from worldmodel.training.distributed import make_accelerator

    if device.startswith("cuda:"):
        import torch

        torch.cuda.set_device(device)
    return make_accelerator(cfg, cpu=device == "cpu")


def run(args: argparse.Namespace) -> int:
    from worldmodel.training.trainer import Trainer, count_parameters

    if args.resume and args.init:
        raise ValueError("--init starts a new run from a pipeline's weights and --resume continues a run; give one")
    if args.resume and args.overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite deletes it; give one of them")
    cfg = build_config(args)
    _check_run_folder(Path(cfg.out), args.resume, args.overwrite)
    trainer = Trainer(cfg, resume=args.resume, overwrite=args.overwrite,
                      accelerator=make_device_accelerator(cfg, args.device))
    model = trainer.model
    main_process = trainer.accelerator.is_main_process  # under `accelerate launch`, report once
    if main_process:
        print(f"preset {trainer.components.name}: {count_parameters(model, trainable_only=True):,} trainable of "
              f"{count_parameters(model):,} parameters; {len(trainer.dataset)} clips; "
              f"{trainer.num_frames} frames at {trainer.height}x{trainer.width}; {trainer.accelerator.num_processes} "
              f"process(es){', FSDP-sharded' if trainer.sharded else ''}; starting at step {trainer.step}")
    try:
        losses = trainer.train()
        path = trainer.save_checkpoint()
    finally:
        trainer.accelerator.end_training()  # destroys the process group
    if main_process:
        if losses:
            print(f"step {trainer.step}: loss {losses[-1]:.4f}; checkpoint {path}")
        else:
            print(f"nothing to do: the run is already at step {trainer.step}; checkpoint {path}")
    return finish(0, trainer.accelerator.num_processes)  # everything is written (atomically), the group is gone
