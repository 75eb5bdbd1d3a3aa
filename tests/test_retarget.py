"""Retargeting: round trips, limits, open/grasp/pinch semantics, cross-embodiment, configs, bad input, CLI."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import embodiments
from embodiments import SparseJoints
from embodiments.motions import human_motion, human_motion_angles
from embodiments.transforms import make_transform, rotation_about
from retarget import HeldFramesWarning, Retargeter, available_pairs, load_pair_config, to_sparse_joints
from retarget.alignment import canonical_frames, rpy_deg_from_rotation
from retarget.config import config_path
from retarget.solver import lowpass

torch.set_num_threads(1)
ROBOTS = ("inspire_right", "dex3_right", "inspire_left", "dex3_left")
FLEX = {"inspire": ("index_proximal", "middle_proximal", "ring_proximal", "pinky_proximal"),
        "dex3": ("index_0", "index_1", "middle_0", "middle_1")}


@functools.cache
def retargeter(source: str, target: str, method: str, **kw) -> Retargeter:
    return Retargeter(source, target, method, **kw)


def finger_closure(hand: embodiments.Embodiment, q: np.ndarray, fingers=("index", "middle", "ring", "pinky")
                   ) -> np.ndarray:
    """Per finger-flexion joint, 0 at the open limit (the one at 0 rad) and 1 at the other limit."""
    idx = [i for i, n in enumerate(hand.joint_names)
           if any(f in n for f in FLEX[hand.name.split("_")[0]]) and any(f in n for f in fingers)]
    lo, hi = hand.lower[idx], hand.upper[idx]
    open_, closed = np.where(np.abs(lo) < np.abs(hi), lo, hi), np.where(np.abs(lo) < np.abs(hi), hi, lo)
    return (q[..., idx] - open_) / (closed - open_)


def tip_positions(hand, q, fingers=("thumb", "index", "middle")) -> np.ndarray:
    return hand.frame_positions(q, [hand.slot_frames[f"{hand.side}_{f}_tip"] for f in fingers])


def smooth_q(hand, T: int, seed: int) -> np.ndarray:
    """A smooth joint trajectory inside the limits: random keyframes, cosine-eased."""
    rng = np.random.default_rng(seed)
    keys = rng.uniform(hand.lower, hand.upper, (4, hand.dof))
    s = np.linspace(0, 3, T)
    i = np.minimum(s.astype(int), 2)
    w = (0.5 - 0.5 * np.cos(np.pi * (s - i)))[:, None]
    return (1 - w) * keys[i] + w * keys[i + 1]


# ------------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("robot", ["dex3_right", "inspire_right", "inspire_left"])
def test_round_trip_same_robot_recovers_fingertips(robot):
    hand = embodiments.get(robot)
    q = smooth_q(hand, 24, seed=3)
    pose = make_transform(rotation_about([0.3, -1.0, 0.5], 2.1), [0.05, -0.02, 0.45])
    sj = to_sparse_joints(robot, q, pose, frame="camera", K=np.diag([500.0, 500.0, 1.0]))
    assert sj.frame == "camera" and sj.embodiment == robot
    res = retargeter(robot, robot, "position").solve(sj)
    assert res.scale == 1.0 and not res.held.any()
    fingers = ("thumb", "index", "middle")
    err = np.linalg.norm(tip_positions(hand, res.q, fingers) - tip_positions(hand, q, fingers), axis=-1)
    assert err.max() < 2e-3, err.max()


def test_unordered_poses_with_seeds_recover_the_dex3_thumb():
    """Independent random poses (no temporal order to warm-start from): multi-start finds the right basin."""
    hand = embodiments.get("dex3_right")
    q = np.random.default_rng(0).uniform(hand.lower, hand.upper, (30, hand.dof))
    sj = to_sparse_joints(hand, q)
    res = Retargeter("dex3_right", "dex3_right", "vector", seeds=8, temporal_weight=0.0).solve(sj)
    err = np.linalg.norm(tip_positions(hand, res.q) - tip_positions(hand, q), axis=-1)
    assert err.max() < 1e-3, err.max()


def test_to_sparse_joints_places_the_hand_by_the_wrist_pose():
    hand = embodiments.get("inspire_right")
    q = smooth_q(hand, 5, seed=0)
    poses = np.stack([make_transform(rotation_about([0, 0, 1], a), [a, 0, 1]) for a in np.linspace(0, 1, 5)])
    sj = to_sparse_joints(hand, q, poses, frame="world")
    local, valid = hand.sparse_joints(q)
    expected = np.einsum("tij,tnj->tni", poses[:, :3, :3], local) + poses[:, None, :3, 3]
    assert np.allclose(sj.positions[:, valid], expected[:, valid], atol=1e-6)
    assert (sj.valid == valid).all()
    assert to_sparse_joints(hand, q[0]).frame == "hand_root"
    with pytest.raises(ValueError, match="wrist_pose"):
        to_sparse_joints(hand, q, np.eye(3))


# ------------------------------------------------------------------------------------------------ semantics
@pytest.mark.parametrize("robot", ROBOTS)
@pytest.mark.parametrize("method", ["position", "vector", "dexpilot"])
def test_open_hand_opens_and_power_grasp_closes(robot, method):
    side = robot.split("_")[1]
    hand = embodiments.get(robot)
    rt = retargeter(f"mano_{side}", robot, method)
    q_open = rt.retarget(human_motion("open", side, fps=30, frames=10))[-1]
    q_grasp = rt.retarget(human_motion("power_grasp", side, fps=30, frames=10))[-1]
    assert finger_closure(hand, q_open).max() < 0.1
    assert finger_closure(hand, q_grasp).mean() > 0.7
    assert finger_closure(hand, q_grasp).min() > 0.45


@pytest.mark.parametrize("robot", ["inspire_right", "dex3_right", "inspire_left", "dex3_left"])
def test_dexpilot_pinch_brings_thumb_and_index_together(robot):
    side = robot.split("_")[1]
    hand = embodiments.get(robot)
    q = retargeter(f"mano_{side}", robot, "dexpilot").retarget(human_motion("pinch", side, fps=30, frames=10))
    d = np.linalg.norm(np.diff(tip_positions(hand, q[-1], ("thumb", "index")), axis=0))
    assert d < 0.01, d
    # Without pinch weighting the same pose stays apart (the vector method does not close the gap).
    qv = retargeter(f"mano_{side}", robot, "vector").retarget(human_motion("pinch", side, fps=30, frames=10))
    assert np.linalg.norm(np.diff(tip_positions(hand, qv[-1], ("thumb", "index")), axis=0)) > d + 0.005


def _random_hand(draw_angles: np.ndarray, noise: np.ndarray, side: str) -> np.ndarray:
    hand = embodiments.get(f"mano_{side}")
    q = hand.lower + draw_angles * (hand.upper - hand.lower)
    pos, _ = hand.sparse_joints(q)
    o = 0 if side == "left" else 21
    return pos[:, o:o + 21] + noise


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), noise=st.floats(0.0, 0.02), target=st.sampled_from(ROBOTS),
       method=st.sampled_from(["position", "vector", "dexpilot"]))
def test_limits_never_violated(seed, noise, target, method):
    rng = np.random.default_rng(seed)
    side = target.split("_")[1]
    hand = _random_hand(rng.uniform(size=(4, 20)), rng.normal(scale=noise, size=(4, 21, 3)), side)
    q = retargeter(f"mano_{side}", target, method).retarget(hand)
    robot = embodiments.get(target)
    assert q.shape == (4, robot.dof) and np.isfinite(q).all()
    assert (q >= robot.lower).all() and (q <= robot.upper).all()


# ------------------------------------------------------------------------------------------------ cross-embodiment
@pytest.mark.parametrize(("src", "dst"), [("dex3_right", "inspire_right"), ("inspire_right", "dex3_right"),
                                          ("inspire_left", "dex3_left")])
def test_cross_robot_through_shared_space(src, dst):
    side = src.split("_")[1]
    s, d = embodiments.get(src), embodiments.get(dst)
    pose = make_transform(rotation_about([1, 1, 0], 0.7), [0, 0, 0.5])
    grasp = retargeter(f"mano_{side}", src, "vector").retarget(human_motion("power_grasp", side, fps=30, frames=8))
    opened = retargeter(f"mano_{side}", src, "vector").retarget(human_motion("open", side, fps=30, frames=8))
    rt = retargeter(src, dst, "vector")
    q_grasp = rt.retarget(to_sparse_joints(s, grasp, pose))
    q_open = rt.retarget(to_sparse_joints(s, opened, pose))
    # Fingers both hands have follow the source; a finger the source lacks (Dex3 has no ring/pinky) rests open.
    assert finger_closure(d, q_grasp[-1], ("index", "middle")).mean() > 0.6
    assert finger_closure(d, q_open[-1]).max() < 0.15
    if src.startswith("dex3"):
        assert finger_closure(d, q_grasp[-1], ("ring", "pinky")).max() < 0.05


def test_robot_to_human_and_back():
    inspire, human = embodiments.get("inspire_right"), embodiments.get("mano_right")
    q = smooth_q(inspire, 6, seed=5)
    q_h = retargeter("inspire_right", "mano_right", "position").retarget(to_sparse_joints(inspire, q))
    assert q_h.shape == (6, human.dof)
    assert (q_h >= human.lower).all() and (q_h <= human.upper).all()
    back = retargeter("mano_right", "inspire_right", "position", scale=1.0 / retargeter(
        "inspire_right", "mano_right", "position").solve(to_sparse_joints(inspire, q)).scale)
    q2 = back.retarget(to_sparse_joints(human, q_h))
    # Inspire → human → Inspire keeps the finger flexion within a small margin.
    assert np.abs(q2[:, 2:] - q[:, 2:]).mean() < 0.15


# ------------------------------------------------------------------------------------------------ frames, configs
def test_alignment_is_frame_independent():
    motion = human_motion("wave", "right", fps=30, frames=8)
    moved = motion.transform(make_transform(rotation_about([0.2, 1, -0.4], 2.5), [0.3, 0.1, 0.6]), "camera")
    rt = retargeter("mano_right", "inspire_right", "vector", dtype=torch.float64)
    assert np.allclose(rt.retarget(motion), rt.retarget(moved), atol=1e-5)


def test_canonical_frame_is_a_rotation_and_mirrors():
    hand, _ = embodiments.get("mano_right").sparse_joints(human_motion_angles("random", frames=5, seed=1))
    w, i, p = hand[:, 21], hand[:, 26], hand[:, 38]
    R, ok = canonical_frames(w, i, p, "right")
    assert ok.all() and np.allclose(R @ np.swapaxes(R, 1, 2), np.eye(3), atol=1e-9)
    assert np.allclose(np.linalg.det(R), 1.0)
    flip = np.array([-1.0, 1, 1])
    Rl, _ = canonical_frames(w * flip, i * flip, p * flip, "left")  # the mirrored left hand
    assert np.allclose(Rl[:, :, 0], R[:, :, 0] * flip)  # the distal axis is the mirror image
    assert np.allclose(np.linalg.det(Rl), 1.0)


def test_shipped_configs_load_and_rotations_match_the_robots():
    pairs = available_pairs()
    for pair in [("mano_right", "inspire_right"), ("mano_left", "inspire_left"), ("mano_right", "dex3_right"),
                 ("mano_left", "dex3_left")]:
        assert pair in pairs
        cfg = load_pair_config(config_path(*pair))
        stored = np.array(cfg["target_rotation_rpy_deg"])
        measured = rpy_deg_from_rotation(Retargeter(*pair, target_rotation_rpy_deg="auto").R_root_canon)
        assert np.abs((stored - measured + 180) % 360 - 180).max() < 1.0


def test_user_pair_config_as_mapping():
    cfg = {"source": "mano_right", "target": "dex3_right", "scale": 0.9,
           "methods": {"vector": {"pairs": [["wrist", "thumb_tip"], ["wrist", "index_tip"]]}}}
    rt = Retargeter("mano_right", "dex3_right", "vector", config=cfg)
    assert rt.terms.names == ["wrist->thumb_tip", "wrist->index_tip"]
    assert rt.solve(human_motion("open", "right", frames=3)).scale == 0.9


def test_pair_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: mano_right\nmethods: [a, b\n")
    with pytest.raises(ValueError, match="pair config .*bad.yaml is not valid YAML"):
        load_pair_config(bad)
    with pytest.raises(FileNotFoundError, match="no retargeting pair config at .*nowhere.yaml"):
        load_pair_config(tmp_path / "nowhere.yaml")
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="bad.yaml must be a mapping"):
        load_pair_config(bad)


def test_lowpass_and_chunks_stay_within_limits():
    motion = human_motion("random", "right", fps=30, frames=40, seed=2)
    robot = embodiments.get("inspire_right")
    q = retargeter("mano_right", "inspire_right", "vector").retarget(motion)
    q_lp = Retargeter("mano_right", "inspire_right", "vector", lowpass_hz=2.0).retarget(motion)
    assert (q_lp >= robot.lower).all() and (q_lp <= robot.upper).all()
    assert np.abs(np.diff(q_lp, 2, axis=0)).sum() < np.abs(np.diff(q, 2, axis=0)).sum()
    q_chunk = Retargeter("mano_right", "inspire_right", "vector", chunk_size=7).retarget(motion)
    assert np.abs(q_chunk - q).max() < 0.05
    with pytest.raises(ValueError, match="Nyquist"):
        lowpass(q, 30.0, 20.0, robot.lower, robot.upper)


# ------------------------------------------------------------------------------------------------ bad input
def test_missing_frames_hold_the_previous_solution():
    motion = human_motion("wave", "right", fps=30, frames=10)
    arr = motion.hand("right")[0].copy()
    arr[3] = np.nan  # a whole frame lost
    arr[6, 1:] = np.nan  # only the wrist left
    arr[0] = np.nan  # leading frame lost
    rt = retargeter("mano_right", "dex3_right", "vector")
    with pytest.warns(HeldFramesWarning, match=r"\[0, 3, 6\]"):
        q = rt.retarget(arr)
    res = rt.solve(arr)
    assert res.held.tolist() == [i in (0, 3, 6) for i in range(10)]
    assert np.array_equal(q[3], q[2]) and np.array_equal(q[6], q[5]) and np.array_equal(q[0], q[1])
    # A missing fingertip just drops its terms; the frame is still solved.
    arr2 = motion.hand("right")[0].copy()
    arr2[4, 8] = np.nan
    assert not rt.solve(arr2).held.any()
    with pytest.raises(ValueError, match="no frame"):
        rt.retarget(np.full((4, 21, 3), np.nan))


def test_bad_input_errors_name_the_problem():
    rt = retargeter("mano_right", "inspire_right", "vector")
    with pytest.raises(ValueError, match=r"\(T, 21, 3\)"):
        rt.retarget(np.zeros((5, 20, 3)))
    with pytest.raises(ValueError, match="unknown retargeting method 'ik'"):
        Retargeter("mano_right", "inspire_right", "ik")
    with pytest.raises(ValueError, match="unknown source hand.*'shadow_right'"):
        Retargeter("shadow_right", "inspire_right", "vector")
    with pytest.raises(ValueError, match="unknown Retargeter option 'tempral_weight'"):
        Retargeter("mano_right", "inspire_right", "vector", tempral_weight=1.0)
    with pytest.raises(ValueError, match="lacks the slot.*ring_tip"):
        Retargeter("mano_right", "dex3_right", "position",
                   config={"source": "mano_right", "target": "dex3_right",
                           "methods": {"position": {"keypoints": ["index_tip", "ring_tip"]}}})
    with pytest.raises(ValueError, match="unknown keypoint 'index_tipp'"):
        Retargeter("mano_right", "dex3_right", "vector",
                   config={"source": "mano_right", "target": "dex3_right",
                           "methods": {"vector": {"pairs": [["wrist", "index_tipp"]]}}})
    with pytest.raises(ValueError, match="for mano_left → dex3_left"):
        Retargeter("mano_right", "dex3_right", "vector", config=config_path("mano_left", "dex3_left"))
    left_only = human_motion("open", "left", frames=3)
    with pytest.raises(ValueError, match="no valid right-hand joints.*mano_left"):
        rt.retarget(left_only)
    with pytest.raises(ValueError, match="no valid right-hand joints"):
        rt.retarget(SparseJoints(np.zeros((2, 42, 3)), np.zeros((2, 42), bool)))
    with pytest.raises(ValueError, match="no frame .* enough valid source joints"):  # degenerate (all at 0)
        rt.retarget(SparseJoints(np.zeros((2, 42, 3))))


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_writes_npz_and_gif(tmp_path):
    import imageio.v2 as imageio

    from dexworld.cli import main

    src = tmp_path / "pinch.npz"
    human_motion("pinch", "right", fps=30, frames=5).save(src)
    out, gif = tmp_path / "out.npz", tmp_path / "out.gif"
    assert main(["retarget", str(src), "--to", "inspire_right", "--method", "vector", "-o", str(out),
                 "--plot", str(gif)]) == 0
    with np.load(out) as d:
        robot = embodiments.get("inspire_right")
        assert d["q"].shape == (5, robot.dof)
        assert list(d["joint_names"]) == list(robot.joint_names)
        assert (d["q"] >= robot.lower - 1e-6).all() and (d["q"] <= robot.upper + 1e-6).all()
    frames = imageio.mimread(gif)
    assert len(frames) == 5 and frames[0].ndim == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["retarget", str(src), "--to", "no_such_robot", "-o", str(out)]) == 1
