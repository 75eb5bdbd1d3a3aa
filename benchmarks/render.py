"""Rendering and synthesis throughput of sim_bridge on CPU EGL, against a named baseline in the same process.

Baseline ``naive``: the straightforward loop that builds a ``mujoco.Renderer`` for every frame (GL context,
texture upload, buffers) and renders with MuJoCo's default 4× MSAA and 4096² shadow map.
Ours: ``sim_bridge.rollout`` (one renderer per rollout, no MSAA, 1024² shadows) and ``synthesize`` end to end
(scene reuse across episodes, FK, HDF5 writing).

    MUJOCO_GL=egl .venv/bin/python benchmarks/render.py [--embodiment dex3_right] [--frames 32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from embodiments import get  # noqa: E402
from sim_bridge.motion import hand_axes, smooth_random_q, wrist_pose  # noqa: E402
from sim_bridge.rollout import pose_to_qpos, rollout  # noqa: E402
from sim_bridge.scene import build_scene  # noqa: E402
from sim_bridge.synth import SynthConfig, synthesize  # noqa: E402


def naive_fps(scene, q, path, size, frames) -> float:
    """Per-frame Renderer, MuJoCo's default quality settings: what a first attempt looks like."""
    m = scene.model
    m.vis.quality.offsamples, m.vis.quality.shadowsize = 4, 4096
    data = mujoco.MjData(m)
    H, W = size
    t0 = time.perf_counter()
    for t in range(frames):
        data.qpos[scene.hand_free_qadr:scene.hand_free_qadr + 7] = pose_to_qpos(path[t])
        data.qpos[scene.hand_qadr] = q[t]
        scene.apply_mimic(data.qpos)
        mujoco.mj_forward(m, data)
        with mujoco.Renderer(m, H, W) as r:
            r.update_scene(data, camera="ego")
            r.render()
    dt = time.perf_counter() - t0
    m.vis.quality.offsamples, m.vis.quality.shadowsize = scene.config.msaa_samples, scene.config.shadow_size
    return frames / dt


def ours_fps(emb, scene, q, path, size) -> float:
    rollout(emb, q[:2], path[:2], scene=scene, size=size)  # warm-up (first GL context)
    t0 = time.perf_counter()
    r = rollout(emb, q, path, scene=scene, size=size)
    return len(r) / (time.perf_counter() - t0)


def synth_fps(name, size, episodes, frames) -> float:
    cfg = SynthConfig(frames=frames, size=size, motions=("reach_grasp", "random"))
    with tempfile.TemporaryDirectory() as d:
        rep = synthesize(name, d, episodes, seed=0, config=cfg, progress=False)
    return rep.fps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embodiment", default="dex3_right")
    ap.add_argument("--frames", type=int, default=32, help="frames per timed rollout")
    ap.add_argument("--baseline-frames", type=int, default=8, help="frames of the (slow) naive loop")
    ap.add_argument("--episodes", type=int, default=8, help="episodes of the synthesis run")
    args = ap.parse_args()
    emb = get(args.embodiment)
    ax = hand_axes(emb)
    rng = np.random.default_rng(0)
    T = args.frames
    q = smooth_random_q(emb, T, rng)
    path = np.stack([wrist_pose(ax, [0.05 * np.sin(t / 5), 0.14, 0.09]) for t in range(T)])
    scene = build_scene(emb, seed=0)
    print(f"{emb.name}, MuJoCo {mujoco.__version__}, MUJOCO_GL={os.environ['MUJOCO_GL']}, {os.cpu_count()} CPUs")
    print(f"{'size':>10} | {'naive fps':>9} | {'rollout fps':>11} | {'ratio':>6}")
    for size in ((128, 128), (480, 832)):
        base = naive_fps(scene, q, path, size, args.baseline_frames)
        ours = ours_fps(emb, scene, q, path, size)
        print(f"{size[0]:>4}x{size[1]:<5} | {base:9.2f} | {ours:11.2f} | {ours / base:5.1f}x")
    print("synthesis end to end (kinematic; scene build, FK, render, HDF5 write):")
    synth_fps(emb.name, (32, 32), 1, 2)  # warm-up: first imports of the clip writer (torch, h5py)
    for size in ((128, 128), (256, 256)):
        fps = synth_fps(emb.name, size, args.episodes, 17)
        print(f"{size[0]:>4}x{size[1]:<5} | {fps:7.1f} frames/s ({args.episodes} episodes × 17 frames)")


if __name__ == "__main__":
    main()
