"""Two hands in one scene: both halves of the 42 slots agree with MuJoCo and pinocchio, show up in the pixels,
and survive physics; bad pairs and per-hand inputs are refused with clear errors."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _sim_helpers import pair_motion  # noqa: E402

import embodiments  # noqa: E402
from dexworld.cli import main  # noqa: E402
from embodiments.layout import SLOT_NAMES, WRIST, hand_slots, side_offset  # noqa: E402
from embodiments.sparse import SparseJoints  # noqa: E402
from embodiments.transforms import apply_transform, invert_transform, project  # noqa: E402
from sim_bridge.camera import cv_from_mujoco_cam  # noqa: E402
from sim_bridge.motion import hand_axes, wrist_pose  # noqa: E402
from sim_bridge.rollout import pose_to_qpos, rollout  # noqa: E402
from sim_bridge.scene import LABEL_HAND, SceneConfig, build_scene  # noqa: E402

NO_OBJECTS = SceneConfig(num_objects=(0, 0), randomize=False)  # nominal camera, no jitter
DEX3 = ("dex3_left", "dex3_right")


def _mujoco_xpos(scene, qpos):
    """World body positions (T, nbody, 3) of MuJoCo's own kinematics of full states (T, nq)."""
    data = mujoco.MjData(scene.model)
    out = []
    for qp in qpos:
        data.qpos[:] = qp
        mujoco.mj_kinematics(scene.model, data)
        out.append(data.xpos.copy())
    return np.array(out)


@pytest.mark.parametrize("pair", [DEX3, ("inspire_left", "dex3_right")])
def test_both_hands_match_pinocchio_fk(pair):
    """Every slot body of both hands in MuJoCo = pinocchio FK through the wrist poses (1e-6 m), and the rollout's
    camera-frame joints fill both halves with exactly those points."""
    scene = build_scene(pair, NO_OBJECTS, seed=0)
    q, w = pair_motion(pair, 3)
    r = rollout(pair, q, w, size=(32, 32), scene=scene)
    xpos = _mujoco_xpos(scene, r.qpos)
    assert r.hands == pair and r.joints.embodiment == "+".join(pair)
    assert set(r.q) == set(pair) and set(r.T_world_hand) == set(pair)
    T_cam_world = invert_transform(r.T_world_cam)
    for name in pair:
        emb = embodiments.get(name)
        local, mask = emb.sparse_joints(q[name])  # pinocchio, hand root frame
        fk_world = apply_transform(w[name], local)
        slots = np.flatnonzero(mask)
        assert set(slots) <= set(hand_slots(emb.side))
        bodies = [scene.body_id(emb.slot_frames[SLOT_NAMES[s]], name) for s in slots]
        assert min(bodies) >= 0
        np.testing.assert_allclose(xpos[:, bodies], fk_world[:, slots], atol=1e-6, rtol=0)
        np.testing.assert_allclose(r.joints.positions[:, slots], apply_transform(T_cam_world, fk_world)[:, slots],
                                   atol=1e-6, rtol=0)
        np.testing.assert_allclose(r.T_world_hand[name], w[name], atol=1e-9)
        np.testing.assert_allclose(r.q[name], q[name])
    # Both halves valid (both hands are in view), nothing else.
    want = embodiments.get(pair[0]).slot_mask | embodiments.get(pair[1]).slot_mask
    assert np.array_equal(r.joints.valid, np.broadcast_to(want, r.joints.valid.shape))


def test_validity_follows_projection_per_hand():
    """Keys by side work; a hand leaving the view invalidates its own half only (outside the image or behind)."""
    scene = build_scene(DEX3, NO_OBJECTS, seed=0)
    q, w = pair_motion(DEX3, 3, keys="side")
    ax = hand_axes(embodiments.get("dex3_right"))
    w["right"] = np.stack([w["right"][0], wrist_pose(ax, [0.35, 0.14, 0.08]), wrist_pose(ax, [0.0, -0.5, 0.2])])
    r = rollout(DEX3, q, w, size=(40, 56), scene=scene)
    left, right = (embodiments.get(n).slot_mask for n in DEX3)
    uvd, front = project(r.joints.positions, r.K)
    inside = front & (uvd[..., 0] >= 0) & (uvd[..., 0] < 56) & (uvd[..., 1] >= 0) & (uvd[..., 1] < 40)
    assert r.joints.valid[:, left].all()
    assert r.joints.valid[0, right].all()
    assert (~inside[1, right]).any() and inside[1, right].any()  # partly out at the edge
    assert np.array_equal(r.joints.valid[1], left | (right & inside[1]))
    # Frame 2: the right hand is behind the camera (negative depth), so its whole half is invalid.
    local = embodiments.get("dex3_right").sparse_joints(q["right"][2])[0]
    cam = apply_transform(invert_transform(r.T_world_cam[2]), apply_transform(w["right"][2], local))
    assert (cam[right, 2] < 0).all() and np.array_equal(r.joints.valid[2], left)


def test_segmentation_shows_both_hands_at_their_projected_wrists():
    pair = ("inspire_left", "inspire_right")
    scene = build_scene(pair, SceneConfig(num_objects=(1, 1), randomize=False), seed=1)
    q, w = pair_motion(pair, 2, closing=0.3)
    r = rollout(pair, q, w, size=(96, 96), scene=scene, segmentation=True)
    seg = r.segmentation
    hand_of = np.where(seg >= 0, scene.geom_hand[np.maximum(seg, 0)], -1)  # (T, H, W) index of the hand
    assert np.array_equal(hand_of >= 0, (seg >= 0) & (scene.geom_labels[np.maximum(seg, 0)] == LABEL_HAND))
    uvd, _ = r.joints.project()
    for t in range(len(r)):
        centroids = []
        for i, name in enumerate(pair):
            side = embodiments.get(name).side
            mine = hand_of[t] == i
            assert mine.sum() > 30, f"{name} covers {mine.sum()} px"
            u, v = uvd[t, side_offset(side) + WRIST, :2]
            win = hand_of[t, int(v) - 3:int(v) + 4, int(u) - 3:int(u) + 4]
            assert (win == i).any(), f"no {name} pixel around its projected wrist {(u, v)}"
            assert not (win == 1 - i).any()
            vv, uu = np.nonzero(mine)
            centroids.append(uu.mean())
            # the hand's pixels sit around its own projected joints
            ok = r.joints.valid[t, hand_slots(side)]
            pts = uvd[t, hand_slots(side)][ok]
            assert abs(uu.mean() + 0.5 - pts[:, 0].mean()) < 12 and abs(vv.mean() + 0.5 - pts[:, 1].mean()) < 12
        assert centroids[0] < 48 < centroids[1]  # left hand on the left of the image, right on the right


def test_bad_pairs_and_per_hand_inputs_are_refused():
    with pytest.raises(ValueError, match=r"embodiment: a pair must be one left-hand and one right-hand"):
        build_scene(("dex3_right", "inspire_right"), NO_OBJECTS)
    with pytest.raises(ValueError, match="embodiment must be"):
        build_scene(("dex3_left", "dex3_right", "inspire_left"), NO_OBJECTS)
    scene = build_scene(("dex3_right", "dex3_left"), NO_OBJECTS, seed=0)  # either order; stored left first
    assert [h.name for h in scene.hands] == list(DEX3) and [h.prefix for h in scene.hands] == ["left/", "right/"]
    assert scene.spec.to_xml() == build_scene("dex3_left+dex3_right", NO_OBJECTS, seed=0).spec.to_xml()
    with pytest.raises(ValueError, match="2 hands .*scene.hand"):
        _ = scene.hand_qadr
    assert scene.hand("right") is scene.hand("dex3_right") is scene.hands[1]
    with pytest.raises(ValueError, match="no hand 'inspire_left'"):
        scene.hand("inspire_left")
    q, w = pair_motion(DEX3, 2)
    with pytest.raises(ValueError, match=r"q: a scene with hands dex3_left\+dex3_right needs one entry per hand"):
        rollout(DEX3, q["dex3_left"], w, scene=scene, size=(16, 16))
    with pytest.raises(ValueError, match="wrist_path: missing the hand"):
        rollout(DEX3, q, {"left": w["dex3_left"]}, scene=scene, size=(16, 16))
    with pytest.raises(ValueError, match="q: no hand 'middle'"):
        rollout(DEX3, {**q, "middle": q["dex3_left"]}, w, scene=scene, size=(16, 16))
    with pytest.raises(ValueError, match="given twice"):
        rollout(DEX3, {**q, "left": q["dex3_left"]}, w, scene=scene, size=(16, 16))
    with pytest.raises(ValueError, match=r"q\['dex3_right'\] must have shape \(T, 7\)"):
        rollout(DEX3, {**q, "dex3_right": q["dex3_right"][:, :3]}, w, scene=scene, size=(16, 16))
    with pytest.raises(ValueError, match=r"q\['dex3_right'\] has 1 frames but q\['dex3_left'\] has 2"):
        rollout(DEX3, {**q, "dex3_right": q["dex3_right"][:1]}, w, scene=scene, size=(16, 16))
    with pytest.raises(ValueError, match=r"wrist_path\['dex3_left'\] must have shape \(2, 4, 4\)"):
        rollout(DEX3, q, {**w, "dex3_left": w["dex3_left"][:1]}, scene=scene, size=(16, 16))
    with pytest.raises(ValueError, match="scene was built for 'dex3_left\\+dex3_right', not 'dex3_right'"):
        rollout("dex3_right", q["dex3_right"], w["dex3_right"], scene=scene, size=(16, 16))


def test_hands_collide_with_each_other_not_themselves():
    """Overlapping hands touch (contacts between the two hands); a hand never collides with its own links."""
    scene = build_scene(DEX3, NO_OBJECTS, seed=0)
    m, d = scene.model, mujoco.MjData(scene.model)
    q, w = pair_motion(DEX3, 1, xs=(0.0, 0.01), closing=0.0)
    for h in scene.hands:
        d.qpos[h.free_qadr:h.free_qadr + 7] = pose_to_qpos(w[h.name][0])
        d.qpos[h.qadr] = q[h.name][0]
    mujoco.mj_forward(m, d)
    pairs = {tuple(sorted((int(scene.geom_hand[c.geom[0]]), int(scene.geom_hand[c.geom[1]])))) for c in d.contact}
    assert (0, 1) in pairs and (0, 0) not in pairs and (1, 1) not in pairs


def test_physics_pair_is_stable_tracks_and_is_deterministic_by_seed():
    q, w = pair_motion(DEX3, 4, z=0.14, closing=0.8)  # high above the objects: fingers touch nothing
    q = {k: np.r_[v, v[-1:], v[-1:]] for k, v in q.items()}  # hold the last pose to settle
    w = {k: np.r_[v, v[-1:], v[-1:]] for k, v in w.items()}
    a, b, c = (rollout(DEX3, q, w, mode="physics", size=(24, 24), seed=s) for s in (5, 5, 6))
    assert a.stable and b.stable and c.stable and not a.issues
    assert np.array_equal(a.qpos, b.qpos) and np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)  # another seed, another scene
    for name in DEX3:
        assert np.abs(a.T_world_hand[name][:, :3, 3] - w[name][:, :3, 3]).max() < 0.005
        assert np.abs(a.q[name][-1] - a.q_target[name][-1]).max() < 0.05  # fingers settle on their targets
        assert np.abs(a.q[name][-1] - a.q[name][0]).max() > 0.5  # and really moved
    # The joints follow MuJoCo's simulated bodies, both halves.
    scene = build_scene(DEX3, seed=5)
    xpos = _mujoco_xpos(scene, a.qpos)
    T_cam_world = invert_transform(a.T_world_cam)
    for name in DEX3:
        emb = embodiments.get(name)
        for slot_name, frame in emb.slot_frames.items():
            s = SLOT_NAMES.index(slot_name)
            ref = apply_transform(T_cam_world, xpos[:, scene.body_id(frame, name)][:, None])[:, 0]
            assert np.abs(a.joints.positions[:, s] - ref).max() < 1e-4, slot_name
    assert a.joints.valid[:, embodiments.get("dex3_left").slot_mask].all()
    assert a.joints.valid[:, embodiments.get("dex3_right").slot_mask].all()


def test_one_hand_is_the_one_element_case():
    """One hand keeps its names and API; a dict keyed by its side gives the same rollout as bare arrays."""
    scene = build_scene(("inspire_right",), NO_OBJECTS, seed=0)
    assert len(scene.hands) == 1 and scene.hands[0].prefix == "hand/" and scene.embodiment.name == "inspire_right"
    assert scene.spec.to_xml() == build_scene("inspire_right", NO_OBJECTS, seed=0).spec.to_xml()
    q, w = pair_motion(("inspire_right",), 2, xs=(0.0,))
    a = rollout("inspire_right", q["inspire_right"], w["inspire_right"], scene=scene, size=(16, 16))
    b = rollout("inspire_right", {"right": q["inspire_right"]}, {"right": w["inspire_right"]}, scene=scene,
                size=(16, 16))
    assert isinstance(a.q, np.ndarray) and a.T_world_hand.shape == (2, 4, 4) and a.hands == ("inspire_right",)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.joints.positions, b.joints.positions)
    assert set(a.by_hand("q")) == {"inspire_right"}


def test_simulate_command_renders_a_pair(tmp_path, capsys):
    """``dexworld simulate --embodiment dex3_left,dex3_right``: per-side arrays or one side-by-side q."""
    q, w = pair_motion(DEX3, 2, keys="side")
    np.savez(tmp_path / "pair.npz", q_left=q["left"], q_right=q["right"], wrist_path_right=w["right"])
    np.save(tmp_path / "both.npy", np.concatenate([q["left"], q["right"]], axis=1))
    for traj in ("pair.npz", "both.npy"):
        out, jo = tmp_path / f"{traj}.gif", tmp_path / f"{traj}_joints.npz"
        assert main(["simulate", str(tmp_path / traj), "--embodiment", "dex3_left,dex3_right", "--size", "32",
                     "--out", str(out), "--joints-out", str(jo)]) == 0
        joints = SparseJoints.load(jo)
        assert out.stat().st_size > 0 and len(joints) == 2 and joints.embodiment == "dex3_left+dex3_right"
        for name in DEX3:
            assert joints.valid[:, embodiments.get(name).slot_mask].all()
    # The right hand followed its given wrist path: its wrist slot is where FK through that path puts it.
    scene = build_scene(DEX3, seed=0)  # the command's scene
    data = mujoco.MjData(scene.model)
    mujoco.mj_forward(scene.model, data)
    cam = scene.camera_id("ego")
    T_cam_world = invert_transform(cv_from_mujoco_cam(data.cam_xpos[cam], data.cam_xmat[cam]))
    wrist = side_offset("right") + WRIST
    want = apply_transform(T_cam_world @ w["right"], embodiments.get("dex3_right").sparse_joints(q["right"])[0])
    got = SparseJoints.load(tmp_path / "pair.npz_joints.npz").positions
    np.testing.assert_allclose(got[:, wrist], want[:, wrist], atol=1e-5)
    assert main(["simulate", str(tmp_path / "both.npy"), "--embodiment", "dex3_right,inspire_right",
                 "--out", str(tmp_path / "x.gif")]) == 1
    assert "a pair must be one left-hand and one right-hand" in capsys.readouterr().err
    assert main(["simulate", str(tmp_path / "pair.npz"), "--embodiment", "inspire_left,dex3_right",
                 "--out", str(tmp_path / "x.gif")]) == 1
    assert "'q_left' must have shape (T, 6) for inspire_left, got (2, 7)" in capsys.readouterr().err
