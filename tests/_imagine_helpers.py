"""A tiny source LeRobot dataset for the ``imagine`` tests: Dex3 pair episodes at 32×32 (built with lerobot_io)."""

from __future__ import annotations

import numpy as np

from embodiments import registry
from embodiments.transforms import intrinsics, make_transform, rotation_about
from sim_bridge import lerobot_io as lio
from sim_bridge.hand_pose import hands_in_camera

HANDS = ("dex3_left", "dex3_right")
K = intrinsics(30.0, 30.0, 16.0, 16.0)
# the shipped models at 64², 5 frames, 2 steps: seconds per batch on one CPU core
FAST = ["--height", "64", "--width", "64", "--num-frames", "5", "--steps", "2", "--no-progress"]


def source_episode(seed: int, T: int = 5, size: int = 32) -> lio.Episode:
    """Random joint states in the limits, hands ~0.35 m in front of the camera, a smooth coloured image."""
    rng = np.random.default_rng(seed)
    q, roots = {}, {}
    for i, h in enumerate(HANDS):
        emb = registry.get(h)
        q[h] = rng.uniform(emb.lower, emb.upper, (T, emb.dof))
        R = rotation_about([0, 1, 0], 0.3 * i + rng.uniform(-0.2, 0.2)) @ rotation_about([1, 0, 0], -1.2)
        t = np.stack([np.full(T, -0.08 + 0.16 * i), np.linspace(0.02, 0.05, T), np.full(T, 0.35)], axis=1)
        roots[h] = make_transform(np.broadcast_to(R, (T, 3, 3)), t)
    joints = hands_in_camera(q, roots, K * size / 32 + np.diag([0, 0, 1 - size / 32]), fps=16)
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.stack([np.stack([(xx * 6 + 20 * t + 40 * seed) % 256, (yy * 6) % 256, np.full_like(xx, 40 * t + 30)],
                                -1) for t in range(T)]).astype(np.uint8)
    return lio.Episode(frames=frames, joints=joints, q=q, task=f"task {seed}", source=f"src{seed}",
                       T_cam_root=roots)


def make_source(root, n: int = 3, T: int = 5) -> None:
    lio.export_lerobot([source_episode(s, T) for s in range(n)], "local/src", root)
