"""Retargeting benchmark: our batched solver vs dex-retargeting (per-frame nlopt SLSQP).

Three comparisons (``--suite``):

* ``published``: tracked-like human motion (embodiments.tracked: three hand sizes, tracker noise, dropouts; in the
  25-joint WebXR / Vision Pro layout) retargeted to Inspire and Dex3 by our defaults
  (``Retargeter("webxr_right", robot, method).retarget(joints)``, as a user calls it) and by dex-retargeting with
  the configs Unitree publishes for these hands (vector and DexPilot; scaling 1.2 Inspire, 1.0 Dex3; low-pass 0.2).
  Prints the fingertip-shape error (pairwise fingertip distances after the best single scale, against the true
  joints) and ms per frame.
* ``threads``: ours with torch's default threads, with the machine as it is and while another process keeps one more
  core busy, against the solve forced onto torch's default threads (the library before it chose its threads) and
  against one torch thread set by the caller.
* ``same-problem``: the original comparison below.

A 600-frame human motion (wave, pinch, power grasp, point, random poses, joined smoothly; right hand, in a camera
frame) is retargeted to Inspire and Dex3 with the position, vector and DexPilot methods. For each, prints
ms per frame, the mean fingertip position error against the aligned, scaled human fingertips, the mean
thumb–finger distance error, and the speed ratio against dex-retargeting (when importable, run on OUR URDF
with the same keypoints, vector weights, alignment, scale and Huber delta; its low-pass filter off; its angles are
clipped to the limits before measuring, raw figures in brackets).

    PYTHONPATH=/tmp/dexret-pkgs .venv/bin/python benchmarks/retarget.py [--suite published threads same-problem]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This script is called retarget.py: keep its own folder off the path so `import retarget` finds the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402

import embodiments  # noqa: E402
from embodiments import SparseJoints  # noqa: E402
from embodiments.layout import HAND_JOINT_NAMES  # noqa: E402
from embodiments.motions import human_motion_angles  # noqa: E402
from embodiments.skeletons import WEBXR_TO_MANO, webxr_from_mano  # noqa: E402
from embodiments.tracked import tracked_motion  # noqa: E402
from embodiments.transforms import look_at  # noqa: E402
from retarget import Retargeter, cpu_threads  # noqa: E402
from retarget.metrics import fingertip_shape_error  # noqa: E402

ROBOTS = ("inspire_right", "dex3_right")
METHODS = ("position", "vector", "dexpilot")
SEGMENTS = (("wave", 0.25), ("pinch", 0.2), ("power_grasp", 0.2), ("point", 0.15), ("random", 0.2))


def synth_motion(frames: int = 600, fps: float = 30.0, side: str = "right") -> SparseJoints:
    """Named motions back to back, each blended into the next over 8 frames, seen from a camera."""
    parts, n_total = [], 0
    for k, (name, share) in enumerate(SEGMENTS):
        n = frames - n_total if k == len(SEGMENTS) - 1 else int(round(share * frames))
        q = human_motion_angles(name, side=side, fps=fps, frames=n, seed=3)
        if parts:
            blend = min(8, n)
            w = np.linspace(0, 1, blend + 1)[1:, None]
            q[:blend] = (1 - w) * parts[-1][-1] + w * q[:blend]
        parts.append(q)
        n_total += n
    q = np.concatenate(parts)
    hand = embodiments.get(f"mano_{side}")
    pos, valid = hand.sparse_joints(q, strict=False)
    T_cam_world = np.linalg.inv(look_at([0.0, -0.35, 0.25], [0.0, 0.08, 0.0]))
    sj = SparseJoints(pos, np.broadcast_to(valid, pos.shape[:2]), frame="hand_root", fps=fps, embodiment=hand.name)
    return sj.transform(T_cam_world, frame="camera")


def metrics(robot: embodiments.Embodiment, q: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Mean fingertip error (mm) and mean thumb–finger distance error (mm) against the reference (T, 42, 3)."""
    side = robot.side
    tips = [f for f in ("thumb", "index", "middle", "ring", "pinky") if f"{side}_{f}_tip" in robot.slot_frames]
    frames = [robot.slot_frames[f"{side}_{f}_tip"] for f in tips]
    slots = [embodiments.slot_index(f"{side}_{f}_tip") for f in tips]
    p = robot.frame_positions(q, frames)
    ref = reference[:, slots]
    tip_err = np.linalg.norm(p - ref, axis=-1).mean()
    d_robot = np.linalg.norm(p[:, 1:] - p[:, :1], axis=-1)
    d_ref = np.linalg.norm(ref[:, 1:] - ref[:, :1], axis=-1)
    return 1e3 * float(tip_err), 1e3 * float(np.abs(d_robot - d_ref).mean())


def dex_retargeting_run(rt: Retargeter, rel: np.ndarray, scale: float, urdf_dir: Path) -> tuple[np.ndarray, float]:
    """The same problem through dex-retargeting's SeqRetargeting, one frame at a time; returns q and seconds."""
    from dex_retargeting.retargeting_config import RetargetingConfig

    robot = rt.target
    urdf = urdf_dir / f"{robot.name}.urdf"
    urdf.write_text(robot.urdf_xml)
    side = robot.side
    frame = {k: robot.slot_frames[f"{side}_{k}"] for k in HAND_JOINT_NAMES if f"{side}_{k}" in robot.slot_frames}
    idx = {n: i for i, n in enumerate(HAND_JOINT_NAMES)}
    cfg = {"urdf_path": str(urdf), "target_joint_names": list(robot.joint_names), "low_pass_alpha": -1,
           "huber_delta": rt.options.huber_delta, "scaling_factor": scale}
    names = rt.terms.keypoints
    if rt.method == "position":
        kps = names[1:]
        cfg.update(type="position", target_link_names=[frame[k] for k in kps],
                   target_link_human_indices=np.array([idx[k] for k in kps]))
        ref = scale * rel[:, [idx[k] for k in kps]] + rt._target_wrist
    elif rt.method == "vector":
        # dex-retargeting has no per-vector weights; a vector listed n times weighs n in its mean Huber loss.
        copies = rt.terms.weights / rt.terms.weights[rt.terms.weights > 0].min()
        if not np.allclose(copies, copies.round()):
            raise ValueError("vector weights must be integer multiples of the smallest to compare with dex-retargeting")
        pairs = [n.split("->") for n, c in zip(rt.terms.names, copies.round().astype(int), strict=True)
                 for _ in range(c)]
        cfg.update(type="vector", target_origin_link_names=[frame[a] for a, _ in pairs],
                   target_task_link_names=[frame[b] for _, b in pairs],
                   target_link_human_indices=np.array([[idx[a] for a, _ in pairs], [idx[b] for _, b in pairs]]))
        ref = rel[:, [idx[b] for _, b in pairs]] - rel[:, [idx[a] for a, _ in pairs]]
    else:
        tips = [k for k in names if k.endswith("_tip")]
        cfg.update(type="dexpilot", wrist_link_name=frame["wrist"], finger_tip_link_names=[frame[k] for k in tips])
        link = ["wrist"] + tips
        n = len(tips)
        origin = [j for i in range(1, n) for j in range(i + 1, n + 1)] + [0] * n
        task = [i for i in range(1, n) for _ in range(i + 1, n + 1)] + list(range(1, n + 1))
        ref = rel[:, [idx[link[t]] for t in task]] - rel[:, [idx[link[o]] for o in origin]]
    seq = RetargetingConfig.from_dict(cfg).build()
    order = [seq.joint_names.index(j) for j in robot.joint_names]
    out = np.empty((len(ref), robot.dof))
    t0 = time.perf_counter()
    for t in range(len(ref)):
        out[t] = seq.retarget(ref[t])[order]
    return out, time.perf_counter() - t0


# Unitree's dex-retargeting configs for these hands (xr_teleoperate assets), human indices in the 25-joint WebXR /
# Vision Pro layout. Link names are Unitree's; "base_link_<finger>" (Dex3 vector origins) are taken as the finger's
# first link of our model, and Dex3's "base_link" as its palm link (our root).
PUBLISHED = {
    "inspire_right": {
        "scaling": 1.2,
        "vector": {"origin": ["wrist"] * 5, "task": ["thumb_tip", "index_tip", "middle_tip", "ring_tip", "pinky_tip"],
                   "human": [[0, 0, 0, 0, 0], [4, 9, 14, 19, 24]]},
        "dexpilot": {"tips": ["thumb_tip", "index_tip", "middle_tip", "ring_tip", "pinky_tip"],
                     "human": [[9, 14, 19, 24, 14, 19, 24, 19, 24, 24, 0, 0, 0, 0, 0],
                               [4, 4, 4, 4, 9, 9, 9, 14, 14, 19, 4, 9, 14, 19, 24]]},
    },
    "dex3_right": {
        "scaling": 1.0,
        "vector": {"origin": ["thumb_cmc", "index_mcp", "middle_mcp"],
                   "task": ["thumb_tip", "index_tip", "middle_tip"], "human": [[0, 0, 0], [4, 9, 14]]},
        "dexpilot": {"tips": ["thumb_tip", "index_tip", "middle_tip"],
                     "human": [[9, 14, 14, 0, 0, 0], [4, 4, 9, 4, 9, 14]]},
    },
}
LOW_PASS_ALPHA = 0.2
WEBXR_TO_MANO_INDEX = {w: m for m, w in enumerate(WEBXR_TO_MANO)}


def published_run(rt: Retargeter, rel: np.ndarray, ok: np.ndarray, urdf_dir: Path,
                  low_pass_alpha: float = LOW_PASS_ALPHA) -> tuple[np.ndarray, float]:
    """dex-retargeting with Unitree's published config for ``rt``'s target and method, one frame at a time, on the
    source joints ``rel`` (T, 21, 3) aligned into the robot's root frame (frames without a full input hold the last
    one, as a teleoperation loop would); returns q (T, dof) and seconds."""
    from dex_retargeting.retargeting_config import RetargetingConfig

    robot = rt.target
    pub = PUBLISHED[robot.name]
    method = pub[rt.method]
    urdf = urdf_dir / f"{robot.name}.urdf"
    urdf.write_text(robot.urdf_xml)
    link = {k.split("_", 1)[1]: f for k, f in robot.slot_frames.items()}
    cfg = {"urdf_path": str(urdf), "target_joint_names": list(robot.joint_names), "low_pass_alpha": low_pass_alpha,
           "scaling_factor": pub["scaling"]}
    if rt.method == "vector":
        cfg.update(type="vector", target_origin_link_names=[link[k] for k in method["origin"]],
                   target_task_link_names=[link[k] for k in method["task"]])
    else:
        cfg.update(type="dexpilot", wrist_link_name=link["wrist"],
                   finger_tip_link_names=[link[k] for k in method["tips"]])
    origin, task = ([WEBXR_TO_MANO_INDEX[i] for i in row] for row in method["human"])
    cfg["target_link_human_indices"] = np.array(method["human"])
    ref = rel[:, task] - rel[:, origin]
    seq = RetargetingConfig.from_dict(cfg).build()
    order = [seq.joint_names.index(j) for j in robot.joint_names]
    out = np.empty((len(ref), robot.dof))
    good = ok & np.isfinite(ref).all((-1, -2))
    last = ref[np.flatnonzero(good)[0]]
    t0 = time.perf_counter()
    for t in range(len(ref)):
        last = ref[t] if good[t] else last
        out[t] = seq.retarget(last)[order]
    return out, time.perf_counter() - t0


def tip_positions(robot: embodiments.Embodiment, q: np.ndarray) -> np.ndarray:
    side = robot.side
    tips = [f for f in ("thumb", "index", "middle", "ring", "pinky") if f"{side}_{f}_tip" in robot.slot_frames]
    return robot.frame_positions(np.clip(q, robot.lower, robot.upper), [robot.slot_frames[f"{side}_{f}_tip"]
                                                                        for f in tips])


def human_tips(robot: embodiments.Embodiment, clean: np.ndarray) -> np.ndarray:
    side = robot.side
    return clean[:, [HAND_JOINT_NAMES.index(f"{f}_tip") for f in ("thumb", "index", "middle", "ring", "pinky")
                     if f"{side}_{f}_tip" in robot.slot_frames]]


def suite_published(frames: int, subjects: int, have_dr: bool, low_pass_alpha: float = LOW_PASS_ALPHA) -> None:
    print(f"\n== our defaults vs dex-retargeting with Unitree's published configs (low_pass_alpha {low_pass_alpha}): "
          f"{subjects} tracked-like subjects x {frames} frames (WebXR layout, noise + dropouts), torch threads: "
          f"{torch.get_num_threads()} ==")
    print(f"{'robot':14s} {'method':9s} {'shape err mm ours':>18s} {'d-r':>7s} {'ms/frame ours':>14s} {'d-r':>7s} "
          f"{'speed-up':>9s}")
    motions = [tracked_motion(frames, "right", subject=k, seed=1) for k in range(subjects)]
    with tempfile.TemporaryDirectory() as tmp:
        for robot_name in PUBLISHED:
            robot = embodiments.get(robot_name)
            for method in ("vector", "dexpilot"):
                rt = Retargeter("webxr_right", robot_name, method)
                rt.retarget(webxr_from_mano(motions[0].tracked[:8]))  # warm-up
                errs, ms, errs_dr, ms_dr = [], [], [], []
                for m in motions:
                    joints = webxr_from_mano(m.tracked)
                    t0 = time.perf_counter()
                    with _quiet():
                        q = rt.retarget(joints)
                    ms.append(1e3 * (time.perf_counter() - t0) / len(q))
                    errs.append(fingertip_shape_error(tip_positions(robot, q), human_tips(robot, m.clean))[0])
                    if have_dr:
                        pos, valid, _ = rt._source_hand(joints)
                        rel, ok, _ = rt.reference(pos, valid, scale=1.0)
                        rel[~valid] = np.nan
                        q_dr, secs = published_run(rt, rel, ok, Path(tmp), low_pass_alpha)
                        ms_dr.append(1e3 * secs / len(q_dr))
                        errs_dr.append(fingertip_shape_error(tip_positions(robot, q_dr), human_tips(robot, m.clean))[0])
                line = f"{robot_name:14s} {method:9s} {1e3 * np.mean(errs):18.2f} "
                if have_dr:
                    line += (f"{1e3 * np.mean(errs_dr):7.2f} {np.mean(ms):14.3f} {np.mean(ms_dr):7.3f} "
                             f"{np.mean(ms_dr) / np.mean(ms):8.1f}x")
                    line += "   per subject ours/d-r: " + ", ".join(f"{1e3 * a:.2f}/{1e3 * b:.2f}"
                                                                  for a, b in zip(errs, errs_dr, strict=True))
                else:
                    line += f"{'-':>7s} {np.mean(ms):14.3f}"
                print(line, flush=True)


@contextlib.contextmanager
def _quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def busy_core():
    """Another process spinning on one core for the duration of the block."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        proc.kill()
        proc.wait()


def suite_threads(frames: int, repeats: int) -> None:
    default = torch.get_num_threads()
    print(f"\n== threads: Retargeter(...).retarget(...) on {frames} tracked-like frames, torch default threads = "
          f"{default} ==")
    joints = webxr_from_mano(tracked_motion(frames, "right", subject=1, seed=2).tracked)

    def time_it(rt: Retargeter) -> float:
        best = np.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            with _quiet():
                rt.retarget(joints)
            best = min(best, time.perf_counter() - t0)
        return 1e3 * best / frames

    print(f"{'robot':14s} {'method':9s} {'load':9s} {'ours (library)':>15s} {'default threads':>16s} "
          f"{'1 thread':>9s} {'vs default':>11s}")
    for robot_name in ("inspire_right", "dex3_right"):
        for method in ("vector", "dexpilot"):
            rt = Retargeter("webxr_right", robot_name, method)
            time_it(rt)
            for load in ("as is", "+1 busy"):
                with busy_core() if load == "+1 busy" else contextlib.nullcontext():
                    ours = time_it(rt)
                    saved = cpu_threads.SMALL_WORK
                    cpu_threads.SMALL_WORK = -1  # the library before: torch's default threads inside the solve
                    try:
                        spread = time_it(rt)
                    finally:
                        cpu_threads.SMALL_WORK = saved
                    torch.set_num_threads(1)
                    try:
                        one = time_it(rt)
                    finally:
                        torch.set_num_threads(default)
                print(f"{robot_name:14s} {method:9s} {load:9s} {ours:15.3f} {spread:16.3f} {one:9.3f} "
                      f"{spread / ours:10.1f}x", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of our solver; the fastest is reported")
    ap.add_argument("--dr-repeats", type=int, default=2, help="timed runs of dex-retargeting; the fastest is reported")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads for the same-problem suite (1: same as the per-frame baseline)")
    ap.add_argument("--suite", nargs="+", default=["published", "threads"],
                    choices=("published", "threads", "same-problem"))
    ap.add_argument("--subjects", type=int, default=3, help="tracked-like subjects (hand sizes) in 'published'")
    ap.add_argument("--low-pass-alpha", type=float, default=LOW_PASS_ALPHA,
                    help="dex-retargeting's output filter in 'published' (0.2 as published; -1: off)")
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="torch.set_num_threads for 'published' (default: torch's own, as a user runs it)")
    args = ap.parse_args(argv)
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    try:
        import dex_retargeting  # noqa: F401

        have_dr = True
    except ImportError:
        have_dr = False
        print("dex_retargeting not importable: showing our methods only (pip install --target /tmp/dexret-pkgs "
              "dex-retargeting==0.5.0 nlopt six anytree lxml pytransform3d, then PYTHONPATH=/tmp/dexret-pkgs)")
    if "published" in args.suite:
        suite_published(args.frames, args.subjects, have_dr, args.low_pass_alpha)
    if "threads" in args.suite:
        suite_threads(args.frames, args.repeats)
    if "same-problem" not in args.suite:
        return
    torch.set_num_threads(args.threads)
    motion = synth_motion(args.frames)
    T = len(motion)
    print(f"motion: {T} frames (wave, pinch, power grasp, point, random), torch threads: {args.threads}")
    header = f"{'robot':14s} {'method':9s} {'solver':16s} {'ms/frame':>9s} {'tip err mm':>11s} {'pinch err mm':>13s}"
    print(header + f" {'speed-up':>9s}")
    print("-" * (len(header) + 10))
    with tempfile.TemporaryDirectory() as tmp:
        for robot_name in ROBOTS:
            robot = embodiments.get(robot_name)
            for method in METHODS:
                rt = Retargeter("mano_right", robot_name, method)
                rt.solve(motion[:8])  # warm-up (allocations, imports)
                best = np.inf
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    res = rt.solve(motion)
                    best = min(best, time.perf_counter() - t0)
                ours_ms = 1e3 * best / T
                tip, pinch = metrics(robot, res.q, res.reference)
                line = f"{robot_name:14s} {method:9s} {'dexworld (batch)':16s} {ours_ms:9.3f} {tip:11.2f} {pinch:13.2f}"
                if not have_dr:
                    print(line)
                    continue
                pos, valid, _ = rt._source_hand(motion)
                rel, _, scale = rt.reference(pos, valid)
                runs = [dex_retargeting_run(rt, rel, res.scale, Path(tmp)) for _ in range(args.dr_repeats)]
                q_dr, secs = runs[0][0], min(t for _, t in runs)
                dr_ms = 1e3 * secs / T
                # dex-retargeting bounds its SLSQP by the limits ± 1e-3 rad; a controller clips, so we measure
                # clipped angles (ours never leave the limits). The raw figures follow in brackets.
                violation = float(np.max(np.maximum(robot.lower - q_dr, q_dr - robot.upper), initial=0.0))
                tip_dr, pinch_dr = metrics(robot, np.clip(q_dr, robot.lower, robot.upper), res.reference)
                tip_raw, pinch_raw = metrics(robot, q_dr, res.reference)
                print(line + f" {dr_ms / ours_ms:8.1f}x")
                print(f"{'':14s} {'':9s} {'dex-retargeting':16s} {dr_ms:9.3f} {tip_dr:11.2f} {pinch_dr:13.2f}"
                      f"   [raw {tip_raw:.2f} / {pinch_raw:.2f}, {violation:.1e} rad outside the limits]")


if __name__ == "__main__":
    main()
