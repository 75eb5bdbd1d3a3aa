"""Export throughput: frames per second written to a LeRobot dataset (128×128 video, two Dex3 hands).

Baseline (same process, same episodes, same encoder): lerobot's API used directly — one ``create`` session,
``add_frame``/``save_episode`` per episode, one ``finalize`` — without dexworld's crash-safe staging and commits.
Prints both rates and the ratio dexworld / baseline (1.0 = no overhead).

    python benchmarks/export.py [--episodes 4] [--frames 32] [--commit-every 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from embodiments import registry  # noqa: E402
from embodiments.transforms import intrinsics, make_transform  # noqa: E402
from sim_bridge import lerobot_io as lio  # noqa: E402
from sim_bridge.hand_pose import hands_in_camera  # noqa: E402

HANDS = ("dex3_left", "dex3_right")


def episode(seed: int, T: int, size: int) -> lio.Episode:
    rng = np.random.default_rng(seed)
    q = {h: rng.uniform(registry.get(h).lower, registry.get(h).upper, (T, 7)) for h in HANDS}
    roots = {h: make_transform(np.eye(3), [(-0.1 + 0.2 * i), 0.0, 0.4]) for i, h in enumerate(HANDS)}
    K = intrinsics(size, size, size / 2, size / 2)
    joints = hands_in_camera(q, roots, K, fps=16)
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.stack([np.stack([(xx + 3 * t) % 256, (yy * 2) % 256, np.full_like(xx, (seed * 40 + t) % 256)], -1)
                       for t in range(T)]).astype(np.uint8)
    return lio.Episode(frames=frames, joints=joints, q=q, task="bench", source=f"b{seed}", T_cam_root=roots)


def baseline(eps: list[lio.Episode], root: Path) -> float:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    layout = lio.StateLayout(HANDS)
    H, W = eps[0].frames.shape[1:3]
    feats = lio.lerobot_features(HANDS, H, W)
    t0 = time.perf_counter()
    ds = LeRobotDataset.create("bench/base", fps=16, features=feats, root=root, video_backend="pyav",
                               rgb_encoder=lio.default_encoder())
    for ep in eps:
        state = layout.encode(ep.q)
        K = ep.joints.frame_K().astype(np.float32)
        pose = np.stack([np.broadcast_to(ep.T_cam_root[h], (len(ep.frames), 4, 4)) for h in HANDS], 1)
        for t in range(len(ep.frames)):
            ds.add_frame({"observation.images.ego": ep.frames[t], "observation.state": state[t],
                          "action": state[t], lio.FEATURE_JOINTS: ep.joints.positions[t],
                          lio.FEATURE_VALID: ep.joints.valid[t], lio.FEATURE_K: K[t],
                          lio.FEATURE_ROOT: pose[t].astype(np.float32), "task": ep.task})
        ds.save_episode()
    ds.finalize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--commit-every", type=int, default=1)
    args = ap.parse_args()
    eps = [episode(s, args.frames, args.size) for s in range(args.episodes)]
    n = args.episodes * args.frames
    with tempfile.TemporaryDirectory() as tmp:
        lio.export_lerobot(eps[:1], "bench/warm", Path(tmp) / "warm")  # imports and encoder start-up
        t_base = baseline(eps, Path(tmp) / "base")
        t0 = time.perf_counter()
        lio.export_lerobot(eps, "bench/ours", Path(tmp) / "ours", commit_every=args.commit_every)
        t_ours = time.perf_counter() - t0
    print(f"{args.episodes} episodes × {args.frames} frames of {args.size}×{args.size}, commit every "
          f"{args.commit_every}")
    print(f"baseline (lerobot API, one session): {n / t_base:8.1f} frames/s")
    print(f"dexworld export_lerobot (crash-safe): {n / t_ours:8.1f} frames/s")
    print(f"ratio dexworld / baseline: {t_base / t_ours:.2f}")


if __name__ == "__main__":
    main()
