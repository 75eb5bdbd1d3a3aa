"""TorchFK and the shared chain description against pinocchio: every frame, Jacobians vs finite differences."""

from __future__ import annotations

import numpy as np
import pinocchio as pin
import pytest
import torch

import embodiments
from embodiments.chain import PRISMATIC, REVOLUTE, read_chain
from embodiments.kinematics import HandKinematics
from retarget.torch_fk import TorchFK

# A small chain with every joint kind TorchFK handles: aligned and unaligned revolute, prismatic, and mimic
# joints with negative multipliers and offsets (revolute and prismatic), rotated joint origins.
ODD_URDF = """<robot name="odd">
  <link name="base"/><link name="a"/><link name="b"/><link name="c"/><link name="d"/><link name="e"/>
  <link name="tip"/>
  <joint name="j1" type="revolute"><parent link="base"/><child link="a"/><origin xyz="0.01 0.02 0" rpy="0.3 0 0.2"/>
    <axis xyz="0 0.6 -0.8"/><limit lower="-1" upper="1" effort="1" velocity="1"/></joint>
  <joint name="j2" type="prismatic"><parent link="a"/><child link="b"/><origin xyz="0 0.04 0" rpy="0 0.5 0"/>
    <axis xyz="1 0 0"/><limit lower="-0.02" upper="0.03" effort="1" velocity="1"/></joint>
  <joint name="m1" type="revolute"><parent link="b"/><child link="c"/><origin xyz="0.03 0 0.01" rpy="0 0 0.4"/>
    <axis xyz="0 0 1"/><limit lower="-3" upper="3" effort="1" velocity="1"/>
    <mimic joint="j1" multiplier="-1.5" offset="0.2"/></joint>
  <joint name="m2" type="prismatic"><parent link="c"/><child link="d"/><origin xyz="0.02 0 0" rpy="0.1 0 0"/>
    <axis xyz="0 1 1"/><limit lower="-1" upper="1" effort="1" velocity="1"/>
    <mimic joint="j2" multiplier="2.0" offset="-0.01"/></joint>
  <joint name="j3" type="revolute"><parent link="a"/><child link="e"/><origin xyz="0 -0.03 0.02" rpy="1 0 0"/>
    <axis xyz="0 -1 0"/><limit lower="-1" upper="1" effort="1" velocity="1"/></joint>
  <joint name="fix" type="fixed"><parent link="d"/><child link="tip"/><origin xyz="0.015 0.005 0" rpy="0 0 0"/></joint>
</robot>"""


def _pin_positions(model: pin.Model, q_pin: np.ndarray, frames: list[str]) -> np.ndarray:
    data = model.createData()
    out = []
    for qi in q_pin:
        pin.forwardKinematics(model, data, qi)
        pin.updateFramePlacements(model, data)
        out.append([data.oMf[model.getFrameId(f)].translation.copy() for f in frames])
    return np.asarray(out)


@pytest.mark.parametrize("name", ["inspire_left", "dex3_right", "mano_right"])
def test_matches_pinocchio_on_every_frame(name):
    hand = embodiments.get(name)
    model = hand.kinematics.model
    frames = [f.name for f in model.frames][1:]
    fk = TorchFK(model, hand.joint_names, frames)
    q = np.random.default_rng(0).uniform(hand.lower, hand.upper, (16, hand.dof))
    ours = fk.frame_positions(torch.as_tensor(q)).numpy()
    ref = hand.kinematics.frame_positions(q, frames)  # pinocchio, mimic=True, joint_names order
    assert np.abs(ours - ref).max() < 1e-6


def test_odd_joint_kinds_and_mimic_match_pinocchio():
    model = pin.buildModelFromXML(ODD_URDF, mimic=True)
    frames = ["a", "b", "c", "d", "e", "tip"]
    fk = TorchFK(model, None, frames)
    assert fk.joint_names == ("j1", "j2", "j3")
    rng = np.random.default_rng(1)
    q = rng.uniform([-1, -0.02, -1], [1, 0.03, 1], (12, 3))
    ours = fk.frame_positions(torch.as_tensor(q)).numpy()
    assert np.abs(ours - _pin_positions(model, q, frames)).max() < 1e-6
    # Reordered joint names permute q consistently.
    fk2 = TorchFK(model, ["j3", "j1", "j2"], frames)
    assert np.abs(fk2.frame_positions(torch.as_tensor(q[:, [2, 0, 1]])).numpy() - ours).max() < 1e-12


@pytest.mark.parametrize("name", ["inspire_right", "odd"])
def test_jacobian_matches_finite_differences_and_autograd(name):
    if name == "odd":
        model, names, frames = pin.buildModelFromXML(ODD_URDF, mimic=True), None, ["b", "d", "e", "tip"]
        lo, hi = np.array([-1, -0.02, -1]), np.array([1, 0.03, 1])
    else:
        hand = embodiments.get(name)
        model, names, lo, hi = hand.kinematics.model, hand.joint_names, hand.lower, hand.upper
        frames = list(hand.slot_frames.values())
    fk = TorchFK(model, names, frames)
    q = torch.as_tensor(np.random.default_rng(2).uniform(lo, hi, (3, fk.dof)))
    pos, J = fk.forward(q, jacobian=True)
    # Central differences through pinocchio itself (independent of our chain rule for mimic joints).
    eps = 1e-6
    fd = np.zeros_like(J.numpy())
    for k in range(fk.dof):
        dq = np.zeros(fk.dof)
        dq[k] = eps
        plus = fk.frame_positions(q + torch.as_tensor(dq)).numpy()
        minus = fk.frame_positions(q - torch.as_tensor(dq)).numpy()
        fd[..., k] = (plus - minus) / (2 * eps)
    assert np.abs(J.numpy() - fd).max() < 1e-6
    qa = q[0].clone().requires_grad_(True)
    Ja = torch.autograd.functional.jacobian(lambda x: fk.frame_positions(x), qa)
    assert torch.allclose(Ja, J[0], atol=1e-10)


def test_bad_inputs_are_named():
    hand = embodiments.get("dex3_right")
    with pytest.raises(KeyError, match="no_such_frame"):
        TorchFK(hand.kinematics.model, hand.joint_names, ["no_such_frame"])
    with pytest.raises(ValueError, match="joint_names"):
        TorchFK(hand.kinematics.model, ["right_hand_thumb_0_joint"], ["right_hand_palm_link"])
    fk = TorchFK(hand.kinematics.model, hand.joint_names, ["right_hand_palm_link"])
    with pytest.raises(ValueError, match="dimension 7"):
        fk.frame_positions(torch.zeros(3, 6))


@pytest.mark.parametrize("name", ["inspire_right", "odd"])
def test_chain_description_rebuilds_pinocchio_joint_by_joint(name):
    if name == "odd":
        model, names = pin.buildModelFromXML(ODD_URDF, mimic=True), ["j3", "j1", "j2"]
        lo, hi = [-1, -1, -0.02], [1, 1, 0.03]
    else:
        hand = embodiments.get(name)
        model, names, lo, hi = hand.kinematics.model, hand.joint_names, hand.lower, hand.upper
    chain = read_chain(model, names)
    assert chain.joint_names == tuple(names) and chain.frame_names == tuple(f.name for f in model.frames)
    data = model.createData()
    for q in np.random.default_rng(3).uniform(lo, hi, (4, len(names))):
        q_pin = np.zeros(model.nq)
        q_pin[chain.q_index] = q
        pin.forwardKinematics(model, data, q_pin)
        pin.updateFramePlacements(model, data)
        for j in range(1, model.njoints):  # parent <- joint = placement · exp(θ ξ), θ = scale · q[source] + offset
            theta = chain.scale[j] * q[chain.source[j]] + chain.offset[j]
            twist = pin.Motion(chain.axis[j] * theta * (chain.kind[j] == PRISMATIC),
                               chain.axis[j] * theta * (chain.kind[j] == REVOLUTE))
            local = pin.SE3(chain.rotation[j], chain.translation[j]) * pin.exp6(twist)
            np.testing.assert_allclose(local.homogeneous, data.liMi[j].homogeneous, atol=1e-12)
            assert chain.parent[j] == model.parents[j] and chain.kind[j] in (REVOLUTE, PRISMATIC)
        for k in range(len(model.frames)):
            placed = data.oMi[int(chain.frame_joint[k])] * pin.SE3(chain.frame_rotation[k], chain.frame_translation[k])
            np.testing.assert_allclose(placed.homogeneous, data.oMf[k].homogeneous, atol=1e-12)


def test_chain_rejects_what_it_cannot_represent_and_numpy_falls_back_to_pinocchio():
    model = pin.buildModelFromXML(ODD_URDF, mimic=True)
    with pytest.raises(ValueError, match="joint_names"):
        read_chain(model, ["j1", "j1", "j2"])
    with pytest.raises(KeyError, match="nope"):
        read_chain(model, None, ["a", "nope"])
    helical = pin.Model()
    helical.addJoint(0, pin.JointModelHelicalUnaligned(np.array([0.0, 0.0, 1.0]), 0.1), pin.SE3.Identity(), "h")
    with pytest.raises(ValueError, match="'h' of type JointModelHelicalUnaligned"):
        read_chain(helical)
    # A mimic with multiplier 0 has no axis to read: TorchFK refuses it, HandKinematics evaluates it with pinocchio.
    frozen = ODD_URDF.replace('multiplier="2.0"', 'multiplier="0"')
    with pytest.raises(ValueError, match="'m2'"):
        TorchFK(pin.buildModelFromXML(frozen, mimic=True), None, ["tip"])
    kin = HandKinematics(frozen)
    assert kin.chain is None and HandKinematics(ODD_URDF).chain is not None
    q = np.random.default_rng(4).uniform([-1, -0.02, -1], [1, 0.03, 1], (5, 3))
    np.testing.assert_allclose(kin.frame_positions(q, ["d", "tip"]), _pin_positions(kin.model, q, ["d", "tip"]),
                               atol=1e-12)
