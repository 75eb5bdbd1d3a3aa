"""Synthetic paired clips: deterministic by seed, resumable, atomic, failures skipped and reported."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from embodiments.clip import read_clip
from embodiments.transforms import apply_transform, invert_transform  # noqa: E402
from sim_bridge.synth import SynthConfig, episode_path, synthesize  # noqa: E402

FAST = SynthConfig(frames=5, size=(48, 64), motions=("reach_grasp", "random"), episodes_per_scene=2)


def _clips(folder, n):
    return [read_clip(episode_path(folder, i)) for i in range(n)]


def test_synth_is_deterministic_by_seed_and_resumable(tmp_path):
    a = synthesize("dex3_right", tmp_path / "a", 3, seed=5, config=FAST, progress=False)
    assert len(a.written) == 3 and not a.skipped
    synthesize("dex3_right", tmp_path / "b", 3, seed=5, config=FAST, progress=False)
    synthesize("dex3_right", tmp_path / "c", 3, seed=6, config=FAST, progress=False)
    ca, cb, cc = (_clips(tmp_path / d, 3) for d in "abc")
    for x, y in zip(ca, cb, strict=True):
        assert np.array_equal(x.frames, y.frames) and np.array_equal(x.joints.positions, y.joints.positions)
        assert x.prompt == y.prompt
    assert not np.array_equal(ca[0].frames, cc[0].frames)
    # Episodes within a run differ (appearance and motion are drawn per episode).
    assert not np.array_equal(ca[0].frames, ca[1].frames)
    # Resume: a missing episode is re-rendered identically, the others are left alone.
    episode_path(tmp_path / "a", 1).unlink()
    r = synthesize("dex3_right", tmp_path / "a", 3, seed=5, config=FAST, progress=False)
    assert r.existing == 2 and [p.name for p in r.written] == ["episode_000001.h5"]
    again = read_clip(episode_path(tmp_path / "a", 1))
    assert np.array_equal(again.frames, cb[1].frames)
    assert (tmp_path / "a" / "manifest.json").exists()


def test_clip_contents_are_consistent(tmp_path):
    synthesize("inspire_left", tmp_path, 1, seed=0, config=FAST, progress=False)
    clip = read_clip(episode_path(tmp_path, 0))
    T, H, W = 5, 48, 64
    assert clip.frames.shape == (T, H, W, 3) and clip.frames.dtype == np.uint8
    j = clip.joints
    assert j.frame == "camera" and j.embodiment == "inspire_left" and np.isclose(j.K[0, 2], W / 2)
    assert clip.extra["q"].shape == (T, 6) and clip.prompt.startswith("Egocentric view")
    # Joints in the clip = the hand's FK moved by the stored hand and camera poses.
    from embodiments import get

    emb = get("inspire_left")
    root, mask = emb.sparse_joints(clip.extra["q"].astype(np.float64))
    T_cam_hand = invert_transform(clip.extra["T_world_cam"]) @ clip.extra["T_world_hand"]
    expect = apply_transform(T_cam_hand, root)
    assert np.allclose(j.positions[j.valid], expect[j.valid], atol=1e-5)
    uvd, ok = j.project()
    assert ((uvd[ok][:, 0] >= 0) & (uvd[ok][:, 0] < W) & (uvd[ok][:, 1] >= 0) & (uvd[ok][:, 1] < H)).all()


def test_two_hands_each_with_its_own_motion_kept_apart(tmp_path):
    """An ordinary pair clip: both halves of the joints are the two hands' FK through their stored root poses, the
    wrists never come closer than the configured gap, and the prompt names both hands."""
    from embodiments import get

    cfg = SynthConfig(frames=5, size=(64, 64), motions=("reach_grasp", "random"), episodes_per_scene=2,
                      min_hand_gap=0.1)
    r = synthesize("inspire_left+inspire_right", tmp_path, 3, seed=1, config=cfg, progress=False)
    assert len(r.written) + len(r.skipped) == 3 and r.written
    for path in r.written:
        clip = read_clip(path)
        j = clip.joints
        assert j.embodiment == "inspire_left+inspire_right"
        assert clip.extra["q"].shape == (5, 12) and clip.extra["T_world_hand"].shape == (5, 2, 4, 4)
        wrists = clip.extra["T_world_hand"][:, :, :3, 3]
        assert np.linalg.norm(wrists[:, 0] - wrists[:, 1], axis=-1).min() >= 0.1 - 1e-9
        assert "left hand" in clip.prompt and "right hand" in clip.prompt
        for h, name in enumerate(("inspire_left", "inspire_right")):
            root, mask = get(name).sparse_joints(clip.extra["q"][:, 6 * h:6 * h + 6].astype(np.float64))
            T_cam_hand = invert_transform(clip.extra["T_world_cam"]) @ clip.extra["T_world_hand"][:, h]
            expect = apply_transform(T_cam_hand, root)
            half = slice(0, 21) if h == 0 else slice(21, 42)
            v = j.valid[:, half] & mask[half]
            assert v.any() and np.allclose(j.positions[:, half][v], expect[:, half][v], atol=1e-5)
    # a gap no plan can keep skips the episode with a reason instead of writing overlapping hands
    far = SynthConfig(frames=5, size=(64, 64), motions=("random",), min_hand_gap=5.0, pair_tries=2)
    r = synthesize("inspire_left+inspire_right", tmp_path / "far", 1, config=far, progress=False)
    assert not r.written and "closer than 5 m" in r.skipped[0][1]


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    real = h5py.Group.create_dataset

    def failing(self, name, *a, **k):
        if name == "K":
            raise OSError("disk full")
        return real(self, name, *a, **k)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(OSError, match="disk full"):
        synthesize("dex3_left", tmp_path, 2, seed=0, config=FAST, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the clip nor its temporary file


def test_unstable_physics_is_skipped_and_reported(tmp_path):
    cfg = SynthConfig(frames=3, size=(16, 16), motions=("random",), physics=True, max_qacc=1e-6)
    r = synthesize("inspire_right", tmp_path, 2, seed=0, config=cfg, progress=False)
    assert not r.written and [i for i, _ in r.skipped] == [0, 1]
    assert all("unstable" in why for _, why in r.skipped)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_human_motion_episode_is_retargeted(tmp_path):
    cfg = SynthConfig(frames=5, size=(32, 32), motions=("human",), human_motions=("power_grasp",))
    r = synthesize("inspire_right", tmp_path, 1, seed=0, config=cfg, progress=False)
    assert not r.notes, r.notes
    clip = read_clip(r.written[0])
    assert "power grasp" in clip.prompt and clip.extra["motion"] == "human"
    q = clip.extra["q"]
    assert q[-1, 2:].mean() > q[0, 2:].mean() + 0.5  # the fingers close


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="motions"):
        SynthConfig(motions=("dance",))
    with pytest.raises(ValueError, match="frames"):
        SynthConfig(frames=1)
