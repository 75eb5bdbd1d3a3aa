"""Frames per second of ``Embodiment.sparse_joints`` for a 10 000-frame trajectory of each robot hand.

Baselines, run in the same process on the same trajectory:
  * ``pin loop``: the naive path, one ``pinocchio.framesForwardKinematics`` per frame, then reading the slot
    frames from ``data.oMf`` (what ``HandKinematics`` did before its batched evaluation);
  * ``mj loop``: MuJoCo's ``mj_kinematics`` per frame on the hand's MJCF (mimic joints set through their
    coupling), reading the slot bodies' ``xpos``.

Usage: ``python benchmarks/fk.py [--frames 10000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import time

import mujoco
import numpy as np
import pinocchio as pin

import embodiments
from embodiments.mjcf import mimic_joints

ROBOTS = ("dex3_left", "dex3_right", "inspire_left", "inspire_right")


def trajectory(hand: embodiments.Embodiment, frames: int, fps: float = 30.0) -> np.ndarray:
    """A smooth (frames, dof) joint trajectory sweeping each joint's range with its own frequency."""
    t = np.arange(frames)[:, None] / fps
    freq = 0.2 + 0.1 * np.arange(hand.dof)
    phase = np.linspace(0.0, np.pi, hand.dof)
    s = 0.5 + 0.5 * np.sin(2 * np.pi * freq * t + phase)
    return hand.lower + s * (hand.upper - hand.lower)


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def pin_loop(hand, q: np.ndarray) -> np.ndarray:
    model = pin.buildModelFromXML(hand.urdf_xml, mimic=True)
    data = model.createData()
    order = [model.joints[model.getJointId(n)].idx_q for n in hand.joint_names]
    fids = [model.getFrameId(f) for f in hand.slot_frames.values()]
    qp = np.zeros((len(q), model.nq))
    qp[:, order] = q

    def run():
        out = np.empty((len(q), len(fids), 3))
        for i, qi in enumerate(qp):
            pin.framesForwardKinematics(model, data, qi)
            for k, f in enumerate(fids):
                out[i, k] = data.oMf[f].translation
        return out

    return run


def mj_loop(hand, q: np.ndarray):
    model = mujoco.MjModel.from_xml_string(hand.mjcf_xml)
    data = mujoco.MjData(model)
    adr = [model.joint(n).qposadr[0] for n in hand.joint_names]
    qpos = np.zeros((len(q), model.nq))
    qpos[:, adr] = q
    for j, (master, mult, off) in mimic_joints(hand.urdf_xml).items():
        qpos[:, model.joint(j).qposadr[0]] = off + mult * q[:, hand.joint_names.index(master)]
    bodies = [model.body(f).id for f in hand.slot_frames.values()]

    def run():
        out = np.empty((len(q), len(bodies), 3))
        for i, qi in enumerate(qpos):
            data.qpos[:] = qi
            mujoco.mj_kinematics(model, data)
            out[i] = data.xpos[bodies]
        return out

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"sparse_joints over a {args.frames}-frame trajectory (best of {args.repeats}); frames per second")
    print(f"{'hand':<15}{'sparse_joints':>15}{'pin loop':>12}{'mj loop':>12}{'vs pin':>9}{'vs mj':>8}")
    for name in ROBOTS:
        hand = embodiments.get(name)
        q = trajectory(hand, args.frames)
        pos, valid = hand.sparse_joints(q, strict=True)
        base_pin, base_mj = pin_loop(hand, q), mj_loop(hand, q)
        # Same answer from all three paths before timing anything.
        np.testing.assert_allclose(pos[:, valid], base_pin(), atol=1e-9)
        np.testing.assert_allclose(pos[:, valid], base_mj(), atol=1e-6)
        t_ours = best_time(lambda h=hand, q=q: h.sparse_joints(q, strict=True), args.repeats)
        t_pin = best_time(base_pin, args.repeats)
        t_mj = best_time(base_mj, args.repeats)
        n = args.frames
        print(f"{name:<15}{n / t_ours:>15,.0f}{n / t_pin:>12,.0f}{n / t_mj:>12,.0f}"
              f"{t_pin / t_ours:>8.1f}x{t_mj / t_ours:>7.1f}x")


if __name__ == "__main__":
    main()
