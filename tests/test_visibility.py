"""Per-joint visibility from the segmentation and depth renders, and what counts as sustained occlusion."""

import numpy as np
import pytest

import embodiments
from embodiments.layout import SLOT_NAMES
from sim_bridge import SceneConfig, build_scene, hand_axes, rollout, wrist_pose
from sim_bridge.visibility import (
    ENVIRONMENT,
    NOT_IN_IMAGE,
    OBJECT,
    OTHER_HAND,
    OWN_FINGER,
    OWN_PALM,
    VISIBLE,
    hidden_by,
    joint_occluders,
    joint_visibility,
    occluded,
    sustained_occlusion,
)

# --------------------------------------------------------------------------- the rule on hand-made renders
OWN, OTHER = 0, 1  # geom ids: joint 0 owns geom 0; geom 1 is someone else's


def _render(geom: int, surface: float):
    """A 1-frame 4×4 render showing ``geom`` at ``surface`` metres everywhere."""
    return np.full((1, 4, 4), geom, np.int32), np.full((1, 4, 4), surface, np.float32)


@pytest.mark.parametrize("geom, surface, expected", [
    (OTHER, 0.30, False),  # something else 10 cm in front of the joint hides it
    (OWN, 0.30, True),  # its own link's surface in front of it does not
    (OTHER, 0.45, True),  # something else behind it (the table) does not
    (-1, 0.30, True),  # nothing at all (sky)
    (OTHER, 0.398, True),  # within the 4 mm margin: touching, not in front
])
def test_rule_on_a_hand_made_render(geom, surface, expected):
    seg, depth = _render(geom, surface)
    uvz = np.array([[[1.5, 2.5, 0.40]]])  # pixel (1, 2), 40 cm away
    owners = np.array([[True, False]])
    assert joint_visibility(seg, depth, uvz, np.ones((1, 1), bool), owners)[0, 0] == expected


def test_joints_outside_the_image_or_invalid_are_not_visible():
    seg, depth = _render(-1, 1.0)
    uvz = np.array([[[1.5, 2.5, 0.4], [4.2, 1.0, 0.4], [-0.1, 1.0, 0.4], [1.0, 1.0, 0.4]]])
    valid = np.array([[True, True, True, False]])
    vis = joint_visibility(seg, depth, uvz, valid, np.zeros((4, 2), bool))
    assert vis.tolist() == [[True, False, False, False]]


def test_sustained_occlusion_needs_enough_joints_in_enough_frames():
    hidden = np.zeros((4, 42), bool)
    hidden[:2, :3] = True  # 3 joints hidden in 2 of 4 frames: exactly 50 %
    assert sustained_occlusion(hidden, min_joints=3, min_fraction=0.5)
    assert not sustained_occlusion(hidden, min_joints=4, min_fraction=0.5)
    assert not sustained_occlusion(hidden, min_joints=3, min_fraction=0.75)
    valid = np.ones((4, 42), bool)
    valid[:, 10:20] = False  # out of the image is not occlusion
    assert occluded(np.zeros((4, 42), bool), valid)[:, 10:20].sum() == 0


def test_occluder_kinds_on_a_hand_made_render():
    # One joint; geoms 0–3 are, to it: its own link, its palm, another finger, an object.
    classes = np.array([[VISIBLE, OWN_PALM, OWN_FINGER, OBJECT]], np.int8)
    uvz = np.array([[[1.5, 2.5, 0.40]]])
    for geom, expected in ((0, VISIBLE), (1, OWN_PALM), (2, OWN_FINGER), (3, OBJECT)):
        seg, depth = _render(geom, 0.3)
        assert joint_occluders(seg, depth, uvz, np.ones((1, 1), bool), classes)[0, 0] == expected
    seg, depth = _render(3, 0.3)
    assert joint_occluders(seg, depth, uvz, np.zeros((1, 1), bool), classes)[0, 0] == NOT_IN_IMAGE
    codes = np.array([[OWN_PALM, OWN_FINGER, OTHER_HAND, OBJECT, ENVIRONMENT, VISIBLE, NOT_IN_IMAGE]])
    assert hidden_by(codes).tolist() == [[False, True, True, True, False, False, False]]  # between parts


# --------------------------------------------------------------------------- a real scene with a box in front
@pytest.fixture(scope="module")
def still_hand():
    emb = embodiments.get("inspire_right")
    scene = build_scene(emb, SceneConfig(randomize=False, num_objects=(1, 1), object_kinds=("box",)), seed=0)
    ax = hand_axes(emb)
    q = np.repeat(ax.open_q[None], 1, 0)
    w = np.repeat(wrist_pose(ax, [0.05, 0.14, 0.1])[None], 1, 0)
    return emb, scene, q, w


def _box_at(scene, centre, half):
    m = scene.model
    adr = scene.object_free_qadr[0]
    m.qpos0[adr:adr + 3] = centre
    m.qpos0[adr + 3:adr + 7] = [1, 0, 0, 0]
    m.geom_size[m.body_geomadr[scene.object_bodies[0]]] = [half] * 3


def test_box_in_front_of_the_wrist_hides_it_and_only_nearby_joints(still_hand):
    emb, scene, q, w = still_hand
    wrist = SLOT_NAMES.index("right_wrist")
    tip = SLOT_NAMES.index("right_middle_tip")
    _box_at(scene, [0.5, 0.5, 0.01], 0.01)  # far off to the side: nothing in front of the hand
    clear = rollout(emb, q, w, scene=scene, depth=True, segmentation=True, size=(128, 128))
    assert clear.visible[0, wrist] and clear.visible[0, tip]
    # A 2.4 cm cube on the line from the camera to the wrist, 40 % of the way to the camera.
    eye, wrist_xyz = clear.T_world_cam[0, :3, 3], clear.T_world_hand[0, :3, 3]
    _box_at(scene, wrist_xyz + 0.4 * (eye - wrist_xyz), 0.012)
    hidden = rollout(emb, q, w, scene=scene, depth=True, segmentation=True, size=(128, 128))
    assert not hidden.visible[0, wrist] and hidden.joints.valid[0, wrist]  # in the image, but hidden ...
    assert hidden.occluded_by[0, wrist] == OBJECT  # ... by the box
    assert hidden.visible[0, tip]  # the fingertips, 15 cm away from the wrist, are still in sight
    assert not hidden.visible[0, :21].any()  # the left half is empty in a right-hand scene


def test_no_visibility_without_both_renders(still_hand):
    emb, scene, q, w = still_hand
    assert rollout(emb, q, w, scene=scene, segmentation=True, size=(32, 32)).visible is None
