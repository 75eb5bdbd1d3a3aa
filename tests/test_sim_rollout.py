"""Rollouts: joints agree with MuJoCo and with the pixels; physics couplings, contacts and failure handling."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import embodiments  # noqa: E402
from embodiments import JointLimitWarning  # noqa: E402
from embodiments.layout import FINGERTIPS, side_offset  # noqa: E402
from embodiments.transforms import apply_transform, invert_transform, project  # noqa: E402
from sim_bridge.motion import hand_axes, wrist_pose  # noqa: E402
from sim_bridge.rollout import rollout  # noqa: E402
from sim_bridge.scene import LABEL_HAND, SceneConfig, build_scene  # noqa: E402

NO_OBJECTS = SceneConfig(num_objects=(0, 0), randomize=False)  # nominal camera, no jitter


def _reach(name: str, T: int, palm=(0.03, 0.14, 0.08), closing: float = 0.0):
    emb = embodiments.get(name)
    ax = hand_axes(emb)
    s = np.linspace(0, 1, T)[:, None]
    q = ax.open_q + closing * s * (ax.closed_q - ax.open_q)
    path = np.stack([wrist_pose(ax, np.asarray(palm) + [0.0, 0.03 * si, 0.0], yaw=0.2 * si) for si in s[:, 0]])
    return emb, ax, q, path


def _mujoco_slot_positions(scene, emb, data_xpos_world, T_world_cam):
    """Camera-frame positions of the bodies that carry each slot frame, straight from MuJoCo (slot → (T, 3))."""
    out = {}
    for slot, frame in emb.slot_frames.items():
        b = scene.body_id(frame)
        if b >= 0:
            out[embodiments.slot_index(slot)] = apply_transform(invert_transform(T_world_cam),
                                                                data_xpos_world[:, b][:, None])[:, 0]
    return out


@pytest.mark.parametrize("mode", ["kinematic", "physics"])
def test_sparse_joints_agree_with_mujoco_bodies(mode):
    """Pinocchio FK ∘ hand pose ∘ extrinsics = MuJoCo's own body positions, for every slot of the hand."""
    name = "inspire_right"
    emb, _, q, path = _reach(name, 5, closing=0.6)
    scene = build_scene(name, NO_OBJECTS, seed=0)
    import mujoco

    # MuJoCo's own kinematics of the rolled-out state (full qpos, mimic joints included).
    r = rollout(emb, q, path, mode=mode, size=(32, 32), scene=scene)
    data = mujoco.MjData(scene.model)
    xpos = []
    for t in range(len(r)):
        data.qpos[:] = r.qpos[t]
        mujoco.mj_kinematics(scene.model, data)
        xpos.append(data.xpos.copy())
    ref = _mujoco_slot_positions(scene, emb, np.array(xpos), r.T_world_cam[0])
    assert len(ref) == int(emb.slot_mask.sum())
    # Physics: MuJoCo's mimic joints obey their coupling only up to the constraint's softness (~0.01 mm here).
    tol = 1e-5 if mode == "kinematic" else 1e-4
    for slot, p in ref.items():
        assert np.abs(r.joints.positions[:, slot] - p).max() < tol, embodiments.SLOT_NAMES[slot]
    assert r.joints.frame == "camera" and np.allclose(r.joints.K, r.K)
    if mode == "kinematic":
        assert np.allclose(r.q, q) and np.allclose(r.T_world_hand, path, atol=1e-9)


def test_physics_hand_pose_is_measured_not_commanded():
    """In physics the SparseJoints follow MuJoCo's simulated bodies (tip body world positions, directly)."""
    emb, _, q, path = _reach("dex3_right", 4, palm=(0.03, 0.14, 0.2), closing=0.8)  # high: fingers touch nothing
    q, path = np.r_[q, q[-1:], q[-1:]], np.r_[path, path[-1:], path[-1:]]  # hold the last pose to settle
    scene = build_scene(emb, NO_OBJECTS, seed=0)
    r = rollout(emb, q, path, mode="physics", size=(32, 32), scene=scene)
    assert r.stable
    # Tracking: the wrist follows its target within a few millimetres; fingers settle within ~0.05 rad.
    assert np.abs(r.T_world_hand[:, :3, 3] - path[:, :3, 3]).max() < 0.005
    assert np.abs(r.q[-1] - r.q_target[-1]).max() < 0.05
    assert np.abs(r.q[-1] - r.q[0]).max() > 0.5


@pytest.mark.parametrize("name", ["inspire_right", "dex3_left"])
def test_fingertips_land_on_fingertip_geoms(name):
    """Projected fingertip joints hit the fingertip's geoms in the segmentation render.

    Only fingertips the camera sees are checked (rendered depth at the pixel within a finger's thickness of the
    joint's depth; dex3's thumb hangs under the palm); at least two per frame must qualify.
    """
    emb, ax, q, path = _reach(name, 2, palm=(0.0, 0.15, 0.1))
    scene = build_scene(name, NO_OBJECTS, seed=2)
    r = rollout(emb, q, path, size=(96, 96), scene=scene, segmentation=True, depth=True)
    uvd, ok = r.joints.project()
    m = scene.model
    o = side_offset(emb.side)
    for t in range(len(r)):
        checked = 0
        for slot_in_hand in FINGERTIPS:
            slot = o + slot_in_hand
            frame = emb.slot_frames.get(embodiments.SLOT_NAMES[slot])
            if frame is None:
                continue
            assert ok[t, slot]
            u, v = uvd[t, slot, :2]
            iu, iv = int(u), int(v)
            if abs(r.depth[t, iv, iu] - r.joints.positions[t, slot, 2]) > 0.025:
                continue  # hidden behind another part of the hand
            b = scene.body_id(frame)
            bodies = {b, int(m.body_parentid[b])}  # tip frames are geom-less bodies at the end of the distal link
            win = r.segmentation[t, iv - 1:iv + 2, iu - 1:iu + 2]
            hit = {int(m.geom_bodyid[g]) for g in win.ravel() if g >= 0}
            assert hit & bodies, f"{embodiments.SLOT_NAMES[slot]} at {(u, v)} hits bodies {hit}, not {bodies}"
            checked += 1
        assert checked >= 2
    assert (scene.geom_labels[r.segmentation[r.segmentation >= 0]] == LABEL_HAND).any()


def test_joints_outside_the_image_are_invalid():
    emb, ax, q, _ = _reach("inspire_right", 3)
    scene = build_scene(emb, NO_OBJECTS, seed=0)
    # Slide the hand sideways from the centre of the view to far outside it.
    xs = [0.0, 0.3, 2.0]
    path = np.stack([wrist_pose(ax, [x, 0.14, 0.08]) for x in xs])
    r = rollout(emb, q, path, size=(40, 56), scene=scene, segmentation=True)
    uvd, _ = project(r.joints.positions, r.K)
    hand = emb.slot_mask
    assert r.joints.valid[0, hand].all()  # centred: all in view
    inside = (uvd[..., 0] >= 0) & (uvd[..., 0] < 56) & (uvd[..., 1] >= 0) & (uvd[..., 1] < 40)
    assert (~inside[1, hand]).any() and inside[1, hand].any()  # partly out at the edge
    assert np.array_equal(r.joints.valid[1], hand & inside[1])
    assert not r.joints.valid[2].any()
    assert not (scene.geom_labels[r.segmentation[2][r.segmentation[2] >= 0]] == LABEL_HAND).any()
    assert not r.joints.valid[:, ~hand].any()


def test_mimic_equalities_hold_in_physics():
    emb, _, q, path = _reach("inspire_right", 6, closing=0.9)
    scene = build_scene(emb, NO_OBJECTS, seed=0)
    r = rollout(emb, q, path, mode="physics", size=(16, 16), scene=scene)
    assert r.stable and len(scene.mimic_qadr) == 6
    qm, qs = r.qpos[:, scene.mimic_qadr], r.qpos[:, scene.mimic_src_qadr]
    assert np.abs(qs[-1]).max() > 0.5  # the fingers really closed
    resid = qm - (scene.mimic_poly[:, 0] + scene.mimic_poly[:, 1] * qs)  # q_mimic = a0 + a1 q_master
    assert np.abs(resid).max() < 0.03, resid


def test_physics_push_moves_an_object():
    cfg = SceneConfig(num_objects=(1, 1), object_kinds=("box",), randomize=False, object_half_size=(0.025, 0.025))
    emb = embodiments.get("inspire_right")
    scene = build_scene(emb, cfg, seed=0)
    ax = hand_axes(emb)
    box = scene.model.body_pos[scene.object_bodies[0]].copy()
    T = 10
    # Fingers pointing down (pitch −90°), sweeping in +x through the box at half its height.
    xs = np.linspace(box[0] - 0.16, box[0] + 0.06, T)
    path = np.stack([wrist_pose(ax, [x, box[1], 0.06], pitch=-np.pi / 2) for x in xs])
    q = np.repeat(ax.open_q[None], T, 0)
    r = rollout(emb, q, path, mode="physics", size=(16, 16), scene=scene, fps=8.0)
    assert r.stable
    moved = r.object_poses[-1, 0, :3, 3] - r.object_poses[0, 0, :3, 3]
    assert moved[0] > 0.02, moved
    # Kinematic replay of the same path leaves the object where it was.
    k = rollout(emb, q, path, mode="kinematic", size=(16, 16), scene=scene, fps=8.0)
    assert np.allclose(k.object_poses[-1], k.object_poses[0])


def test_bad_inputs_and_unstable_physics_are_reported():
    emb, _, q, path = _reach("dex3_right", 3)
    scene = build_scene(emb, NO_OBJECTS, seed=0)
    with pytest.raises(ValueError, match="unknown camera"):
        rollout(emb, q, path, camera="nope", scene=scene, size=(16, 16))
    with pytest.raises(ValueError, match=r"q must have shape \(T, 7\)"):
        rollout(emb, q[:, :3], path, scene=scene, size=(16, 16))
    with pytest.raises(ValueError, match="wrist_path"):
        rollout(emb, q, path[:2], scene=scene, size=(16, 16))
    with pytest.raises(ValueError, match="mode"):
        rollout(emb, q, path, mode="dynamic", scene=scene, size=(16, 16))
    bad = q.copy()
    bad[1, 0] = emb.upper[0] + 1.0
    with pytest.warns(JointLimitWarning):
        r = rollout(emb, bad, path, scene=scene, size=(16, 16))
    assert r.clipped_joints == [emb.joint_names[0]] and np.isclose(r.q[1, 0], emb.upper[0]) and r.issues
    r = rollout(emb, q, path, mode="physics", scene=scene, size=(16, 16), max_qacc=1e-6)
    assert not r.stable and len(r) == 1 and "unstable" in r.issues[0]
