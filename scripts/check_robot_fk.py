"""Check the built-in robot hands against the official URDFs: fingertip and link positions over random poses.

Usage: ``python scripts/check_robot_fk.py /path/to/reference/robots [--n 1000] [--fixtures]``

The reference folder holds Unitree's files (``unitree_dex3/unitree_dex3_{left,right}.urdf`` and
``inspire_unitree/inspire_hand_{left,right}.urdf``). For each hand this prints the largest fingertip error and
the largest error over every link both models share, in the root frame of our model. ``--fixtures`` also prints
5 fixed configurations per hand with the official fingertip positions (0.1 mm), the figures in
``tests/test_robot_hands.py``. Not run by the tests (they must not read the reference files).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pinocchio as pin

import embodiments

OFFICIAL = {
    "dex3_left": ("unitree_dex3/unitree_dex3_left.urdf", {"thumb": "thumb_tip", "index": "index_tip",
                                                         "middle": "middle_tip"}),
    "dex3_right": ("unitree_dex3/unitree_dex3_right.urdf", {"thumb": "thumb_tip", "index": "index_tip",
                                                           "middle": "middle_tip"}),
    "inspire_left": ("inspire_unitree/inspire_hand_left.urdf", {f: f"L_{f}_tip" for f in
                                                                ("thumb", "index", "middle", "ring", "pinky")}),
    "inspire_right": ("inspire_unitree/inspire_hand_right.urdf", {f: f"R_{f}_tip" for f in
                                                                  ("thumb", "index", "middle", "ring", "pinky")}),
}
FIXTURE_SEED = 20240601


def official_frames(model: pin.Model, joint_names: list[str], q: np.ndarray, root: str,
                    frames: list[str]) -> np.ndarray:
    """Positions (N, F, 3) of official frames in the official model's ``root`` link frame."""
    data = model.createData()
    order = [model.names[i] for i in range(1, model.njoints) if model.joints[i].nq == 1]
    idx = {n: model.joints[model.getJointId(n)].idx_q for n in order}
    rid = model.getFrameId(root)
    fids = [model.getFrameId(f) for f in frames]
    out = np.empty((len(q), len(frames), 3))
    for i, qi in enumerate(q):
        qp = np.zeros(model.nq)
        for k, n in enumerate(joint_names):
            qp[idx[n]] = qi[k]
        pin.framesForwardKinematics(model, data, qp)
        inv_root = data.oMf[rid].inverse()
        for k, f in enumerate(fids):
            out[i, k] = (inv_root * data.oMf[f]).translation
    return out


def tip_frames(hand: embodiments.Embodiment) -> dict[str, str]:
    return {f: hand.slot_frames[f"{hand.side}_{f}_tip"] for f in ("thumb", "index", "middle", "ring", "pinky")
            if f"{hand.side}_{f}_tip" in hand.slot_frames}


def fixture_configs(hand: embodiments.Embodiment) -> np.ndarray:
    """5 configurations: lower limits, upper limits, mid-range, and two random ones (fixed seed)."""
    rng = np.random.default_rng(FIXTURE_SEED)
    lo, hi = hand.lower, hand.upper
    return np.stack([lo, hi, (lo + hi) / 2, rng.uniform(lo, hi), rng.uniform(lo, hi)]).round(4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("reference", type=Path, help="folder with unitree_dex3/ and inspire_unitree/")
    ap.add_argument("--n", type=int, default=1000, help="random configurations per hand")
    ap.add_argument("--fixtures", action="store_true", help="print the fixed test configurations")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    for name, (rel, tips) in OFFICIAL.items():
        hand = embodiments.get(name)
        model = pin.buildModelFromUrdf(str(args.reference / rel), mimic=True)
        ours = hand.kinematics.model
        lim_err = max(abs(model.lowerPositionLimit[model.joints[model.getJointId(n)].idx_q] - hand.lower[k])
                      + abs(model.upperPositionLimit[model.joints[model.getJointId(n)].idx_q] - hand.upper[k])
                      for k, n in enumerate(hand.joint_names))
        q = rng.uniform(hand.lower, hand.upper, size=(args.n, hand.dof))
        our_tips = tip_frames(hand)
        ref = official_frames(model, list(hand.joint_names), q, hand.root_link, [tips[f] for f in our_tips])
        got = hand.frame_positions(q, list(our_tips.values()))
        tip_err = np.linalg.norm(ref - got, axis=-1).max()
        shared = [f.name for f in ours.frames if f.type == pin.BODY and model.existFrame(f.name)
                  and model.frames[model.getFrameId(f.name)].type == pin.BODY]
        ref_l = official_frames(model, list(hand.joint_names), q, hand.root_link, shared)
        link_err = np.linalg.norm(ref_l - hand.frame_positions(q, shared), axis=-1).max()
        print(f"{name}: {args.n} configs, max fingertip error {tip_err * 1e3:.2e} mm, max error over "
              f"{len(shared)} shared links {link_err * 1e3:.2e} mm, joint-limit mismatch {lim_err:.1e} rad")
        if args.fixtures:
            qf = fixture_configs(hand)
            pf = official_frames(model, list(hand.joint_names), qf, hand.root_link, [tips[f] for f in our_tips])
            print(f"    {name!r}: (")
            print(f"        {tuple(our_tips)!r},")
            print(f"        {qf.tolist()!r},")
            print(f"        {np.round(pf * 1e3, 1).tolist()!r},  # mm")
            print("    ),")


if __name__ == "__main__":
    main()
