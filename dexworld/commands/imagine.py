"""``dexworld imagine SOURCE -o DATASET``: imagined policy-training episodes as a LeRobot dataset.

One process, ``accelerate launch`` (each rank one shard) or ``--backend ray`` (one Ray task per shard); shards are
merged with lerobot's aggregation at the end. Killed at any point, a rerun continues.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._exit import finish

HELP = "imagine policy-training episodes from a LeRobot dataset or clips into a LeRobot dataset (resumable)"


def register(subparsers) -> None:
    p = subparsers.add_parser("imagine", help=HELP, description=HELP)
    p.add_argument("source", type=Path,
                   help="LeRobot dataset folder (robot episodes), a folder of clips (.h5), or human motions: "
                        "motion:NAME[,NAME...] (built-in) or MANO SparseJoints files a.npz[,b.npz] (with --to)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output LeRobot dataset folder (created/resumed)")
    p.add_argument("--repo-id", default=None, help="output repo id (default local/<out name>)")
    p.add_argument("--checkpoint", default=None, help="world model checkpoint (default: the shipped tiny-sim, or "
                   "tiny-sim-bimanual when a source hand is a left hand)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per source episode and variant")
    p.add_argument("--edits", type=int, default=0, help="random joint edits per source episode")
    p.add_argument("--edit-max-offset", type=float, default=0.03, help="largest edit offset in metres")
    p.add_argument("--cross-references", type=int, default=0,
                   help="variants whose reference frame comes from the next N episodes")
    p.add_argument("--seed-base", type=int, default=0, help="first seed (seeds are seed-base .. seed-base+N-1)")
    p.add_argument("-b", "--batch-size", type=int, default=4, help="items sampled per pipeline call")
    p.add_argument("--num-frames", type=int, default=None, help="frames per episode, 4k+1 (default: the model's)")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's)")
    p.add_argument("--prompt", default=None, help="prompt (default: each source episode's task)")
    p.add_argument("--min-quality", type=float, default=None,
                   help="drop episodes whose keypoint-probe PCK@5px against the commanded joints is below this")
    p.add_argument("--probe", default=None, help="keypoint probe folder (default: the shipped one)")
    p.add_argument("--camera", default="ego", help="output camera name: observation.images.<camera>")
    p.add_argument("--source-camera", default=None, help="camera of a LeRobot source (observation.images.<camera>)")
    p.add_argument("--embodiment", nargs="+", default=None, help="hands in a LeRobot source's state")
    p.add_argument("--to", default=None, help="robot hand human motions are retargeted to (e.g. inspire_right)")
    p.add_argument("--swap-to", choices=("dex3", "inspire"), default=None,
                   help="embodiment swap: replace every source hand by this family's hand of the same side "
                        "(retargeted through the shared sparse joints)")
    p.add_argument("--robot", default=None, help="g1 or h1_2: place hands with the arm joints of the source state")
    p.add_argument("--episodes", type=int, nargs="+", default=None, help="source episode indices (default all)")
    p.add_argument("--device", default=None, help="torch device (default: the rank's accelerator, else cpu)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: this process, or one shard per rank under accelerate launch; ray: Ray tasks")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local one)")
    p.add_argument("--shards", type=int, default=None, help="Ray tasks (default: the cluster's GPUs, else 2)")
    p.add_argument("--ray-gpus", type=float, default=None, help="GPUs per Ray task (default 1 if the cluster has)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _config(args):
    from dexworld.imagine.runner import ImagineConfig

    for name in ("seeds", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.num_frames is not None and (args.num_frames < 1 or (args.num_frames - 1) % 4):
        raise ValueError(f"--num-frames must be 4k+1 (e.g. 17), got {args.num_frames}")
    return ImagineConfig(source=args.source, out=args.out, repo_id=args.repo_id, checkpoint=args.checkpoint,
                         seeds=args.seeds, edits=args.edits, cross_references=args.cross_references,
                         edit_max_offset=args.edit_max_offset, seed_base=args.seed_base, batch_size=args.batch_size,
                         num_frames=args.num_frames, height=args.height, width=args.width, steps=args.steps,
                         guidance=args.guidance, prompt=args.prompt, min_quality=args.min_quality,
                         camera=args.camera, hands=args.embodiment, robot=args.robot,
                         source_camera=args.source_camera, episodes=args.episodes, to=args.to, swap_to=args.swap_to,
                         probe=args.probe, device=args.device, progress=not args.no_progress)


def run(args: argparse.Namespace) -> int:
    import datasets

    from dexworld.imagine.shards import merge

    datasets.disable_progress_bars()  # lerobot's per-episode map bars would print through ours
    cfg = _config(args)
    if not cfg.source.exists() and not str(cfg.source).startswith("motion:") and not str(cfg.source).endswith(".npz"):
        raise FileNotFoundError(f"SOURCE {cfg.source} does not exist")
    if args.backend == "ray":
        from dexworld.imagine.ray_backend import run_ray

        merge(cfg.out, cfg.repo)  # a previous run's shards first
        reports = run_ray(cfg, args.ray_address, args.shards, args.ray_gpus)
        added = merge(cfg.out, cfg.repo)
        return _summary(cfg, reports, added, len(reports))
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # on CPU (no accelerator, --device cpu or ACCELERATE_USE_CPU=1) ranks meet over gloo
    cpu = cfg.device == "cpu" or not torch.cuda.is_available() or parse_flag_from_env("ACCELERATE_USE_CPU")
    state = PartialState(cpu=cpu)
    if cfg.device is None and state.num_processes > 1:
        cfg.device = str(state.device)
    if state.is_main_process:
        merge(cfg.out, cfg.repo)
    state.wait_for_everyone()
    try:
        report = _run_rank(cfg, state.process_index, state.num_processes)
        reports = [report] if state.num_processes == 1 else _gather(report, state)  # also waits for every rank
        rc = 0
        if state.is_main_process:
            added = merge(cfg.out, cfg.repo) if state.num_processes > 1 else 0
            rc = _summary(cfg, reports, added, state.num_processes)
        # Ranks leave together: a rank that exited while the main one was still merging aborted in its gloo
        # group's teardown ("terminate called without an active exception", seen under load).
        state.wait_for_everyone()
    finally:
        if state.num_processes > 1:  # the group accelerate set up for this run, not one a caller made
            state.destroy_process_group()
    return finish(rc, state.num_processes)  # everything is written, the group is gone


def _run_rank(cfg, rank: int, world: int):
    from dexworld.imagine.runner import run_shard

    return run_shard(cfg, rank, world)


def _gather(report, state):
    import torch.distributed as dist

    out = [None] * state.num_processes
    dist.all_gather_object(out, report)
    return out


def _summary(cfg, reports, added: int, shards: int) -> int:
    from sim_bridge.lerobot_io import read_sidecar

    side = read_sidecar(cfg.out) or {"episodes": []}
    written = sum(r.written for r in reports)
    skipped = sum(r.skipped for r in reports)
    dropped = [d for r in reports for d in r.dropped]
    for key, score in dropped:
        print(f"dropped {key}: quality {score:.3f} < --min-quality {cfg.min_quality}")
    print(f"{cfg.out}: wrote {written}, already there {skipped}, dropped {len(dropped)}; "
          f"{len(side['episodes'])} episodes in the dataset ({shards} shard(s), {added} merged)")
    return 0
