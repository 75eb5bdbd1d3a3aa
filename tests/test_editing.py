"""Joint editing: exact at keyframes, untouched outside the window, rigid moves keep bone lengths, pure."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embodiments.layout import hand_slots, skeleton_edges, slot_index
from embodiments.sparse import SparseJoints
from worldmodel.editing import edit_joints, falloff_weight, keyframe_profile, resolve_joint_ids

T = 21


def _joints(seed=0, T=T):
    rng = np.random.default_rng(seed)
    pos = rng.normal([0.0, 0.0, 0.5], 0.05, (T, 42, 3))
    valid = np.ones((T, 42), bool)
    valid[3, 5] = False
    return SparseJoints(pos, valid, K=np.diag([500.0, 500.0, 1.0]), fps=16.0)


def _bones(pos, side):
    return np.array([np.linalg.norm(pos[:, a] - pos[:, b], axis=-1) for a, b in skeleton_edges(side)])


@settings(max_examples=25, deadline=None)
@given(key=st.integers(0, T - 1), width=st.floats(1.0, 8.0),
       offset=st.lists(st.floats(-0.2, 0.2), min_size=3, max_size=3), falloff=st.sampled_from(["cosine", "linear"]))
def test_single_joint_exact_at_key_untouched_outside(key, width, offset, falloff):
    j = _joints()
    tip = slot_index("right_index_tip")
    out = edit_joints(j, tip, offset=offset, frames=key, width=width, falloff=falloff)
    d = out.positions.astype(np.float64) - j.positions
    np.testing.assert_allclose(d[key, tip], offset, atol=1e-6)
    far = np.abs(np.arange(T) - key) >= width
    assert np.all(d[far] == 0)  # bitwise untouched outside the window
    others = np.ones(42, bool)
    others[tip] = False
    assert np.all(d[:, others] == 0)  # only the selected joint moves
    # The displacement never exceeds the keyframe's and decays monotonically away from it.
    mag = np.linalg.norm(d[:, tip], axis=-1)
    assert mag.max() <= np.linalg.norm(offset) + 1e-6
    assert np.all(np.diff(mag[key:]) <= 1e-7) and np.all(np.diff(mag[:key + 1]) >= -1e-7)


def test_whole_hand_rigid_move_keeps_bone_lengths():
    j = _joints(1)
    out = edit_joints(j, "right", offset=[0.05, -0.02, 0.03], frames=[5, 15], width=6,
                      rotation=[0.0, 0.0, 0.6])
    np.testing.assert_allclose(_bones(out.positions, "right"), _bones(j.positions, "right"), atol=1e-6)
    # The other hand is untouched; the moved hand really moved.
    left = slice(hand_slots("left").start, hand_slots("left").stop)
    assert np.array_equal(out.positions[:, left], j.positions[:, left])
    # At a keyframe the wrist (rotation pivot, first slot of the hand) is offset exactly.
    wrist = hand_slots("right").start
    np.testing.assert_allclose(out.positions[5, wrist] - j.positions[5, wrist], [0.05, -0.02, 0.03], atol=1e-6)


def test_target_places_the_anchor_and_moves_the_set_rigidly():
    j = _joints(2)
    ids = [slot_index("right_wrist"), slot_index("right_thumb_tip"), slot_index("right_pinky_tip")]
    target = np.array([[0.1, 0.1, 0.6], [0.0, -0.1, 0.4]])
    out = edit_joints(j, ids, target=target, frames=[4, 16], width=5)
    np.testing.assert_allclose(out.positions[[4, 16], ids[0]], target, atol=1e-6)
    d = out.positions[:, ids] - j.positions[:, ids]
    np.testing.assert_allclose(d, np.broadcast_to(d[:, :1], d.shape), atol=1e-6)  # same shift for all three


def test_close_keyframes_ease_without_dipping():
    prof = keyframe_profile(20, np.array([8, 11]), np.array([[1.0], [1.0]]), width=4)[:, 0]
    np.testing.assert_allclose(prof[8:12], 1.0)  # equal neighbouring edits hold in between
    prof = keyframe_profile(20, np.array([8, 11]), np.array([[1.0], [2.0]]), width=4)[:, 0]
    assert prof[8] == 1.0 and prof[11] == 2.0 and np.all(np.diff(prof[8:12]) > 0)
    # Far-apart keyframes fade out independently.
    prof = keyframe_profile(30, np.array([5, 20]), np.array([[1.0], [1.0]]), width=4)[:, 0]
    assert np.all(prof[9:17] == 0)


def test_falloff_window_shapes():
    d = np.arange(6)
    np.testing.assert_allclose(falloff_weight(d, 4, "cosine"), [1, 0.853553, 0.5, 0.146447, 0, 0], atol=1e-6)
    np.testing.assert_allclose(falloff_weight(d, 4, "linear"), [1, 0.75, 0.5, 0.25, 0, 0])
    np.testing.assert_array_equal(falloff_weight(d, 4, "none"), [1, 0, 0, 0, 0, 0])
    # The raised cosine is smooth at both ends: zero slope at the keyframe and at the window edge.
    eps = 1e-4
    assert abs(falloff_weight(eps, 4) - 1) < 1e-6 and falloff_weight(4 - eps, 4) < 1e-6


def test_edit_is_pure_and_keeps_metadata_and_invalid_slots():
    j = _joints(3)
    before = j.positions.copy()
    out = edit_joints(j, "all", offset=[0.0, 0.0, 0.1], frames=-1, width=3)
    assert np.array_equal(j.positions, before)
    assert np.array_equal(out.valid, j.valid) and out.K is j.K and out.fps == j.fps
    assert np.array_equal(out.positions[3, 5], j.positions[3, 5])  # invalid slot untouched
    np.testing.assert_allclose(out.positions[T - 1] - j.positions[T - 1], np.tile([0, 0, 0.1], (42, 1)), atol=1e-6)


def test_resolve_and_errors():
    assert list(resolve_joint_ids("left")) == list(range(21))
    assert list(resolve_joint_ids(["right_wrist", 3, 3])) == [21, 3]
    j = _joints()
    with pytest.raises(KeyError, match="unknown slot"):
        resolve_joint_ids("right_elbow")
    with pytest.raises(ValueError, match="out of range"):
        resolve_joint_ids(42)
    with pytest.raises(ValueError, match="exactly one of offset= or target="):
        edit_joints(j, 0, frames=2)
    with pytest.raises(ValueError, match="not both"):
        edit_joints(j, 0, offset=[0, 0, 0], target=[0, 0, 0], frames=2)
    with pytest.raises(ValueError, match=r"offset must have shape \(3,\) or \(2, 3\)"):
        edit_joints(j, 0, offset=[[0, 0, 0]] * 3, frames=[1, 2])
    with pytest.raises(ValueError, match="out of range"):
        edit_joints(j, 0, offset=[0, 0, 0], frames=T)
    with pytest.raises(ValueError, match="distinct"):
        edit_joints(j, 0, offset=[0, 0, 0], frames=[2, 2])
    with pytest.raises(ValueError, match="falloff"):
        edit_joints(j, 0, offset=[0, 0, 0], frames=2, falloff="gauss")
    with pytest.raises(ValueError, match="valid at every keyframe"):
        edit_joints(j, 5, target=[0, 0, 0.5], frames=3)
