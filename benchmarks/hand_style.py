"""Render cost of the detailed hand style against the simple one, same process, interleaved repeats.

Kinematic rollouts of a closing hand at 128² with one reused renderer (as synthesis renders), median of repeats.

    MUJOCO_GL=egl .venv/bin/python benchmarks/hand_style.py [--frames 48] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from embodiments import get  # noqa: E402
from sim_bridge import FrameRenderer, SceneConfig, build_scene, hand_axes, rollout, wrist_pose  # noqa: E402


def frames_per_second(name: str, style: str, frames: int, repeats: int, size: int = 128) -> list[float]:
    emb = get(name)
    ax = hand_axes(emb)
    scene = build_scene(emb, SceneConfig(hand_style=style), seed=0)
    s = np.linspace(0, 1, frames)[:, None]
    q = ax.open_q + s * (ax.closed_q - ax.open_q)
    w = np.repeat(wrist_pose(ax, [0.05, 0.14, 0.1])[None], frames, 0)
    out = []
    with FrameRenderer(scene.model, size, size) as fr:
        rollout(emb, q[:2], w[:2], scene=scene, renderer=fr)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            rollout(emb, q, w, scene=scene, renderer=fr)
            out.append(frames / (time.perf_counter() - t0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    for name in ("dex3_right", "inspire_right"):
        fps = {style: [] for style in ("simple", "detailed")}
        for _ in range(args.repeats):  # interleaved, so load on the machine hits both alike
            for style in fps:
                fps[style] += frames_per_second(name, style, args.frames, 1)
        simple, detailed = (float(np.median(fps[s])) for s in ("simple", "detailed"))
        print(f"{name}: simple {simple:.0f} frames/s, detailed {detailed:.0f} frames/s "
              f"(detailed costs {simple / detailed:.2f}x per frame)")


if __name__ == "__main__":
    main()
