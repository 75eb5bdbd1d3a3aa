"""Humanoid Everyday raw episodes (built here in the dataset's layout) → clips / LeRobot, and the arm chains."""

from __future__ import annotations

import json
import lzma
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _g1_fk import g1_right_hand_in_camera, rpy
from PIL import Image

from embodiments import registry
from embodiments.clip import read_clip
from embodiments.transforms import invert_transform, make_transform, project
from sim_bridge import humanoid_everyday as he
from sim_bridge import lerobot_io as lio
from sim_bridge.robots import HE_PUBLISHED_K, arm_kinematics
from sim_bridge.unitree import unitree_layout

H, W = 48, 64  # tiny colour frames; K is the published 640×480 K scaled by 0.1
K_SMALL = HE_PUBLISHED_K * np.array([[0.1], [0.1], [1.0]])
ARM = np.array([-0.5, 0.0, 0.0, 1.2, 0.0, 0.0, 0.0, -0.5, 0.0, 0.0, 1.2, 0.0, 0.0, 0.0])


def g1_right_palm_in_camera(arm):
    """Independent numpy FK from the numbers of Unitree's G1 URDF: camera-from-right-palm (4, 4)."""
    return g1_right_hand_in_camera(arm, "dex3")


def write_episode(task_dir: Path, n: int, T: int = 10, robot: str = "g1", dot: bool = True, ext: str = "jpg"):
    """One raw episode in Humanoid Everyday's layout; the right wrist's pixel gets a white dot."""
    ep = task_dir / f"episode_{n}"
    for sub in ("color", "depth", "lidar"):
        (ep / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    frames = []
    for t in range(T):
        arm = ARM + 0.02 * np.sin(t / 3 + n)
        if robot == "g1":
            hand = np.concatenate([unitree_layout(h).to_unitree(rng.uniform(registry.get(h).lower,
                                                                            registry.get(h).upper))
                                   for h in ("dex3_left", "dex3_right")])
            acts = {"left_angles": hand[:7].tolist(), "right_angles": hand[7:].tolist()}
        else:
            hand = rng.uniform(0, 1, 12)
            acts = {"left_angles": rng.uniform(0, 0.3, 12).tolist(), "right_angles": rng.uniform(0, 0.3, 12).tolist()}
        img = np.full((H, W, 3), 20, np.uint8)
        if dot and robot == "g1":
            p = g1_right_palm_in_camera(arm)[:3, 3]
            uv, ok = project(p[None], K_SMALL)
            u, v = np.rint(uv[0, :2]).astype(int)
            assert ok[0] and 2 <= u < W - 2 and 2 <= v < H - 2, "test scene: the right wrist must be in view"
            img[v - 2:v + 3, u - 2:u + 3] = 255
        name = f"{t:06d}.{ext}"
        Image.fromarray(img).save(ep / "color" / name, quality=95)
        (ep / "depth" / f"{t:06d}.lzma").write_bytes(lzma.compress(np.full(he.DEPTH_SHAPE, 800, "<u2").tobytes()))
        (ep / "lidar" / f"{t:06d}.pcd").write_text("")
        rec = {"time": 1700000000.0 + t / 30, "states": {"arm_state": arm.tolist(), "hand_state": hand.tolist(),
                                                          "leg_state": [0.0] * (15 if robot == "g1" else 13)},
               "actions": {**acts, "sol_q": arm.tolist()},
               "image": f"color/{name}", "depth": f"depth/{t:06d}.lzma", "lidar": f"lidar/{t:06d}.pcd"}
        if robot == "g1":
            rec["robot_type"] = "G1"
        frames.append(rec)
    (ep / "data.json").write_text(json.dumps(frames))
    return ep


@pytest.fixture
def task(tmp_path):
    d = tmp_path / "pick_up_the_cup"
    write_episode(d, 0)
    write_episode(d, 1)
    return d


def test_arm_chain_matches_independent_fk():
    rng = np.random.default_rng(0)
    arms = ARM + rng.normal(0, 0.3, (5, 14))
    got = arm_kinematics("g1").camera_from_roots(arms)["dex3_right"]
    want = np.stack([g1_right_palm_in_camera(a) for a in arms])
    np.testing.assert_allclose(got, want, atol=1e-9)
    # a calibrated camera-to-torso transform overrides the URDF mount
    T_torso_cam = make_transform(rpy(-np.pi / 2, 0, -np.pi / 2), [0.1, 0.0, 0.5])
    moved = arm_kinematics("g1").camera_from_roots(arms, T_torso_cam)["dex3_right"]
    tf = arm_kinematics("g1").torso_transforms(arms)
    np.testing.assert_allclose(moved, invert_transform(T_torso_cam) @ tf["right"], atol=1e-12)


def test_episode_to_clips_overlay(task, tmp_path):
    out = tmp_path / "clips"
    rep = he.ingest(task, out_dir=out, K=K_SMALL, fps=15, num_frames=None)
    assert rep.episodes == ["pick_up_the_cup/episode_0", "pick_up_the_cup/episode_1"] and len(rep.clips) == 2
    clip = read_clip(rep.clips[0])
    # 10 frames at 30 Hz → 15 Hz: frames 0, 2, …, 8
    assert clip.frames.shape == (5, H, W, 3) and clip.joints.fps == 15 and clip.prompt == "pick up the cup"
    assert clip.joints.embodiment == "dex3_left+dex3_right"
    uvd, ok = clip.joints.project()
    wrist = 21  # right_wrist
    assert ok[:, wrist].all()
    for t in range(5):
        u, v = np.rint(uvd[t, wrist, :2]).astype(int)
        assert clip.frames[t, v, u].min() > 200  # the projected wrist lands on the dot the test drew
    # the fingers are valid slots of a Dex3; ring and pinky are not
    assert clip.joints.valid[0, 21 + 8] and not clip.joints.valid[0, 21 + 16]
    np.testing.assert_allclose(clip.extra["q"].shape, (5, 14))


def test_zip_gives_the_same_episode(task, tmp_path):
    zpath = tmp_path / "pick_up_the_cup.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for p in task.rglob("*"):
            z.write(p, p.relative_to(tmp_path).as_posix())
    a = list(he.iter_episodes(task, K=K_SMALL))
    b = list(he.iter_episodes(zpath, K=K_SMALL, with_depth=True))
    assert [e.source for e in b] == [e.source for e in a]
    np.testing.assert_array_equal(a[1].joints.positions, b[1].joints.positions)
    np.testing.assert_array_equal(a[1].frames, b[1].frames)


def test_windows_and_lerobot(task, tmp_path):
    rep = he.ingest(task, out_dir=tmp_path / "clips", lerobot_root=tmp_path / "lr", fps=30, num_frames=4,
                    K=K_SMALL)
    assert len(rep.clips) == 4 and rep.lerobot_written == rep.episodes  # 10 frames → windows at 0 and 4
    assert read_clip(rep.clips[1]).extra["start_frame"] == 4
    ds = lio.load_dataset("local/lr", tmp_path / "lr")
    assert ds.fps == 30 and ds.num_episodes == 2 and len(ds) == 20
    assert ds.meta.features["observation.state"]["names"][0] == "kLeftHandThumb0"
    rows = ds.hf_dataset.with_format("numpy")[10:20]
    ep1 = list(he.iter_episodes(task, K=K_SMALL))[1]
    np.testing.assert_array_equal(rows["observation.hand_joints"], ep1.joints.positions)
    raw = json.loads((task / "episode_1" / "data.json").read_text())
    np.testing.assert_allclose(rows["observation.state"][3], raw[3]["states"]["hand_state"], rtol=1e-6)
    # rerun resumes: nothing new
    rep2 = he.ingest(task, lerobot_root=tmp_path / "lr", K=K_SMALL)
    assert rep2.lerobot_skipped == rep.episodes and not rep2.lerobot_written


def test_h1_2_inspire_episode(tmp_path):
    d = tmp_path / "wipe_table"
    write_episode(d, 0, T=4, robot="h1_2", ext="png")
    ep = next(he.iter_episodes(d, K=K_SMALL))
    assert list(ep.q) == ["inspire_left", "inspire_right"] and ep.joints.embodiment == "inspire_left+inspire_right"
    raw = json.loads((d / "episode_0" / "data.json").read_text())
    hs = np.array([r["states"]["hand_state"] for r in raw])
    np.testing.assert_allclose(unitree_layout("inspire_right").to_unitree(ep.q["inspire_right"]), hs[:, 6:],
                               atol=1e-12)
    # actions: the 12 URDF angles, of which the actuated ones are kept (pinky proximal is index 4)
    emb = registry.get("inspire_left")
    la = np.array([r["actions"]["left_angles"] for r in raw])
    np.testing.assert_allclose(ep.action["inspire_left"][:, emb.joint_names.index("L_pinky_proximal_joint")],
                               la[:, 4])
    assert ep.joints.valid[0, 16 + 4]  # left pinky tip exists on an Inspire


def _expect_error(path, match, **kw):
    with pytest.raises(ValueError, match=match):
        list(he.iter_episodes(path, K=K_SMALL, **kw))


def test_bad_input_errors_name_episode_and_frame(task, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(task, bad)
    js = bad / "episode_1" / "data.json"
    good = js.read_text()
    js.write_text(good[: len(good) // 2])  # truncated JSON
    _expect_error(bad, r"episode_1/data.json is not valid JSON")
    recs = json.loads(good)
    recs[3]["states"]["arm_state"] = recs[3]["states"]["arm_state"][:13]
    js.write_text(json.dumps(recs))
    _expect_error(bad, r"episode_1 frame 3: field states.arm_state has 13 values, expected 14")
    recs = json.loads(good)
    js.write_text(json.dumps(recs))
    (bad / "episode_1" / "color" / "000005.jpg").unlink()
    _expect_error(bad, r"episode_1 frame 5: file episode_1/color/000005.jpg is missing")
    (bad / "episode_1" / "depth" / "000002.lzma").write_bytes(b"not lzma")
    recs = json.loads(good)
    for r in recs:
        r.pop("robot_type")
        r["states"]["hand_state"] = r["states"]["hand_state"][:10]
    js.write_text(json.dumps(recs))
    _expect_error(bad, r"cannot tell the robot")
    _expect_error(bad, r"unknown robot 'r2d2'", robot="r2d2")
    # --skip-bad: the good episode still comes through and the bad one is reported
    report = he.IngestReport()
    eps = list(he.iter_episodes(bad, K=K_SMALL, skip_bad=True, report=report))
    assert [e.source for e in eps] == ["bad/episode_0"] and report.failed[0][0] == "episode_1"
    # truncated zip
    zpath = tmp_path / "t.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.write(task / "episode_0" / "data.json", "t/episode_0/data.json")
    zpath.write_bytes(zpath.read_bytes()[:40])
    _expect_error(zpath, r"not a readable zip")
    # a broken depth file is caught when depth is checked
    shutil.rmtree(bad)
    shutil.copytree(task, bad)
    (bad / "episode_0" / "depth" / "000002.lzma").write_bytes(b"not lzma")
    _expect_error(bad, r"episode_0 frame 2: depth episode_0/depth/000002.lzma is not lzma", with_depth=True)


def test_cli_ingest(task, tmp_path, capsys):
    from dexworld.cli import main

    code = main(["ingest-humanoid-everyday", str(task), "-o", str(tmp_path / "clips"), "--fps", "30",
                 "--num-frames", "5", "--intrinsics", "38.907278,38.907278,32.161887,23.843630"])
    assert code == 0 and "2 episodes, 4 clips" in capsys.readouterr().out
    assert main(["ingest-humanoid-everyday", str(task), "-o", str(tmp_path / "c2"), "--robot", "t800"]) == 1
    assert "unknown robot 't800'" in capsys.readouterr().err


def test_dataset_show_draws_the_wrist_on_the_dot(task, tmp_path):
    from dexworld.cli import main
    from worldmodel.evaluation.video import HAND_COLOURS, draw_joints

    ep = next(he.iter_episodes(task, K=K_SMALL))
    uvd, ok = ep.joints.project()
    drawn = draw_joints(ep.frames, uvd[..., :2], ok, radius=2.0, bones=False)
    u, v = np.rint(uvd[0, 21, :2]).astype(int)
    assert (drawn[0, v, u] == HAND_COLOURS[1]).all() and (ep.frames[0, v, u] > 200).all()
    he.ingest(task, lerobot_root=tmp_path / "lr", K=K_SMALL)
    out = tmp_path / "ep.gif"
    assert main(["dataset", "show", str(tmp_path / "lr"), "--episode", "1", "-o", str(out)]) == 0
    import imageio.v3 as iio

    gif = iio.imread(out)
    assert gif.shape[0] == 10 and gif.shape[1:3] == (H, W)


def test_file_paths_in_data_json_stay_inside_the_episode(task, tmp_path, capsys):
    """``image``/``depth`` paths with ``..`` or absolute, and a symbolic link out of the task folder, are refused
    with the episode, frame and field named, although the file they point at exists and decodes."""
    from dexworld.cli import main

    outside = tmp_path / "x.png"
    shutil.copy(task / "episode_0" / "color" / "000000.jpg", outside)
    bad = tmp_path / "bad"
    shutil.copytree(task, bad)
    js = bad / "episode_0" / "data.json"
    good = json.loads(js.read_text())
    for field, value in (("image", "../../x.png"), ("image", str(outside)), ("depth", "../../x.png")):
        recs = json.loads(json.dumps(good))
        recs[2][field] = value
        js.write_text(json.dumps(recs))
        _expect_error(bad, rf"episode_0 frame 2: field '{field}': '{re.escape(value)}' must be a relative path "
                           "inside episode_0", with_depth=True)
    js.write_text(json.dumps(good))
    link = bad / "episode_0" / "color" / "000004.jpg"
    link.unlink()
    link.symlink_to(outside)
    _expect_error(bad, r"episode_0 frame 4: 'episode_0/color/000004.jpg' leads outside .*bad through a symbolic link")
    code = main(["ingest-humanoid-everyday", str(bad), "-o", str(tmp_path / "clips"), "--fps", "30",
                 "--num-frames", "5", "--intrinsics", "38.9,38.9,32.2,23.8"])
    err = capsys.readouterr().err
    assert code == 1 and "symbolic link" in err and "Traceback" not in err
    # the same inside a zip: the path is refused before anything is read
    recs = json.loads(json.dumps(good))
    recs[0]["image"] = "../../x.png"
    zpath = tmp_path / "z.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("z/episode_0/data.json", json.dumps(recs))
        z.write(outside, "x.png")
    _expect_error(zpath, r"episode_0 frame 0: field 'image': '\.\./\.\./x\.png' must be a relative path")
