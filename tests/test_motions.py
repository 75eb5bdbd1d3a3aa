"""Synthetic human motions: shapes, frames, limits, smoothness, the pinch closing, determinism, mirroring."""

from __future__ import annotations

import numpy as np
import pytest

import embodiments
from embodiments.human import JOINT_NAMES, LIMITS
from embodiments.motions import MOTIONS, POSES, human_motion, human_motion_angles, smootherstep

LO = np.array([LIMITS[n][0] for n in JOINT_NAMES])
HI = np.array([LIMITS[n][1] for n in JOINT_NAMES])


def _tip_gap(sj, side="right"):
    pos, _ = sj.hand(side)
    return np.linalg.norm(pos[:, 4] - pos[:, 8], axis=-1)


@pytest.mark.parametrize("name", MOTIONS)
def test_motion_shapes_frame_and_limits(name):
    sj = human_motion(name, side="right", fps=16, frames=17)
    assert sj.positions.shape == (17, 42, 3) and sj.frame == "hand_root" and sj.fps == 16.0
    assert sj.embodiment == "mano_right"
    assert sj.valid[:, 21:].all() and not sj.valid[:, :21].any()
    q = human_motion_angles(name, frames=17)
    assert q.shape == (17, 20)
    assert (q >= LO - 1e-12).all() and (q <= HI + 1e-12).all()
    # positions are the skeleton's FK of the angles
    pos, _ = embodiments.get("mano_right").sparse_joints(q)
    np.testing.assert_allclose(sj.positions, pos.astype(np.float32), atol=1e-7)


@pytest.mark.parametrize("name", MOTIONS)
@pytest.mark.parametrize("fps", [30, 240])
def test_motions_are_smooth(name, fps):
    """Velocity and acceleration stay bounded however finely we sample: no jumps, no kinks."""
    q = human_motion_angles(name, fps=fps, frames=2 * fps + 1, seed=3)
    velocity = np.abs(np.diff(q, axis=0)).max() * fps
    accel = np.abs(np.diff(q, n=2, axis=0)).max() * fps**2
    assert velocity < 8.0, velocity  # rad/s, within quick human finger motion
    assert accel < 60.0, accel  # rad/s²


def test_pinch_brings_thumb_and_index_tips_together():
    sj = human_motion("pinch", frames=17)
    gap = _tip_gap(sj)
    assert gap[0] > 0.08  # starts open
    assert gap[-1] < 0.01  # ends pinched
    assert np.all(np.diff(gap) <= 1e-6)  # closes monotonically
    left = human_motion("pinch", side="left", frames=17)
    assert _tip_gap(left, "left")[-1] < 0.01


def test_keyed_motions_start_and_end_at_their_poses():
    q = human_motion_angles("power_grasp", frames=21)
    np.testing.assert_allclose(q[0], POSES["open"])
    np.testing.assert_allclose(q[-1], POSES["power_grasp"])
    np.testing.assert_allclose(human_motion_angles("grasp", frames=21), q)  # alias
    # the grasp curls the fingertips towards the palm: tips end closer to the wrist than they start
    pos, _ = human_motion("power_grasp", frames=21).hand("right")
    tips = np.linalg.norm(pos[:, [8, 12, 16, 20]], axis=-1)
    assert (tips[-1] < 0.75 * tips[0]).all()


def test_point_keeps_index_straight_and_curls_the_others():
    pos, _ = human_motion("point", frames=17).hand("right")
    last = pos[-1]
    index_len = np.linalg.norm(last[8] - last[5])
    chain = sum(np.linalg.norm(last[i + 1] - last[i]) for i in (5, 6, 7))
    assert index_len > 0.98 * chain  # nearly straight
    for mcp, tip in ((9, 12), (13, 16), (17, 20)):
        assert np.linalg.norm(last[tip] - last[mcp]) < 0.6 * sum(
            np.linalg.norm(last[i + 1] - last[i]) for i in range(mcp, mcp + 3))


def test_wave_ripples_from_index_to_pinky():
    q = human_motion_angles("wave", fps=50, frames=51)
    peaks = [int(np.argmax(q[:, JOINT_NAMES.index(f"{f}_mcp_flex")])) for f in ("index", "middle", "ring", "pinky")]
    assert peaks == sorted(peaks) and peaks[0] < peaks[-1]


def test_random_is_seeded_and_varied():
    a = human_motion_angles("random", seed=5, frames=33)
    np.testing.assert_array_equal(a, human_motion_angles("random", seed=5, frames=33))
    b = human_motion_angles("random", seed=6, frames=33)
    assert np.abs(a - b).max() > 0.1
    assert a.std(axis=0).mean() > 0.05  # it actually moves


def test_left_motion_is_the_mirror_of_the_right():
    r = human_motion("random", side="right", seed=2)
    left = human_motion("random", side="left", seed=2)
    np.testing.assert_allclose(r.mirror().positions, left.positions, atol=2e-7)
    np.testing.assert_array_equal(r.mirror().valid, left.valid)


def test_single_frame_and_fps():
    one = human_motion("pinch", frames=1)
    assert len(one) == 1 and _tip_gap(one)[0] < 0.01
    assert human_motion("wave", fps=8, frames=5).fps == 8.0


def test_smootherstep_endpoints():
    s = smootherstep(np.array([-1.0, 0.0, 0.5, 1.0, 2.0]))
    np.testing.assert_allclose(s, [0.0, 0.0, 0.5, 1.0, 1.0])


@pytest.mark.parametrize("kwargs, match", [({"name": "jump"}, "pinch"), ({"name": "open", "side": "up"}, "side"),
                                           ({"name": "open", "fps": 0}, "fps"),
                                           ({"name": "open", "frames": 0}, "frames"),
                                           ({"name": "open", "frames": 2.5}, "frames")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        human_motion(**kwargs)
