"""Two hands in one scene against the baseline of one hand: rollout frames/s at 128² (kinematic and physics).

A pair draws twice the hand geometry (colour and shadow passes), so on the CPU renderer it should cost well under
2× a single hand per frame. Usage: MUJOCO_GL=egl .venv/bin/python benchmarks/bimanual_render.py [--frames 48]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _sim_helpers import pair_motion  # noqa: E402

from sim_bridge.render import FrameRenderer  # noqa: E402
from sim_bridge.rollout import rollout  # noqa: E402
from sim_bridge.scene import SceneConfig, build_scene  # noqa: E402

CASES = {"single (baseline)": (("inspire_right",), (0.05,)),
         "pair": (("inspire_left", "inspire_right"), (-0.08, 0.08))}


def frames_per_second(names, xs, frames: int, mode: str, repeats: int = 3) -> float:
    scene = build_scene(names, SceneConfig(), seed=0)
    q, wrist = pair_motion(names, frames, xs, turn=0.0)
    with FrameRenderer(scene.model, 128, 128) as renderer:
        rollout(names, {k: v[:2] for k, v in q.items()}, {k: v[:2] for k, v in wrist.items()}, scene=scene,
                renderer=renderer, mode=mode)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            rollout(names, q, wrist, scene=scene, renderer=renderer, mode=mode)
            best = min(best, time.perf_counter() - t0)
    return frames / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=48)
    args = ap.parse_args()
    for mode in ("kinematic", "physics"):
        fps = {label: frames_per_second(names, xs, args.frames, mode) for label, (names, xs) in CASES.items()}
        single, pair = fps["single (baseline)"], fps["pair"]
        print(f"{mode:>9} at 128x128, {args.frames} frames, best of 3: single inspire_right {single:.0f} frames/s, "
              f"pair inspire_left+inspire_right {pair:.0f} frames/s; pair costs {single / pair:.2f}x per frame")


if __name__ == "__main__":
    main()
