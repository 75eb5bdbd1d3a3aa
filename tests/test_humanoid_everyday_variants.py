"""Humanoid Everyday raw episodes as they were really recorded: lower-case top-level robot_type (g1 / h1) or none,
.png or .jpg frames, depth as raw uint16 millimetres in depth/frame_000000.npy.lzma, no lidar, and early H1
recordings whose Inspire hand_state lists the right hand first."""

from __future__ import annotations

import json
import lzma
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embodiments import registry
from sim_bridge import humanoid_everyday as he

H, W = 48, 64
ARM = np.array([-0.5, 0.0, 0.0, 1.2, 0.0, 0.0, 0.0, -0.5, 0.0, 0.0, 1.2, 0.0, 0.0, 0.0])
# H1 actions.left/right_angles: 12 Inspire joint angles, actuated ones at index 0 (index), 2 (middle), 4 (pinky),
# 6 (ring), 8 (thumb yaw), 9 (thumb pitch) — the indices HE's he2lerobot.py reads.
ANGLE_AT = {"pinky": 4, "ring": 6, "middle": 2, "index": 0, "thumb_pitch": 9, "thumb_yaw": 8}


def inspire_angles(v: np.ndarray) -> np.ndarray:
    """12 H1 action angles from a normalised 1 = open command (pinky, ring, middle, index, thumb bend, rotation)."""
    a = np.zeros(12)
    for k, name in enumerate(("pinky", "ring", "middle", "index")):
        a[ANGLE_AT[name]] = 1.7 * (1 - v[k])
    a[ANGLE_AT["thumb_pitch"]] = 0.5 * (1 - v[4])
    a[ANGLE_AT["thumb_yaw"]] = 1.3 - 1.4 * v[5]
    return a


def write_episode(task: Path, n: int, hand_state: np.ndarray, robot_type: str | None, ext: str = "png",
                  angles: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    ep = task / f"episode_{n}"
    (ep / "color").mkdir(parents=True)
    (ep / "depth").mkdir()
    frames = []
    for t, hs in enumerate(hand_state):
        name = f"frame_{t:06d}"
        Image.fromarray(np.full((H, W, 3), 10 * t, np.uint8)).save(ep / "color" / f"{name}.{ext}")
        depth = np.full((480, 640), 700 + t, "<u2")
        (ep / "depth" / f"{name}.npy.lzma").write_bytes(lzma.compress(depth.tobytes()))
        rec = {"time": 1.7e9 + t / 30, "states": {"arm_state": ARM.tolist(), "hand_state": hs.tolist(),
                                                   "leg_state": [0.0] * 13},
               "actions": {"sol_q": ARM.tolist()}, "image": f"color/{name}.{ext}", "depth": f"depth/{name}.npy.lzma"}
        if angles is not None:
            rec["actions"].update(left_angles=angles[0][t].tolist(), right_angles=angles[1][t].tolist())
        if robot_type is not None:
            rec["robot_type"] = robot_type
        frames.append(rec)
    (ep / "data.json").write_text(json.dumps(frames))
    return ep


@pytest.mark.parametrize("robot_type", ["h1", None])
def test_h1_lower_case_or_missing_robot_type_png_npy_lzma_depth_no_lidar(tmp_path, robot_type):
    v = np.random.default_rng(0).uniform(0, 1, (4, 12))
    write_episode(tmp_path / "wave", 0, v, robot_type)
    ep = next(he.iter_episodes(tmp_path / "wave", with_depth=True))
    assert list(ep.q) == ["inspire_left", "inspire_right"] and ep.frames.shape == (4, H, W, 3)
    names = registry.get("inspire_left").joint_names
    np.testing.assert_allclose(ep.q["inspire_left"][:, names.index("L_ring_proximal_joint")], 1.7 * (1 - v[:, 1]))
    src = he.TaskSource(tmp_path / "wave")
    depth = he.load_depth(src, "episode_0/depth/frame_000003.npy.lzma", "wave")
    assert depth.dtype == np.uint16 and depth.shape == (480, 640) and (depth == 703).all()


def test_g1_lower_case_robot_type_jpg(tmp_path):
    rng = np.random.default_rng(1)
    lo = np.concatenate([registry.get("dex3_left").lower, registry.get("dex3_right").lower])
    hi = np.concatenate([registry.get("dex3_left").upper, registry.get("dex3_right").upper])
    hs = rng.uniform(lo, hi, (3, 14))
    write_episode(tmp_path / "pick", 0, hs, "g1", ext="jpg")
    ep = next(he.iter_episodes(tmp_path / "pick"))
    names = registry.get("dex3_right").joint_names
    # README hand_state: left then right, each thumb 0-2, middle 0-1, index 0-1
    np.testing.assert_allclose(ep.q["dex3_right"][:, names.index("right_hand_index_0_joint")], hs[:, 12])


def test_early_h1_right_hand_first_is_an_option_and_warned(tmp_path):
    rng = np.random.default_rng(2)
    left, right = rng.uniform(0.1, 0.9, (6, 6)), rng.uniform(0.1, 0.9, (6, 6))
    angles = (np.stack([inspire_angles(x) for x in left]), np.stack([inspire_angles(x) for x in right]))
    write_episode(tmp_path / "early", 0, np.concatenate([right, left], 1), "h1", angles=angles)  # right first
    with pytest.warns(he.HandOrderWarning, match="hand_state looks swapped.*--hand-order right-first"):
        next(he.iter_episodes(tmp_path / "early"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", he.HandOrderWarning)
        ep = next(he.iter_episodes(tmp_path / "early", hand_order="right-first"))
    names = registry.get("inspire_right").joint_names
    np.testing.assert_allclose(ep.q["inspire_right"][:, names.index("R_pinky_proximal_joint")],
                               1.7 * (1 - right[:, 0]), atol=1e-9)
    np.testing.assert_allclose(ep.q["inspire_right"][:, names.index("R_thumb_proximal_yaw_joint")],
                               1.3 - 1.4 * right[:, 5], atol=1e-9)
    # README order recordings give no warning
    write_episode(tmp_path / "late", 0, np.concatenate([left, right], 1), "h1", angles=angles)
    with warnings.catch_warnings():
        warnings.simplefilter("error", he.HandOrderWarning)
        next(he.iter_episodes(tmp_path / "late"))


def test_cli_hand_order_option(tmp_path, capsys):
    from dexworld.cli import main

    v = np.random.default_rng(3).uniform(0.1, 0.9, (4, 12))
    write_episode(tmp_path / "wave", 0, v, None)
    assert main(["ingest-humanoid-everyday", str(tmp_path / "wave"), "-o", str(tmp_path / "clips"),
                 "--hand-order", "right-first", "--num-frames", "2"]) == 0
    assert "wave: 1 episodes" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["ingest-humanoid-everyday", str(tmp_path / "wave"), "-o", str(tmp_path / "c2"), "--hand-order", "up"])
    assert "--hand-order: invalid choice: 'up'" in capsys.readouterr().err
