"""Unitree layouts ↔ our joint_names order, both ways; Inspire 6-value command ↔ 12 URDF joints; pose fitting."""

from __future__ import annotations

import numpy as np
import pinocchio as pin
import pytest

from embodiments import registry
from embodiments.transforms import apply_transform, make_transform, rotation_about
from sim_bridge import unitree as ut
from sim_bridge.hand_pose import fit_root_pose, hands_in_camera, kabsch

# Unitree's published names (xr_teleoperate Dex3_1_*_JointIndex enums, unitree_lerobot robot configs)
DEX3_LEFT = ["kLeftHandThumb0", "kLeftHandThumb1", "kLeftHandThumb2", "kLeftHandMiddle0", "kLeftHandMiddle1",
             "kLeftHandIndex0", "kLeftHandIndex1"]
DEX3_RIGHT = ["kRightHandThumb0", "kRightHandThumb1", "kRightHandThumb2", "kRightHandIndex0", "kRightHandIndex1",
              "kRightHandMiddle0", "kRightHandMiddle1"]
INSPIRE_RIGHT = ["kRightHandPinky", "kRightHandRing", "kRightHandMiddle", "kRightHandIndex", "kRightHandThumbBend",
                 "kRightHandThumbRotation"]


def by_name(hand: str, values: dict[str, float]) -> np.ndarray:
    """A joint vector in the hand's joint_names order from {joint name: value}."""
    emb = registry.get(hand)
    return np.array([values[j] for j in emb.joint_names])


def test_feature_names():
    assert list(ut.dex3_feature_names("left")) == DEX3_LEFT
    assert list(ut.dex3_feature_names("right")) == DEX3_RIGHT
    assert list(ut.inspire_feature_names("right")) == INSPIRE_RIGHT
    assert ut.arm_feature_names()[:4] == ("kLeftShoulderPitch", "kLeftShoulderRoll", "kLeftShoulderYaw", "kLeftElbow")
    assert ut.unitree_layout("mano_right") is None


@pytest.mark.parametrize("side", ["left", "right"])
def test_dex3_motor_order_both_ways(side):
    parts = ["thumb_0", "thumb_1", "thumb_2", "middle_0", "middle_1", "index_0", "index_1"]
    values = {f"{side}_hand_{p}_joint": 0.1 * (i + 1) for i, p in enumerate(parts)}  # motor i holds 0.1·(i+1)
    q = by_name(f"dex3_{side}", values)
    layout = ut.unitree_layout(f"dex3_{side}")
    motors = layout.to_unitree(q)
    np.testing.assert_allclose(motors, 0.1 * np.arange(1, 8))  # same physical motor order on both hands
    np.testing.assert_allclose(layout.from_unitree(motors), q)
    batch = np.stack([q, q * 0.5])
    np.testing.assert_allclose(layout.from_unitree(layout.to_unitree(batch)), batch)


def test_dex3_label_convention_differs_on_the_right_only():
    for side, names in (("left", DEX3_LEFT), ("right", DEX3_RIGHT)):
        layout = ut.unitree_layout(f"dex3_{side}", convention="label")
        values = {j: float(i) for i, j in enumerate(registry.get(f"dex3_{side}").joint_names)}
        v = layout.to_unitree(by_name(f"dex3_{side}", values))
        for k, name in enumerate(names):  # each slot holds the joint its label names
            finger, idx = name[len(f"k{side.capitalize()}Hand"):-1].lower(), name[-1]
            assert v[k] == values[f"{side}_hand_{finger}_{idx}_joint"]
    left = ut.dex3_slot_joints("left", "label") == ut.dex3_slot_joints("left", "motor")
    right = ut.dex3_slot_joints("right", "label") == ut.dex3_slot_joints("right", "motor")
    assert left and not right
    with pytest.raises(ValueError, match="convention"):
        ut.dex3_slot_joints("left", "alphabetical")


def test_inspire_command_both_ways():
    layout = ut.unitree_layout("inspire_right")
    emb = registry.get("inspire_right")
    np.testing.assert_allclose(layout.to_unitree(emb.lower), np.ones(6))  # all joints at their minimum = open
    np.testing.assert_allclose(layout.to_unitree(emb.upper), np.zeros(6))  # closed
    q = by_name("inspire_right", {"R_pinky_proximal_joint": 0.85, "R_ring_proximal_joint": 1.7,
                                  "R_middle_proximal_joint": 0.0, "R_index_proximal_joint": 0.34,
                                  "R_thumb_proximal_pitch_joint": 0.1, "R_thumb_proximal_yaw_joint": 0.6})
    np.testing.assert_allclose(layout.to_unitree(q), [0.5, 0.0, 1.0, 0.8, 0.8, 0.5])
    np.testing.assert_allclose(layout.from_unitree([0.5, 0.0, 1.0, 0.8, 0.8, 0.5]), q)
    rng = np.random.default_rng(1)
    cmd = rng.uniform(0, 1, (20, 6))
    np.testing.assert_allclose(layout.to_unitree(layout.from_unitree(cmd)), cmd, atol=1e-12)
    with pytest.raises(ValueError, match="radians"):
        layout.from_unitree(np.full(6, 1.5))
    with pytest.raises(ValueError, match="dimension 6"):
        layout.from_unitree(np.zeros(7))


@pytest.mark.parametrize("hand", ["inspire_left", "inspire_right"])
def test_inspire_twelve_joints_through_pinocchio(hand):
    """Command → 6 actuated → 12 URDF joints; a 12-DoF pinocchio model without mimic, fed the 12 angles,
    puts every frame where the mimic model fed the 6 does."""
    emb = registry.get(hand)
    layout = ut.unitree_layout(hand)
    cmd = np.array([0.2, 0.4, 0.6, 0.8, 0.3, 0.7])
    q6 = layout.from_unitree(cmd)
    names, q12 = ut.expand_mimic(hand, q6)
    assert len(names) == 12 and len(set(names)) == 12
    p = "L_" if hand.endswith("left") else "R_"
    val = dict(zip(names, q12, strict=True))
    assert val[f"{p}index_intermediate_joint"] == val[f"{p}index_proximal_joint"]
    np.testing.assert_allclose(val[f"{p}thumb_distal_joint"], 2.4 * val[f"{p}thumb_proximal_pitch_joint"])
    np.testing.assert_allclose(val[f"{p}pinky_proximal_joint"], 1.7 * (1 - 0.2))
    full = pin.buildModelFromXML(emb.urdf_xml)  # mimic ignored: 12 independent joints
    assert full.nq == 12
    qf = np.zeros(full.nq)
    for n, v in val.items():
        qf[full.joints[full.getJointId(n)].idx_q] = v
    data = full.createData()
    pin.forwardKinematics(full, data, qf)
    frames = list(emb.slot_frames.values())
    want = np.stack([pin.updateFramePlacement(full, data, full.getFrameId(f)).translation for f in frames])
    np.testing.assert_allclose(emb.frame_positions(q6, frames), want, atol=1e-9)


def test_fit_root_pose_recovers_transform():
    rng = np.random.default_rng(2)
    emb = registry.get("dex3_right")
    q = rng.uniform(emb.lower, emb.upper, (4, emb.dof))
    R = rotation_about(rng.normal(size=3), rng.uniform(-3, 3, 4))
    Tt = make_transform(R, rng.normal(0, 0.2, (4, 3)) + [0, 0, 0.5])
    K = np.array([[100.0, 0, 32], [0, 100, 32], [0, 0, 1]])
    joints = hands_in_camera({"dex3_right": q}, {"dex3_right": Tt}, K, fps=10)
    Tf, rms = fit_root_pose("dex3_right", q, joints)
    np.testing.assert_allclose(Tf, Tt, atol=1e-6)  # joints are stored as float32
    assert rms.max() < 1e-6
    # kabsch with weights ignores the zero-weight outlier
    src = rng.normal(size=(6, 3))
    dst = apply_transform(Tt[0], src)
    dst[5] += 10.0
    w = np.array([1, 1, 1, 1, 1, 0.0])
    np.testing.assert_allclose(kabsch(src, dst, w), Tt[0], atol=1e-9)


def test_hands_in_camera_rejects_bad_input():
    K = np.eye(3)
    q = np.zeros((3, 7))
    with pytest.raises(ValueError, match="no camera-from-root"):
        hands_in_camera({"dex3_right": q}, {}, K, fps=10)
    with pytest.raises(ValueError, match="two hands on the right"):
        hands_in_camera({"dex3_right": q, "inspire_right": np.zeros((3, 6))}, {}, K, fps=10)
