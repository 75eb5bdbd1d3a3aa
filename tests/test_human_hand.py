"""The human hand skeleton: registry, frame conventions, mirror symmetry, bone lengths, limits, URDF validity."""

from __future__ import annotations

import warnings

import mujoco
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import embodiments
from embodiments.base import JointLimitWarning
from embodiments.human import FIGURES, JOINT_NAMES, LIMITS, HumanHand, human_hand_urdf
from embodiments.layout import FINGERS, HAND_JOINT_NAMES, NUM_HAND_JOINTS, hand_slots, slot_index
from embodiments.sparse import SparseJoints

RIGHT = embodiments.get("mano_right")
LEFT = embodiments.get("mano_left")


def _random_q(n, seed=0):
    return np.random.default_rng(seed).uniform(RIGHT.lower, RIGHT.upper, size=(n, RIGHT.dof))


def _as_sparse(pos, valid):
    return SparseJoints(pos, np.broadcast_to(valid, pos.shape[:2]), frame="hand_root", embodiment="mano_right")


def test_registry_has_both_human_hands():
    assert {"mano_left", "mano_right"} <= set(embodiments.names())
    for side, hand in (("left", LEFT), ("right", RIGHT)):
        assert isinstance(hand, HumanHand)
        assert hand.name == f"mano_{side}" and hand.side == side
        assert hand.dof == 20 and hand.joint_names == JOINT_NAMES
        mask = hand.slot_mask
        assert mask[list(hand_slots(side))].all() and mask.sum() == NUM_HAND_JOINTS
        assert hand.root_link == "wrist"
    assert {"index_mcp_flex", "index_mcp_abd", "index_pip_flex", "index_dip_flex", "thumb_cmc_flex",
            "thumb_cmc_abd", "thumb_mcp_flex", "thumb_ip_flex"} <= set(JOINT_NAMES)
    np.testing.assert_array_equal(RIGHT.lower, [LIMITS[n][0] for n in JOINT_NAMES])
    np.testing.assert_array_equal(RIGHT.upper, [LIMITS[n][1] for n in JOINT_NAMES])


def test_hand_root_axes_documented_convention():
    """Wrist at the origin, +y towards the middle MCP, thumb on +x (right) / −x (left), flexion towards +z."""
    pos, _ = RIGHT.sparse_joints(RIGHT.neutral())
    r = pos[slot_index("right_wrist"):][:NUM_HAND_JOINTS]
    np.testing.assert_allclose(r[0], 0.0, atol=1e-12)
    mid = r[HAND_JOINT_NAMES.index("middle_mcp")]
    assert mid[1] > 0.08 and abs(mid[0]) < 0.01 and abs(mid[2]) < 1e-9
    assert r[HAND_JOINT_NAMES.index("thumb_tip"), 0] > 0.05  # radial = +x for the right hand
    assert r[HAND_JOINT_NAMES.index("pinky_mcp"), 0] < -0.02
    lpos, _ = LEFT.sparse_joints(LEFT.neutral())
    assert lpos[slot_index("left_thumb_tip"), 0] < -0.05
    q = RIGHT.q_from_dict({"index_mcp_flex": 1.0})
    tip = RIGHT.sparse_joints(q)[0][slot_index("right_index_tip")]
    assert tip[2] > 0.04  # flexion curls towards the palm side (+z)


def test_mirrored_right_poses_match_left_poses():
    q = _random_q(32, seed=1)
    pr, vr = RIGHT.sparse_joints(q)
    pl, vl = LEFT.sparse_joints(q)
    mirrored = _as_sparse(pr, vr).mirror()
    np.testing.assert_allclose(mirrored.positions, pl.astype(np.float32), atol=2e-7)
    np.testing.assert_array_equal(mirrored.valid, np.broadcast_to(vl, (32, 42)))
    # and the other way round
    back = SparseJoints(pl, np.broadcast_to(vl, pl.shape[:2]), frame="hand_root").mirror()
    np.testing.assert_allclose(back.positions, pr.astype(np.float32), atol=2e-7)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=20, max_size=20))
def test_mirror_property_and_double_mirror_identity(u):
    q = RIGHT.lower + np.asarray(u) * (RIGHT.upper - RIGHT.lower)
    pr, vr = RIGHT.sparse_joints(q[None])
    sj = _as_sparse(pr, vr)
    np.testing.assert_allclose(sj.mirror().positions[0], LEFT.sparse_joints(q)[0], atol=2e-7)
    twice = sj.mirror().mirror()
    np.testing.assert_array_equal(twice.positions, sj.positions)
    np.testing.assert_array_equal(twice.valid, sj.valid)
    assert not twice.mirrored and sj.mirror().mirrored


def test_bones_are_rigid_and_match_the_figures():
    q = _random_q(16, seed=2)
    for hand in (LEFT, RIGHT):
        pos = hand.sparse_joints(q)[0][:, list(hand_slots(hand.side))]
        for finger in FINGERS:
            i = HAND_JOINT_NAMES.index(f"{finger}_{'cmc' if finger == 'thumb' else 'mcp'}")
            base = np.asarray(FIGURES[finger].base) * ([1, 1, 1] if hand.side == "right" else [-1, 1, 1])
            np.testing.assert_allclose(pos[:, i], np.broadcast_to(base, (16, 3)), atol=1e-12)
            lengths = np.linalg.norm(np.diff(pos[:, i:i + 4], axis=1), axis=-1)
            np.testing.assert_allclose(lengths, np.broadcast_to(FIGURES[finger].bones, (16, 3)), atol=1e-12)


def test_finger_joints_move_only_their_finger_and_hinge_at_right_angles():
    base = RIGHT.neutral()
    p0 = RIGHT.sparse_joints(base)[0]
    for finger in FINGERS[1:]:
        q = RIGHT.q_from_dict({f"{finger}_pip_flex": np.pi / 2})
        p1 = RIGHT.sparse_joints(q)[0]
        moved = {int(s) for s in np.flatnonzero(np.linalg.norm(p1 - p0, axis=-1) > 1e-9)}
        assert moved == {slot_index(f"right_{finger}_dip"), slot_index(f"right_{finger}_tip")}
        mcp, pip, dip, tip = (p1[slot_index(f"right_{finger}_{k}")] for k in ("mcp", "pip", "dip", "tip"))
        assert abs(np.dot(pip - mcp, tip - dip)) < 1e-12  # 90° at the PIP: distal bones ⟂ proximal bone
        assert np.linalg.norm(np.cross(dip - pip, tip - dip)) < 1e-12  # DIP at 0: straight


def test_positive_abduction_spreads_away_from_the_middle_finger():
    p0 = RIGHT.sparse_joints(RIGHT.neutral())[0]
    for finger, sign in (("index", 1), ("ring", -1), ("pinky", -1)):
        q = RIGHT.q_from_dict({f"{finger}_mcp_abd": 0.2})
        tip = slot_index(f"right_{finger}_tip")
        dx = RIGHT.sparse_joints(q)[0][tip, 0] - p0[tip, 0]
        assert sign * dx > 0.005, finger


def test_bad_joint_vectors():
    with pytest.raises(ValueError, match="dimension 20"):
        RIGHT.sparse_joints(np.zeros(19))
    with pytest.raises(ValueError, match="NaN"):
        RIGHT.sparse_joints(np.full(20, np.nan))
    q = RIGHT.q_from_dict({"index_pip_flex": 3.0})
    with pytest.raises(ValueError, match="index_pip_flex"):
        RIGHT.sparse_joints(q, strict=True)
    with pytest.warns(JointLimitWarning, match="index_pip_flex"):
        clipped, _ = RIGHT.sparse_joints(q)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected, _ = RIGHT.sparse_joints(RIGHT.q_from_dict({"index_pip_flex": LIMITS["index_pip_flex"][1]}))
    np.testing.assert_allclose(clipped, expected)
    with pytest.raises(KeyError, match="index_mcp_flex"):
        RIGHT.q_from_dict({"index_knuckle_flex": 0.1})
    with pytest.raises(ValueError, match="side"):
        HumanHand("middle")


def test_urdf_compiles_in_mujoco_with_the_same_kinematics():
    """An independent URDF parser (MuJoCo's) gives the same keypoints as pinocchio."""
    q = _random_q(3, seed=3)
    for hand in (LEFT, RIGHT):
        xml = human_hand_urdf(hand.side).replace(
            f'<robot name="human_hand_{hand.side}">',
            f'<robot name="human_hand_{hand.side}"><mujoco><compiler fusestatic="false"/></mujoco>')
        model = mujoco.MjModel.from_xml_string(xml)
        assert model.nq == 20
        data = mujoco.MjData(model)
        frames = list(hand.slot_frames.values())
        for qi in q:
            for name, value in zip(hand.joint_names, qi, strict=True):
                data.qpos[model.joint(name).qposadr[0]] = value
            mujoco.mj_kinematics(model, data)
            mj = np.array([data.xpos[model.body(f).id] for f in frames])
            np.testing.assert_allclose(hand.frame_positions(qi, frames), mj, atol=1e-12)


def test_mjcf_of_the_human_hand_matches_pinocchio():
    model = mujoco.MjModel.from_xml_string(RIGHT.mjcf_xml)
    data = mujoco.MjData(model)
    q = _random_q(1, seed=4)[0]
    for name, value in zip(RIGHT.joint_names, q, strict=True):
        data.qpos[model.joint(name).qposadr[0]] = value
    mujoco.mj_kinematics(model, data)
    frames = list(RIGHT.slot_frames.values())
    mj = np.array([data.xpos[model.body(f).id] for f in frames])
    np.testing.assert_allclose(RIGHT.frame_positions(q, frames), mj, atol=1e-5)
