"""Real human hand skeletons as retargeting sources: the 25-joint WebXR / Vision Pro layout and MediaPipe files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import embodiments
from embodiments.mediapipe import load_mediapipe
from embodiments.motions import human_motion
from embodiments.skeletons import to_mano_order, webxr_from_mano
from retarget import Retargeter

torch.set_num_threads(1)
# WebXR Hand Input joint order (W3C spec, XRHandJoint): wrist; thumb metacarpal, phalanx-proximal, phalanx-distal,
# tip; then index, middle, ring, pinky, each metacarpal, phalanx-proximal, -intermediate, -distal, tip.
# The MANO/OpenPose joint each WebXR index stands for (None: finger metacarpal bases, no MANO joint).
WEBXR_AS_MANO = [0, 1, 2, 3, 4, None, 5, 6, 7, 8, None, 9, 10, 11, 12, None, 13, 14, 15, 16, None, 17, 18, 19, 20]


def test_webxr_joints_land_on_the_mano_slots():
    T = 2
    xr = np.arange(T * 25 * 3, dtype=float).reshape(T, 25, 3)
    mano = to_mano_order(xr, "webxr")
    for w, m in enumerate(WEBXR_AS_MANO):
        if m is not None:
            np.testing.assert_array_equal(mano[:, m], xr[:, w])
    np.testing.assert_array_equal(mano[:, [4, 8, 12, 16, 20]], xr[:, [4, 9, 14, 19, 24]])  # the fingertips


@pytest.mark.parametrize("side", ["left", "right"])
def test_webxr_sources_are_builtin_and_retarget_like_mano(side):
    hand = embodiments.get(f"webxr_{side}")
    assert hand.slot_mask.sum() == 21 and f"webxr_{side}" in embodiments.registry.builtin_names()
    pos, _ = human_motion("pinch", side=side, frames=12).hand(side)
    q_mano = Retargeter(f"mano_{side}", f"inspire_{side}", "vector").retarget(pos)
    q_xr = Retargeter(f"webxr_{side}", f"inspire_{side}", "vector").retarget(webxr_from_mano(pos))
    np.testing.assert_allclose(q_xr, q_mano, atol=1e-9)
    assert q_xr[-1, 1] > q_xr[0, 1] + 0.1  # the pinch closes the thumb (pitch joint) as it does from MANO joints


def test_wrong_layout_is_refused_naming_both():
    pos, _ = human_motion("open", frames=3).hand("right")
    with pytest.raises(ValueError, match=r"25 joints.*WebXR / Vision Pro.*expects \(T, 21, 3\): the 21-joint MANO"):
        Retargeter("mano_right", "inspire_right").retarget(webxr_from_mano(pos))
    with pytest.raises(ValueError, match=r"21 joints.*21-joint MANO.*expects \(T, 25, 3\): the 25-joint WebXR"):
        Retargeter("webxr_right", "inspire_right").retarget(pos)


def _lm(points: np.ndarray) -> list[dict]:
    return [{"x": float(x), "y": float(y), "z": float(z)} for x, y, z in points]


def _hands():
    pos, _ = human_motion("pinch", frames=3).hand("right")
    return pos, pos * np.array([-1.0, 1.0, 1.0])  # a right hand and its mirror image as the left


def test_mediapipe_tasks_json(tmp_path):
    right, left = _hands()
    frames = [
        {"handedness": [[{"category_name": "Left", "score": 0.95, "index": 0}],
                        [{"category_name": "Right", "score": 0.9, "index": 1}]],
         "hand_world_landmarks": [_lm(left[0]), _lm(right[0])], "hand_landmarks": [_lm(left[0]), _lm(right[0])]},
        {"handedness": [[{"category_name": "Right", "score": 0.3, "index": 1}]],  # below min_score: dropped
         "hand_world_landmarks": [_lm(right[1])]},
        None,
    ]
    path = tmp_path / "hands.json"
    path.write_text(json.dumps({"fps": 25, "frames": frames}))
    sj = load_mediapipe(path)
    assert sj.fps == 25 and sj.embodiment == "mano_left+mano_right" and sj.frame == "mediapipe_world"
    np.testing.assert_allclose(sj.hand("left")[0][0], left[0], atol=1e-6)
    np.testing.assert_allclose(sj.hand("right")[0][0], right[0], atol=1e-6)
    assert sj.hand("right")[1].sum(-1).tolist() == [21, 0, 0]
    swapped = load_mediapipe(path, swap_handedness=True)  # an unmirrored camera: MediaPipe's labels swap
    np.testing.assert_allclose(swapped.hand("right")[0][0], left[0], atol=1e-6)


def test_mediapipe_legacy_json_and_npz_retarget(tmp_path):
    right, _ = _hands()
    legacy = [{"multi_handedness": [{"classification": [{"index": 1, "score": 0.99, "label": "Right"}]}],
               "multi_hand_world_landmarks": [{"landmark": _lm(p)}]} for p in right]
    (tmp_path / "legacy.json").write_text(json.dumps(legacy))
    np.savez(tmp_path / "hands.npz", world_landmarks=right[:, None], handedness=np.ones((3, 1), int),
             handedness_score=np.full((3, 1), 0.9))
    q_direct = Retargeter("mano_right", "dex3_right", "dexpilot").retarget(right)
    for name in ("legacy.json", "hands.npz"):
        sj = load_mediapipe(tmp_path / name)
        assert sj.embodiment == "mano_right"
        np.testing.assert_allclose(Retargeter("mano_right", "dex3_right", "dexpilot").retarget(sj), q_direct,
                                   atol=1e-6)


@pytest.mark.parametrize("content, kw, match", [
    ([{"handedness": [[{"category_name": "Right", "score": 0.9}]], "hand_landmarks": [[{"x": 0.5, "y": 0.5}] * 21]}],
     {}, "pass image_size"),
    ([{"handedness": [[{"category_name": "Right", "score": 0.9}]], "hand_world_landmarks": [[{"x": 0, "y": 0}] * 25]}],
     {}, "25 landmarks.*WebXR / Vision Pro"),
    ([{"handedness": [], "hand_world_landmarks": [[{"x": 0, "y": 0}] * 21]}], {}, "1 hand.*0 handedness"),
    ({"not": "frames"}, {}, "list of per-frame MediaPipe results"),
])
def test_mediapipe_bad_files(tmp_path, content, kw, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=match):
        load_mediapipe(path, **kw)


def test_mediapipe_image_landmarks_in_pixels(tmp_path):
    right, _ = _hands()
    norm = right[0] * 0.5 + 0.5
    path = tmp_path / "img.json"
    path.write_text(json.dumps([{"handedness": [[{"categoryName": "Right", "score": 0.8}]], "landmarks": [_lm(norm)]}]))
    sj = load_mediapipe(path, image_size=(640, 480))
    np.testing.assert_allclose(sj.hand("right")[0][0], norm * [640, 480, 640], rtol=1e-6)
    assert sj.frame == "image"


def test_tracked_like_motion_is_another_hand_with_the_stated_noise():
    """The benchmark's stand-in for recordings: other hand sizes than the built-in skeleton, tracker error as its
    model says (per coordinate σ = √(2.5² + 2²) mm, so a mean 3D error of σ·√(8/π) off the tips, 1.5x on them)."""
    from embodiments.tracked import SUBJECT_SCALES, tracked_motion

    lengths = []
    for subject in range(3):
        m = tracked_motion(400, subject=subject, seed=4)
        lengths.append(np.linalg.norm(m.clean[:, 12] - m.clean[:, 0], axis=-1).max())  # wrist to middle tip
        err = np.linalg.norm(m.tracked - m.clean, axis=-1)
        sigma = math.sqrt(2.5**2 + 2.0**2) * math.sqrt(8 / math.pi)
        expected = (16 * sigma + 5 * 1.5 * sigma) / 21
        assert np.nanmean(err) * 1e3 == pytest.approx(expected, rel=0.12)
        assert 0.0 < np.isnan(m.tracked).all(-1).all(-1).mean() < 0.04  # dropped frames (1 % on average)
    ratios = np.array(lengths) / lengths[1]
    np.testing.assert_allclose(ratios, np.array(SUBJECT_SCALES) / SUBJECT_SCALES[1], rtol=0.06)


def test_cli_retargets_vision_pro_joints_and_mediapipe_files(tmp_path, capsys):
    from dexworld.cli import main

    pos, _ = human_motion("pinch", frames=6).hand("right")
    np.save(tmp_path / "avp.npy", webxr_from_mano(pos))
    out = tmp_path / "q.npz"
    assert main(["retarget", str(tmp_path / "avp.npy"), "--from", "webxr_right", "--to", "inspire_right",
                 "-o", str(out), "--fps", "60"]) == 0
    with np.load(out) as f:
        np.testing.assert_allclose(f["q"], Retargeter("mano_right", "inspire_right").retarget(pos), atol=1e-5)
        assert float(f["fps"]) == 60
    assert main(["retarget", str(tmp_path / "avp.npy"), "--to", "inspire_right", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "WebXR / Vision Pro" in err and "MANO" in err and err.count("\n") == 1
    np.savez(tmp_path / "mp.npz", world_landmarks=pos, handedness=np.array([["Left"]] * 6))
    assert main(["retarget", str(tmp_path / "mp.npz"), "--to", "inspire_right", "-o", str(out),
                 "--swap-handedness"]) == 0  # labelled Left by a mirrored-image assumption: the right hand
    assert "mano_right → inspire_right" in capsys.readouterr().out
