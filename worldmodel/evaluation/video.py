"""Saving videos (mp4 via imageio-ffmpeg, gif), side-by-side composition and joint overlays (pure numpy)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embodiments.io_utils import OutputError, atomic_path
from embodiments.layout import NUM_HAND_JOINTS, NUM_SLOTS, skeleton_edges


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
    with atomic_path(path, check=lambda tmp: _check_readable(tmp, path)) as tmp:
        try:
            if suffix == ".mp4":
                # macro_block_size=1 keeps small (e.g. 64×64) frames unpadded.
                with imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1,
                                        ffmpeg_log_level="error") as w:
                    for f in frames:
                        w.append_data(f)
            else:
                imageio.mimsave(tmp, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
        except (OSError, RuntimeError) as e:  # ffmpeg's pipe broke or it failed (disk full, …)
            raise OutputError.of(path, e) from None
    return path


def _check_readable(tmp: Path, path: Path) -> None:
    """The written video opens and holds a frame (ffmpeg can fail on a full disk without an error reaching us)."""
    import imageio.v3 as iio

    try:
        iio.imread(tmp, index=0, extension=path.suffix.lower())
    except Exception as e:  # noqa: BLE001 - any decoder failure means the file is not a complete video
        raise OutputError.of(path, f"the written video cannot be read back ({type(e).__name__})") from None


def side_by_side(*videos, gap: int = 2, titles: Sequence[str] | None = None) -> np.ndarray:
    """Concatenate (T, H, W, 3) videos horizontally (same T and H) with a white gap.

    ``titles`` (one per video) adds a white band above the panels with each title centred over its panel
    (:func:`title_band`); the panels themselves are unchanged below it.
    """
    vids = [to_uint8(v) for v in videos]
    T, H = vids[0].shape[:2]
    if any(v.shape[:2] != (T, H) for v in vids):
        raise ValueError(f"videos must share frame count and height, got {[v.shape for v in vids]}")
    sep = np.full((T, H, gap, 3), 255, np.uint8)
    parts = []
    for i, v in enumerate(vids):
        parts += [sep, v] if i else [v]
    out = np.concatenate(parts, axis=2)
    if titles is None:
        return out
    if len(titles) != len(vids):
        raise ValueError(f"titles: one per video ({len(vids)}), got {len(titles)}")
    band = title_band(list(titles), [v.shape[2] for v in vids], gap)
    return np.concatenate([np.broadcast_to(band, (T, *band.shape)), out], axis=1)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font
    except (TypeError, ValueError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit_title(text: str, width: int, sizes=(11, 10, 9, 8)) -> tuple[object, list[str]]:
    """The largest font (of ``sizes``) at which ``text`` fits ``width`` px on one line, else two lines."""
    for size in sizes:
        font = _font(size)
        if font.getlength(text) <= width:
            return font, [text]
    font, words = _font(sizes[-1]), text.split()
    for k in range(len(words) - 1, 0, -1):  # break as late as the first line still fits
        first, second = " ".join(words[:k]), " ".join(words[k:])
        if font.getlength(first) <= width:
            return font, [first, second]
    return font, [text]


def title_band(titles: list[str], widths: list[int], gap: int = 2, colour=(30, 30, 30)) -> np.ndarray:
    """A white (Hb, sum(widths) + gaps, 3) uint8 band with each title centred above its panel (PIL text).

    Each title gets the largest font that fits its panel's width (two lines if even the smallest does not); the
    band is as tall as the tallest title plus a 2 px margin above and below.
    """
    from PIL import Image, ImageDraw

    fitted = [_fit_title(t, max(w - 2, 1)) for t, w in zip(titles, widths, strict=True)]
    line_h = [max(f.getbbox("Ag")[3], 1) + 1 for f, _ in fitted]
    height = max(h * len(lines) for h, (_, lines) in zip(line_h, fitted, strict=True)) + 4
    total = sum(widths) + gap * (len(widths) - 1)
    img = Image.new("RGB", (total, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    x0 = 0
    for w, h, (font, lines) in zip(widths, line_h, fitted, strict=True):
        top = (height - h * len(lines)) // 2
        for k, line in enumerate(lines):
            x = x0 + (w - font.getlength(line)) / 2
            draw.text((x, top + k * h), line, fill=tuple(colour), font=font)
        x0 += w + gap
    return np.asarray(img, dtype=np.uint8)


# Left hand blue, right hand red; also the colours of ``dexworld dataset show`` and the demo panels.
HAND_COLOURS = np.array([[40, 120, 255], [255, 60, 40]], np.uint8)


def _stamp(frames: np.ndarray, t: np.ndarray, uv: np.ndarray, colours: np.ndarray, r: float) -> None:
    """Paint discs of radius ``r`` px centred at ``uv`` (P, 2) on frames ``t`` (P,), in place.

    Pixel (x, y) covers [x, x+1) × [y, y+1) (centre at x + 0.5, the convention of ``intrinsics_from_fovy``'s
    cx = W/2); a pixel is painted if its centre lies within ``r`` of the point, and the pixel the point falls in
    is always painted, so even a thin disc leaves a mark. Pixels outside the image are dropped.
    """
    if not len(t):
        return
    H, W = frames.shape[1:3]
    R = int(np.floor(r + 0.5))  # farthest pixel offset (from the containing pixel) whose centre can lie within r
    d = np.arange(-R, R + 1)
    dy, dx = (a.ravel() for a in np.meshgrid(d, d, indexing="ij"))
    base = np.floor(uv).astype(np.int64)
    x = base[:, :1] + dx  # (P, S)
    y = base[:, 1:] + dy
    keep = ((x + 0.5 - uv[:, :1]) ** 2 + (y + 0.5 - uv[:, 1:]) ** 2 <= r * r) | ((dx == 0) & (dy == 0))
    keep &= (x >= 0) & (x < W) & (y >= 0) & (y < H)
    p, s = np.nonzero(keep)
    frames[t[p], y[p, s], x[p, s]] = colours[p]


def _clip_segments(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Clip segments a→b (E, 2) to the box [lo, hi] (Liang–Barsky); returns the clipped ends and a kept mask.

    Keeps bone sampling bounded when a joint projects far outside the image (near the camera plane).
    """
    d = b - a
    t0, t1 = np.zeros(len(a)), np.ones(len(a))
    with np.errstate(divide="ignore", invalid="ignore"):
        for p, q in ((-d, a - lo), (d, hi - a)):  # -d·t <= a - lo and d·t <= hi - a, per axis
            for k in range(2):
                ratio = q[:, k] / p[:, k]
                parallel = p[:, k] == 0
                t0 = np.where(~parallel & (p[:, k] < 0), np.maximum(t0, ratio), t0)
                t1 = np.where(~parallel & (p[:, k] > 0), np.minimum(t1, ratio), t1)
                t1 = np.where(parallel & (q[:, k] < 0), -1.0, t1)  # parallel to and outside this edge
    keep = t0 <= t1
    return a + t0[:, None] * d, a + t1[:, None] * d, keep


def draw_joints(frames, uv: np.ndarray, valid: np.ndarray, radius: float = 1.5, bones: bool = True) -> np.ndarray:
    """Copy of ``frames`` (T, H, W, 3) (uint8, or float in [0, 1]) as uint8 with the hand joints drawn on it.

    ``uv`` (T, 42, 2) are pixel coordinates (e.g. ``SparseJoints.project()[0][..., :2]``), ``valid`` (T, 42) which
    joints to draw: invalid or non-finite joints are skipped, and so are bones touching them; parts outside the
    image are clipped. Joints are discs of ``radius`` px in their hand's colour (``HAND_COLOURS``: left blue, right
    red) drawn over the bones (parent→child, half the radius, same colour). All frames are drawn at once.
    """
    out = to_uint8(frames).copy()
    T, H, W = out.shape[:3]
    uv = np.asarray(uv, np.float64)
    valid = np.asarray(valid)
    if uv.shape != (T, NUM_SLOTS, 2):
        raise ValueError(f"uv must have shape (T, {NUM_SLOTS}, 2) = ({T}, {NUM_SLOTS}, 2) for {T} frames, "
                         f"got {uv.shape}")
    if valid.shape != (T, NUM_SLOTS):
        raise ValueError(f"valid must have shape (T, {NUM_SLOTS}) = ({T}, {NUM_SLOTS}), got {valid.shape}")
    if not radius > 0:
        raise ValueError(f"radius must be a positive number of pixels, got {radius}")
    ok = valid.astype(bool) & np.isfinite(uv).all(-1)
    colours = HAND_COLOURS[(np.arange(NUM_SLOTS) >= NUM_HAND_JOINTS).astype(int)]
    if bones:
        edges = np.array(skeleton_edges())
        ta, ea = np.nonzero(ok[:, edges[:, 0]] & ok[:, edges[:, 1]])
        margin = radius + 1.0
        a, b, keep = _clip_segments(uv[ta, edges[ea, 0]], uv[ta, edges[ea, 1]], np.array([-margin, -margin]),
                                    np.array([W + margin, H + margin]))
        ta, ea, a, b = ta[keep], ea[keep], a[keep], b[keep]
        # Samples at most 1 px apart, so consecutive marks touch and a bone is a connected line.
        n = np.ceil(np.linalg.norm(b - a, axis=-1)).astype(np.int64) + 1
        seg = np.repeat(np.arange(len(n)), n)
        k = np.arange(len(seg)) - np.repeat(np.cumsum(n) - n, n)
        s = (k / np.maximum(n[seg] - 1, 1))[:, None]
        _stamp(out, ta[seg], (1 - s) * a[seg] + s * b[seg], colours[edges[ea[seg], 1]], 0.5 * radius)
    t, j = np.nonzero(ok)
    _stamp(out, t, uv[t, j], colours[j], radius)
    return out
