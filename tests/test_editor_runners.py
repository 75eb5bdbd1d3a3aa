"""What the editor's Generate and Simulate buttons run (no browser): tiny video model, retarget + MuJoCo rollout."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dexworld.editor.runners import GenerateSettings, VideoGenerator, simulate, simulation_pair
from embodiments import get
from embodiments.sparse import SparseJoints
from embodiments.transforms import intrinsics, make_transform, rotation_about
from sim_bridge.hand_pose import hands_in_camera

os.environ.setdefault("MUJOCO_GL", "egl")
SMALL_TINY = dict(num_layers=1, num_attention_heads=2, attention_head_dim=16, ffn_dim=32, text_dim=32, clip_hidden=32)
K = intrinsics(70.0, 70.0, 32.0, 32.0)


def robot_joints(T: int = 5) -> SparseJoints:
    """inspire_right closing its fingers, palm ~0.3 m in front of the camera."""
    emb = get("inspire_right")
    s = np.linspace(0.0, 1.0, T)[:, None]
    q = emb.lower + (0.2 + 0.5 * s) * (emb.upper - emb.lower)
    T_cam_root = make_transform(rotation_about([1.0, 0.0, 0.0], -np.pi / 2), [0.0, 0.0, 0.3])
    return hands_in_camera({"inspire_right": q}, {"inspire_right": T_cam_root}, K, fps=8.0)


def test_fresh_tiny_generator_reports_progress_and_makes_4k1_frames():
    gen = VideoGenerator(None, tiny_overrides=SMALL_TINY, use_shipped=False)
    assert gen.untrained and "random weights" in gen.describe()
    joints = robot_joints(T=7)
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    calls = []
    video = gen(image, joints, GenerateSettings(steps=3, guidance=1.0), progress=lambda i, n: calls.append((i, n)))
    assert video.shape == (5, 64, 64, 3) and video.dtype == np.uint8  # 7 joint frames → the 5 of form 4k+1
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert "progress_bar" not in gen.pipeline().__dict__  # the per-call hook is removed again
    again = gen(image, joints, GenerateSettings(steps=3, guidance=1.0))
    np.testing.assert_array_equal(video, again)  # same seed, same video


def test_generator_refuses_a_folder_that_is_no_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a dexworld checkpoint"):
        VideoGenerator(tmp_path)


def test_simulation_pair_choices():
    j = robot_joints()
    assert simulation_pair(j) == ("inspire_right", "inspire_right")
    assert simulation_pair(j, "dex3_right") == ("inspire_right", "dex3_right")
    human = j.replace(embodiment="unknown")
    assert simulation_pair(human) == ("mano_right", "inspire_right")
    with pytest.raises(ValueError, match="no valid left-hand joints"):
        simulation_pair(j, "dex3_left")
    with pytest.raises(ValueError, match="needs a robot hand"):
        simulation_pair(j, "mano_right")


def test_simulate_reproduces_the_joints_in_the_camera():
    """Same hand in and out: the rolled-out robot sits where the joints say, relative to the camera."""
    j = robot_joints(T=5)
    res = simulate(j, image_size=(64, 64), height=48)
    assert res.frames.shape == (5, 48, 48, 3) and res.frames.dtype == np.uint8
    assert res.fit_rms < 2e-3
    both = j.valid & res.joints.valid
    assert both.sum() >= 5 * 10
    err = np.linalg.norm(res.joints.positions - j.positions, axis=-1)[both]
    assert err.max() < 5e-3  # metres
    # the rendered hand is visible: the frames are not a constant background
    assert res.frames.std() > 5
