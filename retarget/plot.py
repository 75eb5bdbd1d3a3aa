"""Animated comparison of source (aligned, scaled) and robot keypoints over time, written as a GIF."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from embodiments.io_utils import atomic_path
from embodiments.layout import FINGERS, NUM_HAND_JOINTS
from embodiments.plotting import FINGER_COLORS, visible_bones

_FINGER_OF = ("wrist",) + tuple(f for f in FINGERS for _ in range(4))


def retarget_gif(reference: np.ndarray, robot: np.ndarray, robot_valid: np.ndarray, path: str | os.PathLike,
                 fps: float = 10.0, max_frames: int = 48, titles: tuple[str, str] = ("source", "robot"),
                 held: np.ndarray | None = None) -> Path:
    """Side-by-side 3D views of reference keypoints (T, 42, 3) (NaN = missing) and robot keypoints (T, 42, 3)
    with validity (42,), both in the robot's root frame; at most ``max_frames`` evenly spaced frames."""
    import imageio.v2 as imageio
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    T = reference.shape[0]
    shown = np.unique(np.linspace(0, T - 1, min(T, max_frames)).round().astype(int))
    ref_valid = np.isfinite(reference).all(-1)
    pts = np.concatenate([reference[ref_valid], robot[:, robot_valid].reshape(-1, 3)])
    lo, hi = pts.min(0), pts.max(0)
    mid, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2 * 1.1, 0.02)
    frames = []
    for t in shown:
        fig = Figure(figsize=(8, 4), dpi=80)
        canvas = FigureCanvasAgg(fig)
        for k, (pos, ok, title) in enumerate(((reference[t], ref_valid[t], titles[0]),
                                              (robot[t], robot_valid, titles[1]))):
            ax = fig.add_subplot(1, 2, k + 1, projection="3d")
            for a, b in visible_bones(ok):
                ax.plot(*pos[[a, b]].T, color=FINGER_COLORS[_FINGER_OF[b % NUM_HAND_JOINTS]], lw=2)
            ax.scatter(*pos[ok].T, s=8, c="k")
            for i, lim in enumerate((ax.set_xlim, ax.set_ylim, ax.set_zlim)):
                lim(mid[i] - half, mid[i] + half)
            ax.set_box_aspect((1, 1, 1))
            ax.set_xticklabels([])
            ax.set_yticklabels([])
            ax.set_zticklabels([])
            held_note = " (held)" if (k == 1 and held is not None and held[t]) else ""
            ax.set_title(f"{title}{held_note}", fontsize=9)
        fig.suptitle(f"frame {t}/{T - 1}", fontsize=9)
        canvas.draw()
        frames.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    path = Path(path)
    with atomic_path(path) as tmp:
        imageio.mimsave(tmp, frames, format="GIF", duration=1.0 / fps, loop=0)
    return path
