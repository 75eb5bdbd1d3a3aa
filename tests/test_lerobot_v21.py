"""LeRobot v2.1 datasets in unitree_IL_lerobot's layout (and Humanoid Everyday's LeRobot copies) → converted v3.0
copies → episodes with hands placed through the G1 arm chain. Datasets are written here file by file (AV1 mp4s)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from _g1_fk import g1_right_hand_in_camera
from _v21_helpers import ARM, DEX3_NAMES, H, W, snapshot, unitree_columns, write_he_copy, write_v21

from embodiments import registry
from sim_bridge import lerobot_io as lio

os.environ.setdefault("HF_HUB_OFFLINE", "1")
T = 6


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEXWORLD_CACHE", str(tmp_path / "cache"))


def wrists_in_image(ep) -> bool:
    uvd, ok = ep.joints.project()
    uv = uvd[:, [0, 21], :2]
    return bool(ok[:, [0, 21]].all() and (uv[..., 0] >= 0).all() and (uv[..., 0] < W).all()
                and (uv[..., 1] >= 0).all() and (uv[..., 1] < H).all())


def test_g1_inspire_v21_nested_names_skip_bad_and_source_untouched(tmp_path):
    rng = np.random.default_rng(0)
    values = [rng.uniform(0, 1, (T, 12)) for _ in range(3)]
    eps, specs = unitree_columns(values, nested=True)
    root = write_v21(tmp_path / "g1_inspire", eps, specs, robot_type="Unitree_G1_Inspire")
    os.remove(root / "videos/chunk-000/observation.images.cam_right_high/episode_000001.mp4")
    before = snapshot(root)
    with pytest.raises(ValueError, match=r"episode 1: missing observation.images.cam_right_high .*episode_000001"):
        next(lio.import_lerobot(root))
    skipped = []
    got = list(lio.import_lerobot(root, skip_bad=True, skipped=skipped))
    assert snapshot(root) == before  # the v2.1 source is never written
    assert [s for s, _ in skipped] == ["g1_inspire#1"]
    assert [e.source for e in got] == ["g1_inspire#0", "g1_inspire#2"]
    for ep, v in zip(got, (values[0], values[2]), strict=True):
        assert ep.task == "pick the cube" and ep.frames.shape == (T, H, W, 3) and ep.joints.fps == 30
        e = int(ep.source[-1])
        # head camera = cam_left_high (camera index 0): frame value 30 + 20 t + 5 e, AV1 is lossy
        np.testing.assert_allclose(ep.frames.mean(axis=(1, 2, 3)), 30 + 20 * np.arange(T) + 5 * e, atol=3)
        names = registry.get("inspire_left").joint_names
        q = ep.q["inspire_left"]
        # Unitree's Inspire normalisation, 1 = open: fingers 1.7(1 − v), thumb bend 0.5(1 − v), rotation over −0.1…1.3
        np.testing.assert_allclose(q[:, names.index("L_pinky_proximal_joint")], 1.7 * (1 - v[:, 0]), atol=1e-5)
        np.testing.assert_allclose(q[:, names.index("L_index_proximal_joint")], 1.7 * (1 - v[:, 3]), atol=1e-5)
        np.testing.assert_allclose(q[:, names.index("L_thumb_proximal_pitch_joint")], 0.5 * (1 - v[:, 4]), atol=1e-5)
        np.testing.assert_allclose(q[:, names.index("L_thumb_proximal_yaw_joint")], 1.3 - 1.4 * v[:, 5], atol=1e-5)
        rnames = registry.get("inspire_right").joint_names
        np.testing.assert_allclose(ep.q["inspire_right"][:, rnames.index("R_ring_proximal_joint")],
                                   1.7 * (1 - v[:, 7]), atol=1e-5)
        arm = ARM + 0.02 * np.sin(np.arange(T)[:, None] / 3 + e)
        want = np.stack([g1_right_hand_in_camera(a, "inspire") for a in arm.astype(np.float32).astype(np.float64)])
        np.testing.assert_allclose(ep.T_cam_root["inspire_right"], want, atol=1e-5)
        assert wrists_in_image(ep)
    # converted once: a second read reuses the cached copy
    assert len(list((tmp_path / "cache" / "lerobot_v30").iterdir())) == 1


def test_g1_dex3_v21_flat_names_detected_without_flags(tmp_path):
    rng = np.random.default_rng(1)
    lo = np.concatenate([registry.get("dex3_left").lower, registry.get("dex3_right").lower])
    hi = np.concatenate([registry.get("dex3_left").upper, registry.get("dex3_right").upper])
    values = [rng.uniform(lo, hi, (T, 14))]
    eps, specs = unitree_columns(values, nested=False)
    assert specs["observation.state"]["names"][14:] == DEX3_NAMES
    root = write_v21(tmp_path / "g1_dex3", eps, specs, robot_type="Unitree_G1_Dex3",
                     cameras=("cam_left_high", "cam_right_high", "cam_left_wrist"))
    ep = next(lio.import_lerobot(root, camera="cam_right_high"))
    np.testing.assert_allclose(ep.frames.mean(axis=(1, 2, 3)), 90 + 20 * np.arange(T), atol=3)
    # Dex3 motor order on both hands: thumb 0-2, middle 0-1, index 0-1 (right slots 3-4 are labelled Index)
    order = ["thumb_0", "thumb_1", "thumb_2", "middle_0", "middle_1", "index_0", "index_1"]
    for side, block in (("left", values[0][:, :7]), ("right", values[0][:, 7:])):
        names = registry.get(f"dex3_{side}").joint_names
        for slot, part in enumerate(order):
            np.testing.assert_allclose(ep.q[f"dex3_{side}"][:, names.index(f"{side}_hand_{part}_joint")],
                                       block[:, slot], atol=1e-6)
    assert wrists_in_image(ep)
    K = ep.joints.frame_K()[0]  # the robot's default K scaled from 640×480 to 128×96
    np.testing.assert_allclose([K[0, 0], K[0, 2]], [389.07278 * W / 640, 321.61887 * W / 640], rtol=1e-6)


def test_humanoid_everyday_lerobot_copy(tmp_path):
    """he2lerobot.py layout: egocentric video, arm/leg/hand joint features, action = hand values then sol_q."""
    rng = np.random.default_rng(2)
    lo = np.concatenate([registry.get("dex3_left").lower, registry.get("dex3_right").lower])
    hi = np.concatenate([registry.get("dex3_left").upper, registry.get("dex3_right").upper])
    eps = []
    for e in range(2):
        hand = rng.uniform(0.8 * lo + 0.2 * hi, 0.5 * (lo + hi), (T, 14))
        arm = ARM + 0.02 * np.sin(np.arange(T)[:, None] / 3 + e)
        eps.append({"observation.arm_joints": arm, "observation.leg_joints": np.zeros((T, 15)),
                    "observation.hand_joints": hand, "action": np.concatenate([hand + 0.05, arm], 1)})
    root = write_he_copy(tmp_path / "he_copy", eps)
    before = snapshot(root)
    got = list(lio.import_lerobot(root))
    assert snapshot(root) == before
    assert [ep.source for ep in got] == ["he_copy#0", "he_copy#1"]
    names = registry.get("dex3_right").joint_names
    for e, ep in enumerate(got):
        hand = eps[e]["observation.hand_joints"]
        assert ep.task == "Pick up the cup" and ep.joints.fps == 30
        np.testing.assert_allclose(ep.frames.mean(axis=(1, 2, 3)), 30 + 20 * np.arange(T) + 5 * e, atol=3)
        # HE hand_state: left then right, each thumb 0-2, middle 0-1, index 0-1 (README)
        np.testing.assert_allclose(ep.q["dex3_right"][:, names.index("right_hand_middle_0_joint")], hand[:, 10],
                                   atol=1e-6)
        np.testing.assert_allclose(ep.action["dex3_right"][:, names.index("right_hand_index_1_joint")],
                                   hand[:, 13] + 0.05, atol=1e-6)
        want = np.stack([g1_right_hand_in_camera(a) for a in eps[e]["observation.arm_joints"].astype(np.float32)])
        np.testing.assert_allclose(ep.T_cam_root["dex3_right"], want, atol=1e-5)
        assert wrists_in_image(ep)


def test_humanoid_everyday_h1_copy_and_mixed_robots(tmp_path):
    v = np.random.default_rng(4).uniform(0, 1, (T, 12))
    arm = np.tile(ARM, (T, 1))
    h1 = {"observation.arm_joints": arm, "observation.leg_joints": np.zeros((T, 13)), "observation.hand_joints": v,
          "action": np.concatenate([1.7 - v, arm], 1)}
    ep = next(lio.import_lerobot(write_he_copy(tmp_path / "h1", [h1], robot_type="h1")))
    assert list(ep.q) == ["inspire_left", "inspire_right"] and ep.action is None  # H1 actions are not read
    names = registry.get("inspire_right").joint_names
    np.testing.assert_allclose(ep.q["inspire_right"][:, names.index("R_index_proximal_joint")], 1.7 * (1 - v[:, 9]),
                               atol=1e-5)
    g1 = {**h1, "observation.hand_joints": np.zeros((T, 14)), "action": np.zeros((T, 28))}
    with pytest.raises(ValueError, match=r"observation.hand_joints has 12 values in earlier episodes but 14 in "
                                         r"episode 1 \(mixed robots\?\)"):
        next(lio.import_lerobot(write_he_copy(tmp_path / "mixed", [h1, g1], robot_type="mixed")))


def test_cli_import_v21_reports_skipped(tmp_path, capsys):
    from dexworld.cli import main

    eps, specs = unitree_columns([np.full((T, 12), 0.5), np.full((T, 12), 0.5)])
    root = write_v21(tmp_path / "ds", eps, specs, robot_type="Unitree_G1_Inspire", cameras=("cam_left_high",))
    os.remove(root / "data/chunk-000/episode_000000.parquet")
    assert main(["import-lerobot", str(root), "-o", str(tmp_path / "clips")]) != 0
    assert "episode 0: missing data data/chunk-000/episode_000000.parquet" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["import-lerobot", str(root), "-o", str(tmp_path / "clips"), "--convert-dir", str(tmp_path / "mine"),
                 "--skip-bad"]) != 0
    assert "convert folder" in capsys.readouterr().err and (tmp_path / "mine" / "notes.txt").exists()
    assert main(["import-lerobot", str(root), "-o", str(tmp_path / "clips"), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "skipped ds#0: missing data" in out and "clips of 1 episodes" in out
    assert sorted(p.name for p in (tmp_path / "clips").glob("*.h5")) == ["ds_ep000001_s00000.h5"]


def test_layout_detection_from_names():
    from sim_bridge.lerobot_layouts import camera_key, flat_names
    from sim_bridge.unitree import detect_hands, robot_from_type

    inspire = ["kLeftHandPinky", "kLeftHandRing", "kLeftHandMiddle", "kLeftHandIndex", "kLeftHandThumbBend",
               "kLeftHandThumbRotation"]
    assert detect_hands(flat_names([["kLeftShoulderPitch", *inspire]])) == ["inspire_left"]
    assert detect_hands(DEX3_NAMES) == ["dex3_left", "dex3_right"]
    assert detect_hands(["a", "b"]) == []
    with pytest.raises(ValueError, match=r"Inspire left hand columns incomplete; missing \['kLeftHandThumbRotation'\]"):
        detect_hands(inspire[:5])
    assert robot_from_type("Unitree_G1_Inspire") == "g1_inspire" and robot_from_type("Unitree_G1_Dex3") == "g1"
    assert robot_from_type("Unitree_Z1_Dual") is None
    feats = {f"observation.images.{c}": {"dtype": "video"} for c in ("cam_left_wrist", "cam_left_high")}
    assert camera_key(feats, None) == "observation.images.cam_left_high"
    with pytest.raises(ValueError, match="no camera 'cam_high'"):
        camera_key(feats, "cam_high")
