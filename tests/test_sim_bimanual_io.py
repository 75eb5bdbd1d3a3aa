"""Pair rollouts on disk: training clips (HDF5) and LeRobot datasets keep both halves, left hand first, and a
LeRobot export refuses to mix a pair with a single hand (tiny 32×48 renders, 5 frames)."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _sim_helpers import pair_motion  # noqa: E402

import embodiments  # noqa: E402
from embodiments.clip import read_clip
from embodiments.transforms import apply_transform, invert_transform  # noqa: E402
from sim_bridge import lerobot_io as lio  # noqa: E402
from sim_bridge.clips import episode_from_clip, episode_from_rollout  # noqa: E402
from sim_bridge.rollout import rollout  # noqa: E402
from sim_bridge.scene import SceneConfig, build_scene  # noqa: E402
from sim_bridge.synth import Episode as SynthEpisode  # noqa: E402
from sim_bridge.synth import write_episode  # noqa: E402
from sim_bridge.unitree import unitree_layout  # noqa: E402
from worldmodel.training.data import ClipDataset

PAIR = ("inspire_left", "dex3_right")  # different DoF (6 + 7), so a swapped or shifted layout cannot pass
T, SIZE = 5, (32, 48)
REPO = "local/bimanual"
NO_OBJECTS = SceneConfig(num_objects=(0, 0), randomize=False)


@pytest.fixture(scope="module")
def pair_rollout():
    # given right first: outputs must still be left first
    q, w = pair_motion(PAIR[::-1], T, (0.08, -0.08), z=0.09, turn=0.0)
    return rollout(PAIR, q, w, scene=build_scene(PAIR, NO_OBJECTS, seed=0), size=SIZE)


@pytest.fixture(scope="module")
def single_rollout():
    q, w = pair_motion(("dex3_right",), T, (0.05,), z=0.09, turn=0.0)
    return rollout("dex3_right", q["dex3_right"], w["dex3_right"], scene=build_scene("dex3_right", NO_OBJECTS),
                   size=SIZE)


def test_pair_rollout_writes_a_training_clip_with_both_halves(tmp_path, pair_rollout):
    r = pair_rollout
    left, right = (embodiments.get(n) for n in PAIR)
    assert r.joints.valid[:, left.slot_mask].all() and r.joints.valid[:, right.slot_mask].all()
    ep = SynthEpisode(q=r.q_target, wrist_path=r.T_world_hand, prompt="two hands", kind="random")
    path = write_episode(tmp_path / "pair.h5", r, ep, {"seed": 0, "episode": 0})
    clip = read_clip(path)
    assert clip.joints.embodiment == "inspire_left+dex3_right" and clip.prompt == "two hands"
    np.testing.assert_array_equal(clip.frames, r.frames)
    np.testing.assert_array_equal(clip.joints.positions, r.joints.positions)
    np.testing.assert_array_equal(clip.joints.valid, r.joints.valid)
    # q, q_target: left hand's joints then the right's; T_world_hand: (T, 2, 4, 4), left then right.
    q, qt, Tw = clip.extra["q"], clip.extra["q_target"], clip.extra["T_world_hand"]
    assert q.shape == qt.shape == (T, 13) and Tw.shape == (T, 2, 4, 4)
    for i, (name, cols) in enumerate(((PAIR[0], slice(0, 6)), (PAIR[1], slice(6, 13)))):
        np.testing.assert_array_equal(q[:, cols], r.by_hand("q")[name].astype(np.float32))
        np.testing.assert_array_equal(qt[:, cols], r.by_hand("q_target")[name].astype(np.float32))
        np.testing.assert_array_equal(Tw[:, i], r.by_hand("T_world_hand")[name])
    # Independent check of the layout: each half of the joints is FK of its columns of q through its stored pose.
    T_cam_world = invert_transform(clip.extra["T_world_cam"])
    for i, (emb, cols) in enumerate(((left, slice(0, 6)), (right, slice(6, 13)))):
        local, mask = emb.sparse_joints(q[:, cols].astype(np.float64))
        want = apply_transform(T_cam_world @ Tw[:, i], local)
        np.testing.assert_allclose(clip.joints.positions[:, mask], want[:, mask], atol=1e-5)
    # The clip readers take it as is: the training dataset (42 slots) and the clip → episode split by hand.
    item = ClipDataset(tmp_path, num_frames=T, random_window=False)[0]
    assert item["joints"].shape == (T, 42, 3) and bool(item["valid"][:, left.slot_mask].all())
    np.testing.assert_allclose(item["joints"].numpy(), r.joints.positions, atol=1e-6)
    back = episode_from_clip(path)
    assert back.hands == PAIR
    np.testing.assert_allclose(back.q[PAIR[1]], r.q[PAIR[1]], atol=1e-6)


def test_single_hand_clip_layout_is_unchanged(tmp_path, single_rollout):
    r = single_rollout
    ep = SynthEpisode(q=r.q_target, wrist_path=r.T_world_hand, prompt="one hand", kind="random")
    clip = read_clip(write_episode(tmp_path / "one.h5", r, ep, {}))
    assert clip.joints.embodiment == "dex3_right"
    assert clip.extra["q"].shape == (T, 7) and clip.extra["T_world_hand"].shape == (T, 4, 4)
    np.testing.assert_array_equal(clip.extra["T_world_hand"], r.T_world_hand)


def test_pair_rollout_exports_to_lerobot_left_then_right(tmp_path, pair_rollout):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    r = pair_rollout
    ep = episode_from_rollout(r, task="both hands close", source="pair0")
    assert ep.hands == PAIR and ep.joints.embodiment == "inspire_left+dex3_right"
    rep = lio.export_lerobot([ep], REPO, tmp_path / "ds")
    assert rep.written == ["pair0"]
    ds = LeRobotDataset(REPO, root=tmp_path / "ds", video_backend="pyav")
    names = ds.meta.features["observation.state"]["names"]
    left_names, right_names = (list(unitree_layout(n).names) for n in PAIR)
    assert names == left_names + right_names == ds.meta.features["action"]["names"]
    assert all(n.startswith("kLeftHand") for n in left_names) and all(n.startswith("kRightHand") for n in right_names)
    assert ds.meta.features[lio.FEATURE_ROOT]["names"] == list(PAIR)
    rows = ds.hf_dataset.with_format("numpy")[0:T]
    # State = each hand's joints in its Unitree convention, left hand's columns first.
    state = np.concatenate([unitree_layout(n).to_unitree(r.by_hand("q")[n]) for n in PAIR], axis=1)
    action = np.concatenate([unitree_layout(n).to_unitree(r.by_hand("q_target")[n]) for n in PAIR], axis=1)
    np.testing.assert_allclose(rows["observation.state"], state, atol=1e-6)
    np.testing.assert_allclose(rows["action"], action, atol=1e-6)
    np.testing.assert_allclose(rows[lio.FEATURE_JOINTS], r.joints.positions, atol=1e-6)
    np.testing.assert_array_equal(rows[lio.FEATURE_VALID], r.joints.valid)
    T_cam_world = invert_transform(r.T_world_cam)
    for i, name in enumerate(PAIR):
        np.testing.assert_allclose(rows[lio.FEATURE_ROOT][:, i], T_cam_world @ r.T_world_hand[name], atol=1e-6)
    # And back: the import splits the state by name into the rollout's per-hand joints.
    back = next(lio.import_lerobot(tmp_path / "ds", REPO))
    assert back.hands == PAIR and back.task == "both hands close"
    for name in PAIR:
        np.testing.assert_allclose(back.q[name], r.q[name], atol=1e-5)
    np.testing.assert_allclose(back.joints.positions[:, r.joints.valid[0]],
                               r.joints.positions[:, r.joints.valid[0]], atol=1e-4)


def test_mixing_a_pair_and_a_single_hand_is_refused(tmp_path, pair_rollout, single_rollout):
    pair = episode_from_rollout(pair_rollout, source="pair")
    one = episode_from_rollout(single_rollout, source="one")
    assert one.hands == ("dex3_right",)
    with pytest.raises(ValueError, match=r"episode one: hands \['dex3_right'\] differ from the dataset's "
                                         r"\['inspire_left', 'dex3_right'\].*a pair and a single hand into separate"):
        lio.export_lerobot([pair, one], REPO, tmp_path / "a")
    assert [e["source"] for e in lio.read_sidecar(tmp_path / "a")["episodes"]] == ["pair"]  # nothing of the single
    lio.export_lerobot([one], REPO, tmp_path / "b")
    with pytest.raises(ValueError, match="episode pair: hands .* differ .*separate datasets"):
        lio.export_lerobot([pair], REPO, tmp_path / "b")
    assert lio.read_sidecar(tmp_path / "b")["hands"] == ["dex3_right"]
    with pytest.raises(ValueError, match="hand: a pair rollout .* leave hand=None"):
        episode_from_rollout(pair_rollout, hand="dex3_right")
