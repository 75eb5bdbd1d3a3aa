"""The occlusion split: every clip has per-joint visibility and sustained occlusion; ordinary clips can carry
visibility too."""

from __future__ import annotations

import numpy as np

from dexworld.cli import main
from embodiments.clip import read_clip
from embodiments.layout import hand_slots
from sim_bridge.occlusion import OCCLUSION_SCENE
from sim_bridge.scene import SceneConfig, build_scene
from sim_bridge.synth import SynthConfig, synthesize

OCC = SynthConfig(frames=9, size=(64, 64), occlusion=True, episodes_per_scene=4,
                  scene=SceneConfig(**OCCLUSION_SCENE))


def _hidden_per_frame(clip) -> np.ndarray:
    """Joints hidden by another finger (2), the other hand (3) or an object (4), per frame, from the stored codes;
    checked against the visible flags."""
    code = clip.extra["occluded_by"]
    assert ((code == 0) == clip.extra["visible"]).all() and ((code >= 0) == clip.joints.valid).all()
    return np.isin(code, (2, 3, 4)).sum(-1)


def test_one_hand_occlusion_clips_have_sustained_occlusion(tmp_path):
    r = synthesize("inspire_right", tmp_path, 2, seed=0, config=OCC, progress=False)
    assert len(r.written) == 2, r.skipped
    for path in r.written:
        clip = read_clip(path)
        visible = clip.extra["visible"]
        assert visible.shape == (9, 42) and visible.dtype == bool
        assert not visible[:, hand_slots("left")].any()  # a right-hand clip
        assert np.mean(_hidden_per_frame(clip) >= 3) >= 0.5  # ≥ 3 joints hidden in ≥ half the frames
        assert clip.extra["motion"] in ("side_grasp", "behind_object")
        assert "depth" not in clip.extra  # rendered for visibility, not stored unless asked


def test_crossing_hands_hide_the_lower_one(tmp_path):
    seen = {}
    r = synthesize("inspire_left+inspire_right", tmp_path, 1, seed=0, config=OCC, progress=False,
                   on_episode=lambda i, roll: seen.update(seg=roll.segmentation.copy()))
    assert len(r.written) == 1, r.skipped
    clip = read_clip(r.written[0])
    assert clip.joints.embodiment == "inspire_left+inspire_right" and clip.extra["motion"] == "cross"
    assert np.mean(_hidden_per_frame(clip) >= 3) >= 0.5
    # Which hand covers each hidden joint's pixel: the hand above hides joints of the one below, never the reverse.
    scene = build_scene(("inspire_left", "inspire_right"), OCC.scene, seed=clip.extra["scene_seed"])
    uvd, _ = clip.joints.project()
    t, j = np.nonzero(clip.extra["occluded_by"] == 3)  # hidden by the other hand
    x, y = np.floor(uvd[t, j, :2]).astype(int).T
    cover = scene.geom_hand[seen["seg"][t, y, x]]  # which hand is in front: 0 left, 1 right
    assert (cover == 1 - (j >= 21)).all()  # the code agrees with the segmentation: the other hand
    top = 0 if "the left hand above" in clip.prompt else 1
    lower_by_upper, upper_by_lower = np.sum(cover == top), np.sum(cover == 1 - top)
    assert lower_by_upper >= 9 and lower_by_upper >= 5 * upper_by_lower, (lower_by_upper, upper_by_lower)


def test_ordinary_clips_can_carry_visibility(tmp_path):
    cfg = SynthConfig(frames=3, size=(32, 32), motions=("random",), visibility=True)
    clip = read_clip(synthesize("dex3_right", tmp_path / "a", 1, config=cfg, progress=False).written[0])
    assert clip.extra["visible"].shape == (3, 42)
    assert not (clip.extra["visible"] & ~clip.joints.valid).any()  # visible implies in the image
    _hidden_per_frame(clip)


def test_cli_occlusion_flag(tmp_path, capsys):
    assert main(["synth", "--embodiment", "dex3_right", "--episodes", "1", "--frames", "5", "--size", "48",
                 "--occlusion", "--out", str(tmp_path), "--no-progress"]) == 0
    clip = read_clip(tmp_path / "episode_000000.h5")
    assert np.mean(_hidden_per_frame(clip) >= 3) >= 0.5
