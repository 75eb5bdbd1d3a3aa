"""The joint editor without a browser: editing state, undo/redo, export, upload checks, 2D overlay, runners."""

from __future__ import annotations

import io

import numpy as np
import pytest

from dexworld.editor.overlay import SELECTED_RGB, trajectory_overlay
from dexworld.editor.state import (
    EditorState,
    check_image_matches,
    largest_4k1,
    load_image_bytes,
    load_joints_bytes,
)
from embodiments.layout import NUM_SLOTS, SLOT_NAMES, hand_slots, slot_index
from embodiments.motions import human_motion
from embodiments.sparse import SparseJoints
from embodiments.transforms import intrinsics, make_transform, rotation_about

K = intrinsics(90.0, 90.0, 48.0, 40.0)  # a 96 x 80 reference image
IMAGE_HW = (80, 96)


def make_joints(T: int = 17) -> SparseJoints:
    """A right-hand pinch ~0.35 m in front of the camera (camera frame, with K)."""
    m = human_motion("pinch", "right", frames=T)
    T_cam_root = make_transform(rotation_about([1.0, 0.0, 0.0], -np.pi / 2), [0.0, 0.02, 0.35])
    return m.transform(T_cam_root, "camera", K=K)


def cosine(d: np.ndarray, width: float) -> np.ndarray:
    """The raised-cosine window, written out independently of worldmodel.editing."""
    x = np.clip(np.abs(d) / width, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * x))


@pytest.fixture
def joints() -> SparseJoints:
    return make_joints()


# ---------------------------------------------------------------------------------------------- editing
def test_default_selection_is_a_valid_index_tip(joints):
    st = EditorState(joints)
    assert st.selection == (slot_index("right_index_tip"),)
    assert st.present_sides == ("right",)
    assert all(n.startswith("right_") for n in st.selectable_names())


def test_offset_at_keyframe_spreads_with_cosine_falloff(joints):
    st = EditorState(joints)
    st.set_frame(8)
    st.set_falloff("cosine", 4)
    off = np.array([0.02, -0.01, 0.03])
    st.apply(offset=off)
    d = st.displacement()
    tip = slot_index("right_index_tip")
    expected = cosine(np.arange(17) - 8, 4.0)[:, None] * off
    np.testing.assert_allclose(d[:, tip], expected, atol=1e-6)
    others = np.ones(NUM_SLOTS, bool)
    others[tip] = False
    assert np.abs(d[:, others]).max() == 0.0
    # the loaded joints are untouched
    np.testing.assert_array_equal(st.original.positions, joints.positions)


def test_linear_and_none_falloff(joints):
    st = EditorState(joints)
    st.set_frame(5)
    st.set_falloff("linear", 2)
    st.apply(offset=[0.0, 0.0, 0.04])
    tip = st.selection[0]
    np.testing.assert_allclose(st.displacement()[3:8, tip, 2], [0.0, 0.02, 0.04, 0.02, 0.0], atol=1e-6)
    st.set_falloff("none")
    st.apply(offset=[0.01, 0.0, 0.0])
    dx = st.displacement()[:, tip, 0]
    assert dx[5] == pytest.approx(0.01, abs=1e-6) and np.abs(np.delete(dx, 5)).max() < 1e-7


def test_whole_hand_moves_rigidly_with_rotation(joints):
    st = EditorState(joints)
    st.set_mode("hand")
    right = list(hand_slots("right"))
    assert st.selection == tuple(right) and st.selection[0] == slot_index("right_wrist")
    st.set_frame(6)
    st.apply(offset=[0.01, 0.02, -0.03], rotation=[0.0, 0.0, 0.5])
    new, old = st.joints.positions[:, right], joints.positions[:, right]
    pair = lambda p: np.linalg.norm(p[:, :, None] - p[:, None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(pair(new), pair(old), atol=1e-5)  # rigid in every frame
    # wrist (the pivot) just translates at the keyframe
    np.testing.assert_allclose(new[6, 0] - old[6, 0], [0.01, 0.02, -0.03], atol=1e-6)
    # the rotation is 0.5 rad about camera z at the keyframe
    v0, v1 = old[6, 8] - old[6, 0], new[6, 8] - new[6, 0]
    np.testing.assert_allclose(rotation_about([0, 0, 1], 0.5) @ v0, v1, atol=1e-5)


def test_set_mode_builds_a_subset_and_toggles(joints):
    st = EditorState(joints)
    st.set_mode("set")
    st.pick("right_thumb_tip")
    st.pick("right_middle_tip")
    assert [SLOT_NAMES[i] for i in st.selection] == ["right_index_tip", "right_thumb_tip", "right_middle_tip"]
    st.pick("right_thumb_tip")  # toggles off
    assert [SLOT_NAMES[i] for i in st.selection] == ["right_index_tip", "right_middle_tip"]
    st.apply(offset=[0.0, 0.01, 0.0])
    moved = np.flatnonzero(np.abs(st.displacement()).max(axis=(0, 2)) > 0)
    assert sorted(moved) == sorted(st.selection)
    st.set_mode("joint")
    assert st.selection == (slot_index("right_index_tip"),)


def test_apply_target_puts_anchor_there(joints):
    st = EditorState(joints)
    st.set_frame(3)
    target = st.anchor_position() + [0.05, 0.0, -0.02]
    st.apply_target(target)
    np.testing.assert_allclose(st.joints.positions[3, st.selection[0]], target, atol=1e-6)


def test_undo_redo_reset(joints):
    st = EditorState(joints)
    assert not st.can_undo and not st.can_redo
    st.apply(offset=[0.01, 0, 0])
    a = st.joints.positions.copy()
    st.apply(offset=[0, 0.02, 0])
    b = st.joints.positions.copy()
    assert st.undo()
    np.testing.assert_array_equal(st.joints.positions, a)
    assert st.redo()
    np.testing.assert_array_equal(st.joints.positions, b)
    assert not st.redo()
    st.undo()
    st.apply(offset=[0, 0, 0.03])  # a new edit drops the redo branch
    assert not st.can_redo and len(st.history_labels) == 3
    st.reset()
    np.testing.assert_array_equal(st.joints.positions, joints.positions)
    st.undo()
    assert np.abs(st.displacement()).max() > 0.02
    assert st.undo() and st.undo() and not st.undo()
    np.testing.assert_array_equal(st.joints.positions, joints.positions)
    # a zero edit records nothing
    st.apply(offset=[0, 0, 0])
    assert not st.can_undo


def test_history_is_bounded_and_keeps_the_original(joints):
    st = EditorState(joints, max_history=4)
    for _ in range(10):
        st.apply(offset=[0.001, 0, 0])
    assert len(st.history_labels) == 4 and st.history_labels[0] == "loaded"
    while st.undo():
        pass
    np.testing.assert_array_equal(st.joints.positions, joints.positions)


def test_export_round_trip(joints, tmp_path):
    st = EditorState(joints)
    st.apply(offset=[0.0, 0.0, 0.02])
    path = st.export_joints(tmp_path / "edited.npz")
    back = SparseJoints.load(path)
    np.testing.assert_array_equal(back.positions, st.joints.positions)
    np.testing.assert_array_equal(back.valid, joints.valid)
    np.testing.assert_allclose(back.K, K)
    assert back.fps == joints.fps and back.frame == "camera"


def test_bad_settings_and_picks_are_refused(joints):
    st = EditorState(joints)
    with pytest.raises(ValueError, match="frame must be in 0..16"):
        st.set_frame(17)
    with pytest.raises(ValueError, match="falloff must be one of"):
        st.set_falloff("gauss")
    with pytest.raises(ValueError, match="not valid in any frame"):
        st.pick("left_wrist")
    with pytest.raises(ValueError, match="unknown joint"):
        st.pick("right_elbow")
    with pytest.raises(ValueError, match="offset must be three finite numbers"):
        st.apply(offset=[0.0, np.nan, 0.0])
    with pytest.raises(ValueError, match="camera frame"):
        EditorState(joints.replace(frame="world"))
    with pytest.raises(ValueError, match="no intrinsics K"):
        EditorState(joints.replace(K=None))


# ---------------------------------------------------------------------------------------------- uploads
def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_joint_uploads(joints, tmp_path):
    good = joints.save(tmp_path / "j.npz").read_bytes()
    back = load_joints_bytes("j.npz", good)
    np.testing.assert_array_equal(back.positions, joints.positions)
    meta = dict(schema_version=np.asarray(1), frame=np.asarray("camera"), fps=np.asarray(16.0),
                embodiment=np.asarray("x"), mirrored=np.asarray(False))
    with pytest.raises(ValueError, match=r"'bad.npz'.*\(T, 42, 3\)"):
        load_joints_bytes("bad.npz", _npz_bytes(positions=np.zeros((5, 21, 3), np.float32), **meta))
    with pytest.raises(ValueError, match="'junk.npz'"):
        load_joints_bytes("junk.npz", b"not a zip file at all")
    with pytest.raises(ValueError, match="empty"):
        load_joints_bytes("e.npz", b"")
    with pytest.raises(ValueError, match=".npz or .h5"):
        load_joints_bytes("j.json", good)
    world = joints.replace(frame="world").save(tmp_path / "w.npz").read_bytes()
    with pytest.raises(ValueError, match="camera frame"):
        load_joints_bytes("w.npz", world)


def _png(h: int, w: int) -> bytes:
    import PIL.Image

    buf = io.BytesIO()
    PIL.Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_image_uploads(joints):
    img = load_image_bytes("ref.png", _png(*IMAGE_HW))
    assert img.shape == (*IMAGE_HW, 3) and img.dtype == np.uint8
    check_image_matches(img, joints)
    with pytest.raises(ValueError, match="not a readable image"):
        load_image_bytes("x.png", b"\x89PNG garbage")
    with pytest.raises(ValueError, match="between 16 and"):
        load_image_bytes("small.png", _png(8, 8))
    big = load_image_bytes("big.png", _png(2 * IMAGE_HW[0], 2 * IMAGE_HW[1]))  # twice K's resolution
    with pytest.raises(ValueError, match="principal point"):
        check_image_matches(big, joints)


def test_largest_4k1():
    assert [largest_4k1(n) for n in (1, 4, 5, 8, 9, 17, 20)] == [1, 1, 5, 5, 9, 17, 17]


# ---------------------------------------------------------------------------------------------- overlay
def test_overlay_marks_the_selected_joint_where_it_projects(joints):
    st = EditorState(joints)
    st.set_frame(4)
    st.apply(offset=[0.01, 0.0, 0.0])
    image = np.zeros((*IMAGE_HW, 3), np.uint8)
    out = trajectory_overlay(image, st.joints, 4, st.selection, original=st.original, scale=4)
    assert out.shape == (IMAGE_HW[0] * 4, IMAGE_HW[1] * 4, 3)
    uvd, ok = st.joints.project()
    tip = st.selection[0]
    assert ok[4, tip]
    u, v = (uvd[4, tip, :2] * 4).round().astype(int)
    np.testing.assert_array_equal(out[v, u], SELECTED_RGB)
    # the 2D move matches the pinhole projection of the 3D move: ~fx · 1 cm / z pixels
    uvd0, _ = st.original.project()
    du = (uvd[4, tip, 0] - uvd0[4, tip, 0])
    assert du == pytest.approx(90.0 * 0.01 / st.joints.positions[4, tip, 2], rel=0.05)
