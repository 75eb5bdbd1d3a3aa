"""``worldmodel.evaluation.video.draw_joints``: drawn pixels against a per-pixel reference, validity, clipping."""

import numpy as np
import pytest

from embodiments.layout import NUM_SLOTS, skeleton_edges
from worldmodel.evaluation.video import HAND_COLOURS, draw_joints

H, W = 16, 20
GREY = 90


def _blank(T=1):
    return np.full((T, H, W, 3), GREY, np.uint8)


def _only(slots_uv: dict, T=1):
    """uv (T, 42, 2) and valid (T, 42) with only ``slots_uv`` {slot: (u, v)} valid."""
    uv = np.zeros((T, NUM_SLOTS, 2))
    valid = np.zeros((T, NUM_SLOTS), bool)
    for j, p in slots_uv.items():
        uv[:, j] = p
        valid[:, j] = True
    return uv, valid


def _disc_reference(u, v, r):
    """Pixels (y, x) whose centre (x + .5, y + .5) is within r of (u, v), plus the pixel (u, v) falls in."""
    pix = set()
    for y in range(H):
        for x in range(W):
            if (x + 0.5 - u) ** 2 + (y + 0.5 - v) ** 2 <= r * r or (x == np.floor(u) and y == np.floor(v)):
                pix.add((y, x))
    return pix


def _painted(out, frame=0):
    return {(int(y), int(x)) for y, x in np.argwhere((out[frame] != GREY).any(-1))}


@pytest.mark.parametrize("slot, side", [(4, 0), (8 + 21, 1)])
@pytest.mark.parametrize("u, v, r", [(7.3, 5.8, 1.5), (0.2, 15.9, 2.0), (12.0, 3.0, 0.4), (-0.8, 6.5, 1.5)])
def test_lone_joint_paints_exactly_its_disc_in_its_hand_colour(slot, side, u, v, r):
    uv, valid = _only({slot: (u, v)})
    out = draw_joints(_blank(), uv, valid, radius=r)
    expected = _disc_reference(u, v, r)
    assert expected and _painted(out) == expected
    ys, xs = np.array(sorted(expected)).T
    assert (out[0, ys, xs] == HAND_COLOURS[side]).all()
    if 0 <= u < W and 0 <= v < H:  # the pixel the joint falls in carries the hand colour
        assert (out[0, int(np.floor(v)), int(np.floor(u))] == HAND_COLOURS[side]).all()


def test_invalid_or_non_finite_joints_leave_the_frame_untouched():
    frames = np.random.default_rng(0).integers(0, 256, (3, H, W, 3), dtype=np.uint8)
    rng = np.random.default_rng(1)
    uv = rng.uniform(0, 16, (3, NUM_SLOTS, 2))
    out = draw_joints(frames, uv, np.zeros((3, NUM_SLOTS), bool))
    assert np.array_equal(out, frames)
    uv[:] = np.nan  # what SparseJoints.project gives behind the camera
    assert np.array_equal(draw_joints(frames, uv, np.ones((3, NUM_SLOTS), bool)), frames)
    # A valid wrist with an invalid child: only the wrist's disc, no bone towards the child.
    uv, valid = _only({0: (3.5, 3.5), 1: (15.5, 12.5)})
    valid[:, 1] = False
    assert _painted(draw_joints(_blank(), uv, valid, radius=1.0)) == _disc_reference(3.5, 3.5, 1.0)


def test_input_is_not_modified_and_float_frames_become_uint8():
    frames = _blank()
    uv, valid = _only({0: (5.0, 5.0)})
    draw_joints(frames, uv, valid)
    assert (frames == GREY).all()
    out = draw_joints(np.full((1, H, W, 3), GREY / 255.0, np.float32), uv, valid)
    assert out.dtype == np.uint8 and _painted(out) == _painted(draw_joints(frames, uv, valid))


def test_joints_outside_the_image_are_skipped():
    uv, valid = _only({0: (1e6, -1e6), 21: (-50.0, 8.0), 22: (8.0, H + 40.0)})
    out = draw_joints(_blank(), uv, valid)  # wrist 21 and its child 22 both outside: the bone misses the image
    assert _painted(out) == set()


@pytest.mark.parametrize("child_uv", [(17.5, 12.5), (2.5, 14.2), (1e7, 3.5)])
def test_bones_connect_parent_and_child(child_uv):
    a = np.array([2.5, 3.5])
    b = np.array(child_uv)
    uv, valid = _only({21 + 5: tuple(a), 21 + 6: tuple(b)})  # right index MCP → PIP is a bone
    assert (21 + 5, 21 + 6) in skeleton_edges()
    out = draw_joints(_blank(), uv, valid, radius=1.5)
    painted = _painted(out)
    # Every pixel the segment passes through (densely sampled over its first 100 px) is painted in the right-hand
    # colour.
    s = np.linspace(0, min(1.0, 100 / np.linalg.norm(b - a)), 200_001)[:, None]
    pts = np.floor((1 - s) * a + s * b).astype(int)
    pts = pts[(pts[:, 0] >= 0) & (pts[:, 0] < W) & (pts[:, 1] >= 0) & (pts[:, 1] < H)]
    on_line = {(int(y), int(x)) for x, y in pts}
    assert on_line <= painted
    ys, xs = np.array(sorted(painted)).T
    assert (out[0, ys, xs] == HAND_COLOURS[1]).all()
    # Bones off: only the two discs.
    no_bones = _painted(draw_joints(_blank(), uv, valid, radius=1.5, bones=False))
    assert no_bones == _disc_reference(*a, 1.5) | _disc_reference(*b, 1.5)
    assert on_line - no_bones  # the bone added pixels


def test_no_bone_between_joints_that_are_not_parent_and_child():
    uv, valid = _only({4: (2.5, 2.5), 8: (17.5, 13.5)})  # thumb tip and index tip
    out = draw_joints(_blank(), uv, valid, radius=1.0)
    assert _painted(out) == _disc_reference(2.5, 2.5, 1.0) | _disc_reference(17.5, 13.5, 1.0)


def test_all_frames_at_once_equals_frame_by_frame():
    rng = np.random.default_rng(2)
    T = 5
    frames = rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8)
    uv = rng.uniform(-5, 25, (T, NUM_SLOTS, 2))
    valid = rng.random((T, NUM_SLOTS)) < 0.6
    out = draw_joints(frames, uv, valid)
    for t in range(T):
        assert np.array_equal(out[t], draw_joints(frames[t:t + 1], uv[t:t + 1], valid[t:t + 1])[0])


def test_bad_shapes_are_named():
    uv, valid = _only({0: (1.0, 1.0)})
    with pytest.raises(ValueError, match="uv must have shape"):
        draw_joints(_blank(2), uv, valid)
    with pytest.raises(ValueError, match="valid must have shape"):
        draw_joints(_blank(), uv, valid[:, :21])
    with pytest.raises(ValueError, match="radius"):
        draw_joints(_blank(), uv, valid, radius=0)
    with pytest.raises(ValueError, match="frames must have shape"):
        draw_joints(np.zeros((H, W, 3)), uv, valid)
