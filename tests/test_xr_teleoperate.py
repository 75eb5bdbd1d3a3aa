"""Unitree xr_teleoperate / avp_teleoperate EpisodeWriter recordings (written here in that layout) → clips and a
LeRobot dataset through `dexworld ingest-unitree`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _g1_fk import g1_right_hand_in_camera
from PIL import Image

from embodiments import registry
from embodiments.transforms import project
from sim_bridge import xr_teleoperate as xr
from sim_bridge.robots import HE_PUBLISHED_K

H, W = 96, 128
K_SMALL = HE_PUBLISHED_K * np.array([[0.2], [0.2], [1.0]])
ARM = np.array([-0.5, 0.0, 0.0, 1.2, 0.0, 0.0, 0.0, -0.5, 0.0, 0.0, 1.2, 0.0, 0.0, 0.0])


def write_episode(task: Path, n: int, ee: np.ndarray, T: int = 8, goal: str = "Pick up the red cup on the table.",
                  hand: str = "dex3", key: str = "ee") -> Path:
    """One EpisodeWriter episode: data.json {info, text, data, rewards}, colors/<idx>_color_0.jpg with a white dot
    on the right hand root's pixel. ``ee`` (T, 2n) is left then right hand qpos."""
    ep = task / f"episode_{n:04d}"
    (ep / "colors").mkdir(parents=True)
    (ep / "depths").mkdir()
    items = []
    for t in range(T):
        arm = ARM + 0.02 * np.sin(t / 3 + n)
        img = np.full((H, W, 3), 20, np.uint8)
        uv, ok = project(g1_right_hand_in_camera(arm, hand)[:3, 3][None], K_SMALL)
        u, v = np.rint(uv[0, :2]).astype(int)
        assert ok[0] and 2 <= u < W - 2 and 2 <= v < H - 2, "test scene: the right hand must be in view"
        img[v - 2:v + 3, u - 2:u + 3] = 255
        name = f"{t:06d}_color_0.jpg"
        Image.fromarray(img).save(ep / "colors" / name, quality=95)
        k = ee.shape[1] // 2
        state = {"left_arm": {"qpos": arm[:7].tolist(), "qvel": [0.0] * 7, "torque": [0.0] * 7},
                 "right_arm": {"qpos": arm[7:].tolist(), "qvel": [0.0] * 7, "torque": [0.0] * 7},
                 f"left_{key}": {"qpos": ee[t, :k].tolist(), "qvel": [], "torque": []},
                 f"right_{key}": {"qpos": ee[t, k:].tolist(), "qvel": [], "torque": []}, "body": None}
        action = {kk: {"qpos": [x + 0.0 for x in vv["qpos"]]} for kk, vv in state.items() if vv}
        items.append({"idx": t, "colors": {"color_0": f"colors/{name}"}, "depths": {}, "states": state,
                      "actions": action, "tactiles": None, "audios": None, "sim_state": None})
    doc = {"info": {"version": "1.0.0", "date": "2025-01-01", "author": "unitree",
                    "image": {"width": W, "height": H, "fps": 30}, "depth": {"width": W, "height": H, "fps": 30},
                    "audio": {"sample_rate": 16000, "channels": 1, "format": "PCM", "bits": 16}},
           "text": {"goal": goal, "desc": "task description", "steps": "step1: do this; step2: do that; ..."},
           "data": items, "rewards": {"success": True}}
    (ep / "data.json").write_text(json.dumps(doc, indent=4))
    return ep


def dex3_values(rng, T):
    lo = np.concatenate([registry.get("dex3_left").lower, registry.get("dex3_right").lower])
    hi = np.concatenate([registry.get("dex3_left").upper, registry.get("dex3_right").upper])
    return rng.uniform(lo, hi, (T, 14))


def test_dex3_episode_places_hands_through_the_arm_chain(tmp_path):
    ee = dex3_values(np.random.default_rng(0), 8)
    write_episode(tmp_path / "cup", 0, ee)
    ep = next(xr.iter_episodes(tmp_path / "cup"))
    assert ep.task == "Pick up the red cup on the table." and ep.source == "cup/episode_0000"
    assert ep.frames.shape == (8, H, W, 3) and ep.joints.fps == 30
    # Dex3 motor order on both hands: thumb 0-2, middle 0-1, index 0-1
    order = ["thumb_0", "thumb_1", "thumb_2", "middle_0", "middle_1", "index_0", "index_1"]
    for side, block in (("left", ee[:, :7]), ("right", ee[:, 7:])):
        names = registry.get(f"dex3_{side}").joint_names
        for slot, part in enumerate(order):
            np.testing.assert_allclose(ep.q[f"dex3_{side}"][:, names.index(f"{side}_hand_{part}_joint")],
                                       block[:, slot], atol=1e-9)
    arm = ARM + 0.02 * np.sin(np.arange(8)[:, None] / 3)
    want = np.stack([g1_right_hand_in_camera(a) for a in arm])
    np.testing.assert_allclose(ep.T_cam_root["dex3_right"], want, atol=1e-6)
    # the white dot drawn at the right hand root's pixel is where the episode projects it
    uvd, ok = project(ep.T_cam_root["dex3_right"][:, None, :3, 3], ep.joints.frame_K())
    for t in range(8):
        u, v = np.rint(uvd[t, 0, :2]).astype(int)
        assert ep.frames[t, v, u].min() > 200


def test_inspire_episode_is_normalised_open_one(tmp_path):
    """avp_teleoperate's older writer: hands under states.left_hand / right_hand."""
    v = np.random.default_rng(1).uniform(0, 1, (8, 12))
    write_episode(tmp_path / "wave", 0, v, hand="inspire", key="hand")
    ep = next(xr.iter_episodes(tmp_path / "wave" / "episode_0000"))
    assert list(ep.q) == ["inspire_left", "inspire_right"] and list(ep.action) == list(ep.q)
    names = registry.get("inspire_right").joint_names
    np.testing.assert_allclose(ep.q["inspire_right"][:, names.index("R_middle_proximal_joint")],
                               1.7 * (1 - v[:, 8]), atol=1e-9)
    np.testing.assert_allclose(ep.q["inspire_right"][:, names.index("R_thumb_proximal_yaw_joint")],
                               1.3 - 1.4 * v[:, 11], atol=1e-9)
    want = np.stack([g1_right_hand_in_camera(a, "inspire") for a in ARM + 0.02 * np.sin(np.arange(8)[:, None] / 3)])
    np.testing.assert_allclose(ep.T_cam_root["inspire_right"], want, atol=1e-6)


def test_bad_input_errors_name_episode_and_frame(tmp_path):
    ee = dex3_values(np.random.default_rng(2), 4)
    ep = write_episode(tmp_path / "t", 0, ee, T=4)
    doc = json.loads((ep / "data.json").read_text())
    doc["data"][2]["states"]["left_ee"]["qpos"] = [0.0] * 5
    (ep / "data.json").write_text(json.dumps(doc))
    with pytest.raises(xr.XRFormatError, match=r"episode_0000 frame 2: states.left_ee.qpos has 5 values, expected "
                                               r"6 or 7"):
        next(xr.iter_episodes(tmp_path / "t"))
    doc["data"][2]["states"]["left_ee"]["qpos"] = [0.0] * 7
    doc["data"][1]["colors"]["color_0"] = "../../secret.jpg"
    (ep / "data.json").write_text(json.dumps(doc))
    with pytest.raises(xr.XRFormatError, match=r"frame 1: colour image path '../../secret.jpg' leaves the episode"):
        next(xr.iter_episodes(tmp_path / "t"))
    (ep / "data.json").write_text('{"info": {}, "data": [')
    with pytest.raises(xr.XRFormatError, match="episode_0000/data.json is not valid JSON"):
        next(xr.iter_episodes(tmp_path / "t"))
    with pytest.raises(FileNotFoundError, match="no teleoperation recording folder"):
        next(xr.iter_episodes(tmp_path / "nowhere"))


def test_cli_ingest_unitree_clips_and_lerobot(tmp_path, capsys):
    from dexworld.cli import main

    rng = np.random.default_rng(3)
    for n in range(2):
        write_episode(tmp_path / "cup", n, dex3_values(rng, 8))
    (tmp_path / "cup" / "episode_0002").mkdir()
    (tmp_path / "cup" / "episode_0002" / "data.json").write_text("{")
    args = ["ingest-unitree", str(tmp_path / "cup"), "--robot", "g1", "-o", str(tmp_path / "clips"),
            "--lerobot-root", str(tmp_path / "lr"), "--num-frames", "4"]
    assert main(args) == 1
    assert "episode_0002/data.json is not valid JSON" in capsys.readouterr().err
    assert main(args + ["--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "skipped cup/episode_0002" in out and "cup: 2 episodes" in out
    clips = sorted((tmp_path / "clips").glob("*.h5"))
    # 8 frames at 30 Hz → 4 frames at 16 fps: one 4-frame clip per episode
    assert [p.name for p in clips] == ["cup_episode_0000_s00000.h5", "cup_episode_0001_s00000.h5"]
    from sim_bridge.lerobot_io import load_dataset

    ds = load_dataset("local/lr", tmp_path / "lr")
    assert ds.num_episodes == 2 and ds.fps == 30 and len(ds) == 16
