"""Saving videos (mp4 via imageio-ffmpeg, gif), side-by-side composition and joint overlays (pure numpy)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from embodiments.io_utils import atomic_path
from embodiments.layout import skeleton_edges


def to_uint8(frames) -> np.ndarray:
    """(T, H, W, 3) float in [0, 1] or uint8 → uint8."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3), got {frames.shape}")
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_video(path: str | os.PathLike, frames, fps: float = 16.0) -> Path:
    """Write ``.mp4`` (H.264 through imageio-ffmpeg) or ``.gif``, atomically."""
    import imageio.v2 as imageio

    path = Path(path)
    frames = to_uint8(frames)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ValueError(f"unknown video type {path.suffix!r}; use .mp4 or .gif")
    with atomic_path(path) as tmp:
        if suffix == ".mp4":
            # macro_block_size=1 keeps small (e.g. 64×64) frames unpadded.
            with imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1,
                                    ffmpeg_log_level="error") as w:
                for f in frames:
                    w.append_data(f)
        else:
            imageio.mimsave(tmp, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
    return path


def side_by_side(*videos, gap: int = 2) -> np.ndarray:
    """Concatenate (T, H, W, 3) videos horizontally (same T and H) with a white gap."""
    vids = [to_uint8(v) for v in videos]
    T, H = vids[0].shape[:2]
    if any(v.shape[:2] != (T, H) for v in vids):
        raise ValueError(f"videos must share frame count and height, got {[v.shape for v in vids]}")
    sep = np.full((T, H, gap, 3), 255, np.uint8)
    parts = []
    for i, v in enumerate(vids):
        parts += [sep, v] if i else [v]
    return np.concatenate(parts, axis=2)


def _disc(img: np.ndarray, u: float, v: float, r: float, color) -> None:
    H, W = img.shape[:2]
    y0, y1 = max(int(v - r), 0), min(int(v + r) + 1, H)
    x0, x1 = max(int(u - r), 0), min(int(u + r) + 1, W)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    m = (yy + 0.5 - v) ** 2 + (xx + 0.5 - u) ** 2 <= r * r
    img[y0:y1, x0:x1][m] = color


def draw_joints(frames, uv: np.ndarray, valid: np.ndarray, radius: float = 1.5) -> np.ndarray:
    """Overlay joints (T, N, 2) pixels and the hand skeleton on (T, H, W, 3) frames; invalid joints are skipped.

    Left hand in blue, right hand in red; bones are sampled as small discs along the segment.
    """
    out = to_uint8(frames).copy()
    uv, valid = np.asarray(uv, np.float64), np.asarray(valid, bool)
    colors = np.array([[40, 120, 255]] * 21 + [[255, 60, 40]] * 21, np.uint8)
    edges = skeleton_edges()
    for t in range(out.shape[0]):
        for a, b in edges:
            if valid[t, a] and valid[t, b]:
                n = int(np.ceil(np.linalg.norm(uv[t, b] - uv[t, a]))) + 1
                for s in np.linspace(0.0, 1.0, n):
                    p = (1 - s) * uv[t, a] + s * uv[t, b]
                    _disc(out[t], p[0], p[1], radius * 0.5, colors[b])
        for j in np.flatnonzero(valid[t]):
            _disc(out[t], uv[t, j, 0], uv[t, j, 1], radius, colors[j])
    return out
