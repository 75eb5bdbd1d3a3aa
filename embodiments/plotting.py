"""Three orthographic views of sparse hand joints (matplotlib, Agg): a quick look at a pose or a motion.

Bones follow :func:`embodiments.layout.skeleton_edges`; a slot a hand lacks is skipped and its valid children are
joined to their nearest valid ancestor, so robot hands with fewer joints still draw as connected fingers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .io_utils import atomic_path
from .layout import FINGERS, HAND_PARENTS, NUM_HAND_JOINTS, NUM_SLOTS, SIDES, side_offset

# (horizontal axis, vertical axis, title) of each view, axes as indices into (x, y, z).
VIEWS = ((0, 1, "front (x–y)"), (2, 1, "side (z–y)"), (0, 2, "top (x–z)"))
FINGER_COLORS = {"wrist": "#555555", "thumb": "#d62728", "index": "#ff7f0e", "middle": "#2ca02c",
                 "ring": "#1f77b4", "pinky": "#9467bd"}
_FINGER_OF = ("wrist",) + tuple(f for f in FINGERS for _ in range(4))


def visible_bones(valid: np.ndarray) -> list[tuple[int, int]]:
    """(parent, child) slot pairs to draw for validity (42,): each valid slot joins its nearest valid ancestor."""
    valid = np.asarray(valid, bool)
    if valid.shape != (NUM_SLOTS,):
        raise ValueError(f"valid must have shape ({NUM_SLOTS},), got {valid.shape}")
    bones = []
    for side in SIDES:
        o = side_offset(side)
        for child in range(1, NUM_HAND_JOINTS):
            if not valid[o + child]:
                continue
            parent = HAND_PARENTS[child]
            while parent >= 0 and not valid[o + parent]:
                parent = HAND_PARENTS[parent]
            if parent >= 0:
                bones.append((o + parent, o + child))
    return bones


def plot_sparse_joints(positions: np.ndarray, valid: np.ndarray | None = None, title: str = "",
                       frame: str = "hand_root", axis_labels: tuple[str, str, str] = ("x", "y", "z"),
                       trails: bool = True):
    """Figure with three orthographic views of joints (42, 3) or a motion (T, 42, 3).

    A motion is drawn as a few evenly spaced poses, fading from early (light) to the last frame (solid), with the
    fingertip paths as thin lines. ``valid`` is (42,) or (T, 42); default: all finite slots. Returns the Figure.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim == 2:
        pos = pos[None]
    if pos.ndim != 3 or pos.shape[1:] != (NUM_SLOTS, 3):
        raise ValueError(f"positions must have shape ({NUM_SLOTS}, 3) or (T, {NUM_SLOTS}, 3), got {pos.shape}")
    ok = np.isfinite(pos).all(-1) if valid is None else np.broadcast_to(np.asarray(valid, bool), pos.shape[:2])
    if not ok.any():
        raise ValueError("nothing to plot: no valid joints")
    T = pos.shape[0]
    shown = np.unique(np.linspace(0, T - 1, min(T, 5)).round().astype(int))
    pts = pos[ok]
    lo, hi = pts.min(0), pts.max(0)
    half = max(float((hi - lo).max()) / 2 * 1.15, 0.02)
    mid = (lo + hi) / 2

    fig = Figure(figsize=(12, 4.4), dpi=100, layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (h, v, name) in zip(axes, VIEWS, strict=True):
        for k, t in enumerate(shown):
            alpha = 1.0 if t == shown[-1] else 0.15 + 0.45 * k / max(len(shown) - 1, 1)
            last = t == shown[-1]
            for a, b in visible_bones(ok[t]):
                color = FINGER_COLORS[_FINGER_OF[b % NUM_HAND_JOINTS]]
                ax.plot(pos[t, [a, b], h], pos[t, [a, b], v], color=color, lw=2.4 if last else 1.2, alpha=alpha,
                        solid_capstyle="round")
            idx = np.flatnonzero(ok[t])
            colors = [FINGER_COLORS[_FINGER_OF[i % NUM_HAND_JOINTS]] for i in idx]
            ax.scatter(pos[t, idx, h], pos[t, idx, v], s=22 if last else 8, c=colors, alpha=alpha,
                       edgecolors="black" if last else "none", linewidths=0.5, zorder=3)
        if trails and T > 1:
            for side in SIDES:
                for tip in (4, 8, 12, 16, 20):
                    s = side_offset(side) + tip
                    m = ok[:, s]
                    if m.sum() > 1:
                        ax.plot(pos[m, s, h], pos[m, s, v], color=FINGER_COLORS[_FINGER_OF[tip]], lw=0.8,
                                ls=":", alpha=0.8)
        ax.set_xlim(mid[h] - half, mid[h] + half)
        ax.set_ylim(mid[v] - half, mid[v] + half)
        ax.set_aspect("equal")
        ax.set_xlabel(f"{axis_labels[h]} (m)")
        ax.set_ylabel(f"{axis_labels[v]} (m)")
        ax.set_title(name)
        ax.grid(True, lw=0.4, alpha=0.5)
    handles = [axes[0].plot([], [], color=c, lw=2.4, label=n)[0] for n, c in FINGER_COLORS.items()]
    fig.legend(handles=handles, loc="outside right center", frameon=False)
    suffix = f" — {T} frames" if T > 1 else ""
    fig.suptitle(f"{title}{suffix}  [frame: {frame}]" if title else f"[frame: {frame}]{suffix}")
    return fig


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write a Figure to ``path`` (PNG/PDF/SVG by suffix) atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".").lower() or "png")
    return path
