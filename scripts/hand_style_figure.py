"""Draw docs/hand_styles.png: both robot hands in the simple and the detailed hand style, open and half closed,
rendered at 128² from a head camera 25 cm away (shown at 2×), with labels.

    MUJOCO_GL=egl .venv/bin/python scripts/hand_style_figure.py [--out docs/hand_styles.png]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

import embodiments  # noqa: E402
from embodiments.io_utils import atomic_path  # noqa: E402
from embodiments.transforms import look_at  # noqa: E402
from sim_bridge import SceneConfig, build_scene, hand_axes, rollout, wrist_pose  # noqa: E402
from worldmodel.evaluation.video import title_band  # noqa: E402

HANDS = ("dex3_right", "inspire_right")
COLUMNS = ("simple, open", "simple, half closed", "detailed, open", "detailed, half closed")


def render(name: str, style: str, size: int = 128) -> list[np.ndarray]:
    """Open and half-closed frames of ``name`` in ``style``, palm turned towards a head camera above and behind."""
    emb = embodiments.get(name)
    ax = hand_axes(emb)
    scene = build_scene(emb, SceneConfig(randomize=False, hand_style=style, num_objects=(0, 0)), seed=0)
    palm = np.array([0.02, 0.14, 0.08])
    scene.set_camera_pose("ego", look_at(palm + [0.05, -0.17, 0.17], palm))
    q = np.stack([ax.open_q, ax.open_q + 0.55 * (ax.closed_q - ax.open_q)])
    w = np.repeat(wrist_pose(ax, palm, yaw=0.25, pitch=0.35, roll=1.0)[None], 2, 0)
    return list(rollout(emb, q, w, scene=scene, size=(size, size)).frames)


def figure(scale: int = 2, gap: int = 4) -> np.ndarray:
    rows = []
    for name in HANDS:
        cells = render(name, "simple") + render(name, "detailed")
        cells = [np.kron(c, np.ones((scale, scale, 1), np.uint8)) for c in cells]
        sep = np.full((cells[0].shape[0], gap, 3), 255, np.uint8)
        rows.append(np.concatenate([x for c in cells for x in (c, sep)][:-1], axis=1))
    W = rows[0].shape[1]
    side = 96
    band = title_band(list(COLUMNS), [128 * scale] * 4, gap)
    img = Image.new("RGB", (side + W, band.shape[0] + sum(r.shape[0] + gap for r in rows)), (255, 255, 255))
    img.paste(Image.fromarray(band), (side, 0))
    draw = ImageDraw.Draw(img)
    y = band.shape[0]
    for name, row in zip(HANDS, rows, strict=True):
        img.paste(Image.fromarray(row), (side, y))
        draw.text((6, y + row.shape[0] // 2 - 6), name, fill=(30, 30, 30))
        y += row.shape[0] + gap
    return np.asarray(img)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/hand_styles.png")
    args = ap.parse_args()
    with atomic_path(args.out) as tmp:
        Image.fromarray(figure()).save(tmp, format="PNG")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
