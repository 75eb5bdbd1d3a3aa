"""MuJoCo scenes: every robot hand compiles and renders; K matches the renderer; camera conventions; seeding."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import embodiments  # noqa: E402
from embodiments.transforms import apply_transform, invert_transform, look_at, project  # noqa: E402
from sim_bridge.camera import cv_from_mujoco_cam, mujoco_cam_from_cv  # noqa: E402
from sim_bridge.render import FrameRenderer  # noqa: E402
from sim_bridge.scene import LABEL_HAND, LABEL_OBJECT, SceneConfig, build_scene  # noqa: E402

ROBOTS = ["dex3_left", "dex3_right", "inspire_left", "inspire_right"]


@pytest.mark.parametrize("name", ROBOTS)
def test_every_robot_hand_compiles_and_renders(name):
    scene = build_scene(name, seed=1)
    emb = embodiments.get(name)
    m = scene.model
    assert m.nu == emb.dof and len(scene.hand_qadr) == emb.dof
    # Couplings in the scene: exactly the URDF's mimic joints.
    from embodiments.mjcf import mimic_joints

    assert len(scene.mimic_qadr) == len(mimic_joints(emb.urdf_xml))
    # Position servos sized for light fingers: gain kp, bias −kp·q, force limited.
    assert np.allclose(m.actuator_gainprm[:, 0], scene.config.kp)
    assert np.allclose(m.actuator_biasprm[:, 1], -scene.config.kp)
    assert np.all(m.actuator_forcelimited)
    data = mujoco.MjData(m)
    mujoco.mj_forward(m, data)
    with FrameRenderer(m, 48, 64, segmentation=True) as fr:
        out = fr.allocate(1)
        fr.render_into(data, scene.camera_id("ego"), out, 0)
    assert out["rgb"].shape == (1, 48, 64, 3) and out["rgb"].std() > 5  # not a blank image
    labels = scene.geom_labels[out["segmentation"][0][out["segmentation"][0] >= 0]]
    assert (labels != LABEL_HAND).any()  # table visible


def test_camera_pose_round_trip():
    T = look_at([0.3, -0.2, 0.5], [0.0, 0.1, 0.0])
    pos, quat = mujoco_cam_from_cv(T)
    mat = np.empty(9)
    mujoco.mju_quat2Mat(mat, quat)
    assert np.allclose(cv_from_mujoco_cam(pos, mat), T, atol=1e-9)
    # MuJoCo cameras look down their −z: the OpenCV +z axis is that direction.
    assert np.allclose(mat.reshape(3, 3)[:, 2], -T[:3, 2])


@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_intrinsics_match_renderer(size):
    """A world point projected with K lands on its rendered pixel (a sphere's centre and its pixel centroid)."""
    cfg = SceneConfig(num_objects=(1, 1), object_kinds=("sphere",), randomize=False, object_half_size=(0.02, 0.02))
    scene = build_scene("inspire_right", cfg, seed=0)
    m = scene.model
    data = mujoco.MjData(m)
    # Park the hand out of view so only the sphere is in front of the table.
    data.qpos[scene.hand_free_qadr:scene.hand_free_qadr + 3] = [0, 0, -5]
    centers = [np.array([0.0, 0.15, 0.02]), np.array([0.09, 0.22, 0.02]), np.array([-0.1, 0.08, 0.02])]
    H, W = size
    K = scene.intrinsics("ego", size)
    cam = scene.camera_id("ego")
    with FrameRenderer(m, H, W, segmentation=True) as fr:
        out = fr.allocate(len(centers))
        for t, c in enumerate(centers):
            data.qpos[scene.object_free_qadr[0]:scene.object_free_qadr[0] + 3] = c
            mujoco.mj_forward(m, data)
            fr.render_into(data, cam, out, t)
            T_world_cam = cv_from_mujoco_cam(data.cam_xpos[cam], data.cam_xmat[cam])
            uv, front = project(apply_transform(invert_transform(T_world_cam), c[None]), K)
            assert front.all()
            sphere = out["segmentation"][t] == m.body_geomadr[scene.object_bodies[0]]
            assert sphere[int(uv[0, 1]), int(uv[0, 0])], "projected centre is not on the sphere"
            vv, uu = np.nonzero(sphere)
            # Pixel (i, j) covers [j, j+1) × [i, i+1): its centre is (j + 0.5, i + 0.5).
            assert np.allclose([uu.mean() + 0.5, vv.mean() + 0.5], uv[0, :2], atol=0.6)
    assert (scene.geom_labels[out["segmentation"][out["segmentation"] >= 0]] == LABEL_OBJECT).any()


def test_scene_seeding_is_deterministic_and_varies():
    a, b, c = (build_scene("dex3_right", seed=s) for s in (3, 3, 4))
    assert a.spec.to_xml() == b.spec.to_xml()
    assert a.spec.to_xml() != c.spec.to_xml()
    assert np.array_equal(a.model.cam_pos, b.model.cam_pos)


def test_bad_config_and_camera_are_rejected():
    with pytest.raises(ValueError, match="object_kinds"):
        SceneConfig(object_kinds=("cube",))
    with pytest.raises(ValueError, match="fovy_deg"):
        SceneConfig(fovy_deg=(80.0, 50.0))
    scene = build_scene("dex3_right", seed=0)
    with pytest.raises(ValueError, match="unknown camera 'head'.*ego"):
        scene.camera_id("head")
