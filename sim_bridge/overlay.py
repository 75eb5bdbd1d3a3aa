"""Projected hand joints drawn over video frames (for checking datasets by eye: ``dexworld dataset show``)."""

from __future__ import annotations

import numpy as np

from embodiments.layout import NUM_HAND_JOINTS, skeleton_edges
from embodiments.sparse import SparseJoints

SIDE_COLOURS = np.array([[40, 120, 255], [255, 60, 40]], np.uint8)  # left blue, right red (as worldmodel.video)


def draw_joints(frames: np.ndarray, joints: SparseJoints, radius: int = 2, bones: bool = True) -> np.ndarray:
    """Copy of ``frames`` (T, H, W, 3) uint8 with the valid, in-front joints as dots and bones as lines.

    Drawn with numpy (dots as squares, lines as sampled points) so it needs nothing beyond the array.
    """
    frames = np.array(frames, dtype=np.uint8, copy=True)
    if len(joints) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(joints)} joint frames")
    T, H, W = frames.shape[:3]
    uvd, ok = joints.project()
    uv = np.where(ok[..., None], uvd[..., :2], -1e6)
    side = (np.arange(uv.shape[1]) >= NUM_HAND_JOINTS).astype(int)
    for t in range(T):
        if bones:
            for a, b in skeleton_edges():
                if ok[t, a] and ok[t, b]:
                    s = np.linspace(0.0, 1.0, 16)[:, None]
                    pts = np.rint((1 - s) * uv[t, a] + s * uv[t, b]).astype(int)
                    keep = (pts[:, 0] >= 0) & (pts[:, 0] < W) & (pts[:, 1] >= 0) & (pts[:, 1] < H)
                    frames[t, pts[keep, 1], pts[keep, 0]] = SIDE_COLOURS[side[a]] // 2 + 100
        for j in np.flatnonzero(ok[t]):
            u, v = np.rint(uv[t, j]).astype(int)
            if -radius <= u < W + radius and -radius <= v < H + radius:
                frames[t, max(v - radius, 0):v + radius + 1, max(u - radius, 0):u + radius + 1] = SIDE_COLOURS[side[j]]
    return frames
