"""What an encoding cache saves a fine-tune: first-epoch training steps from the clips against steps from a cache.

A run trained from clips encodes each window the first time a batch draws it (VAE latents, the I2V condition, CLIP
image and prompt embeddings) and keeps it in memory for the rest of the run, so only its first epoch pays; every
new run pays again (a resumed run, each cosine cycle of the shipped model, each ablation variant). ``dexworld cache
--init PIPE`` pays once. This times, in one process and with the library's default threads unless ``--threads``
says otherwise:

- the baseline: ``--steps`` first-epoch steps of ``train --init PIPE --data`` (every batch new, so every batch encodes);
- building the cache of the same clips (``build_cache`` with the pipeline's encoders, as ``dexworld cache --init``),
  one window at a time (the default) and ``--batch-size`` at a time;
- the same steps from the cache (``train --init PIPE --cache``), which must give the same losses.

It prints seconds per step, the ratio, and after how many runs over the clips the cache has paid for itself
(measured here: one to three runs, fewer the more windows are encoded at a time).
Without ``--data`` it writes random clips at the pipeline's recorded frame size (encoding cost does not depend on
what the frames show)::

    .venv/bin/python benchmarks/train_cache.py                     # tiny-sim, 16 random clips, 4 steps of batch 4
    .venv/bin/python benchmarks/train_cache.py --data outputs/tiny_sim/data/train_mix --clips 64 --steps 8 \\
        --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _random_clips(root: Path, n: int, frames: int, size: int) -> Path:
    from embodiments.clip import write_clip
    from embodiments.sparse import SparseJoints

    K = np.array([[size, 0.0, size / 2], [0.0, size, size / 2], [0.0, 0.0, 1.0]])
    for i in range(n):
        rng = np.random.default_rng(i)
        video = (rng.random((frames, size, size, 3)) * 255).astype(np.uint8)
        pos = rng.normal([0.0, 0.0, 0.5], 0.04, (frames, 42, 3))
        write_clip(root / f"c{i:03d}.h5", video, SparseJoints(pos, np.ones((frames, 42), bool), K=K, frame="camera",
                                                              fps=8.0), prompt=f"a hand grasps {i}")
    return root


def _subset(data: Path, n: int, root: Path) -> Path:
    """The first ``n`` clips of ``data`` (sorted, as the trainer finds them) as symlinks in ``root``."""
    from embodiments.clip import find_clips

    paths = find_clips(data)[:n]
    if len(paths) < n:
        raise SystemExit(f"--data {data}: {len(paths)} clips, --clips asks for {n}")
    root.mkdir(parents=True)
    for i, p in enumerate(paths):
        (root / f"{i:06d}_{p.name}").symlink_to(p.resolve())
    return root


def _timed_run(cfg) -> tuple[float, list[float]]:
    from worldmodel.training.trainer import Trainer

    trainer = Trainer(cfg)
    t0 = time.perf_counter()
    losses = trainer.train()
    return (time.perf_counter() - t0) / cfg.steps, losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--init", default="worldmodel/checkpoints/tiny-sim", help="saved pipeline to fine-tune")
    ap.add_argument("--data", default=None, help="folder of clips (default: random clips at the pipeline's size)")
    ap.add_argument("--clips", type=int, default=16, help="clips to use (default 16)")
    ap.add_argument("--steps", type=int, default=4, help="timed steps, all in the first epoch (default 4)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the library's default)")
    args = ap.parse_args()
    if args.steps * args.batch_size > args.clips:
        raise SystemExit(f"--steps × --batch-size ({args.steps * args.batch_size}) must not exceed --clips "
                         f"({args.clips}): every timed step has to draw windows not encoded yet")
    if args.threads:
        torch.set_num_threads(args.threads)
    from dexworld.progress import quiet_library_progress
    from worldmodel.training.cache import build_cache
    from worldmodel.training.trainer import TrainConfig, start_from_pipeline
    from worldmodel.wan.pipeline import HandControlPipeline

    quiet_library_progress()
    d = HandControlPipeline.from_pretrained(args.init).defaults
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = (_subset(Path(args.data), args.clips, tmp / "clips") if args.data
                else _random_clips(tmp / "clips", args.clips, d.num_frames, d.height))
        common = dict(preset="tiny-sim", init=args.init, steps=args.steps, batch_size=args.batch_size,
                      checkpoint_every=0, sample_every=0, progress=False, lr_lora_schedule="cosine")
        raw, raw_losses = _timed_run(TrainConfig(**common, data=str(data), out=str(tmp / "raw")))
        components = start_from_pipeline(TrainConfig(**common, data=str(data), out=str(tmp / "enc_run")))[0]
        build = {}
        for b in sorted({1, args.batch_size}):
            t0 = time.perf_counter()
            build_cache(components, data, tmp / f"cache{b}", progress=False, batch_size=b)
            build[b] = time.perf_counter() - t0
        cached, cached_losses = _timed_run(TrainConfig(**common, cache=str(tmp / f"cache{args.batch_size}"),
                                                       out=str(tmp / "cached")))
    same = bool(np.allclose(raw_losses, cached_losses, rtol=1e-5, atol=1e-7))
    saved_per_clip = (raw - cached) / args.batch_size
    print(json.dumps({"init": args.init, "clips": args.clips, "batch_size": args.batch_size, "steps": args.steps,
                      "threads": torch.get_num_threads(), "same_losses": same}))
    print(f"first-epoch step from the clips (baseline): {raw:.2f} s; from the cache: {cached:.2f} s; "
          f"ratio {cached / raw:.2f}")
    for b, t in build.items():
        per_clip = t / args.clips
        print(f"building the cache {b} window(s) at a time: {per_clip:.2f} s per clip (ratio to one at a time "
              f"{t / build[1]:.2f}); a run from it saves {saved_per_clip:.2f} s per clip in its first epoch, so it "
              f"has paid for itself after {per_clip / max(saved_per_clip, 1e-9):.1f} runs")
    if not same:
        raise SystemExit("the cached run's losses differ from the baseline's")


if __name__ == "__main__":
    main()
