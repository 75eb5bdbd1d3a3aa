"""The 2D view: the reference image with the joints' projected trajectories and the current frame's skeleton.

Pure numpy + PIL (ImageDraw does the anti-aliased lines); the editor shows the result in its panel and textures
the image plane in the 3D view with it.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import PIL.ImageDraw

from embodiments.layout import NUM_HAND_JOINTS, skeleton_edges
from embodiments.sparse import SparseJoints

LEFT_RGB = (60, 130, 255)
RIGHT_RGB = (255, 80, 50)
SELECTED_RGB = (255, 210, 0)
ORIGINAL_RGB = (200, 200, 200)


def side_color(slot: int) -> tuple[int, int, int]:
    return LEFT_RGB if slot < NUM_HAND_JOINTS else RIGHT_RGB


def display_scale(width: int, min_width: int = 480) -> int:
    """Integer upscaling so a small reference image (e.g. 64 px) is drawn at a readable size."""
    return max(1, int(np.ceil(min_width / max(width, 1))))


def _polyline(draw: PIL.ImageDraw.ImageDraw, uv: np.ndarray, ok: np.ndarray, color, width: int) -> None:
    """Draw the runs of consecutive valid points of one trajectory uv (T, 2)."""
    run: list[tuple[float, float]] = []
    for p, good in zip(uv, ok, strict=True):
        if good:
            run.append((float(p[0]), float(p[1])))
        elif run:
            _flush(draw, run, color, width)
            run = []
    _flush(draw, run, color, width)


def _flush(draw, run, color, width) -> None:
    if len(run) >= 2:
        draw.line(run, fill=color, width=width, joint="curve")


def trajectory_overlay(image: np.ndarray, joints: SparseJoints, frame: int, selection=(),
                       original: SparseJoints | None = None, scale: int | None = None) -> np.ndarray:
    """(H·s, W·s, 3) uint8: ``image`` upscaled by ``s``; trajectories over all frames of the selected joints
    (yellow; the unedited ones in grey when ``original`` is given), and the skeleton of ``frame`` on top.

    Joints project with ``joints.K`` in the image's pixels; points behind the camera are skipped.
    """
    image = np.asarray(image)
    H, W = image.shape[:2]
    s = display_scale(W) if scale is None else int(scale)
    canvas = PIL.Image.fromarray(image).resize((W * s, H * s), PIL.Image.Resampling.NEAREST)
    draw = PIL.ImageDraw.Draw(canvas)
    lw = max(1, s // 2)
    uvd, ok = joints.project()
    uv = uvd[..., :2] * s
    if original is not None:
        uvd0, ok0 = original.project()
        for j in selection:
            _polyline(draw, uvd0[:, j, :2] * s, ok0[:, j], ORIGINAL_RGB, lw)
    for j in selection:
        _polyline(draw, uv[:, j], ok[:, j], SELECTED_RGB, lw + 1)
        # keyframe ticks along the trajectory, one per frame
        for t in np.flatnonzero(ok[:, j]):
            x, y = uv[t, j]
            draw.ellipse([x - lw, y - lw, x + lw, y + lw], fill=SELECTED_RGB)
    t = int(frame)
    for a, b in skeleton_edges():
        if ok[t, a] and ok[t, b]:
            draw.line([tuple(uv[t, a]), tuple(uv[t, b])], fill=side_color(b), width=lw + 1)
    r = lw + 2
    for j in np.flatnonzero(ok[t]):
        x, y = uv[t, j]
        fill = SELECTED_RGB if j in selection else side_color(j)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=(0, 0, 0))
    return np.asarray(canvas)
