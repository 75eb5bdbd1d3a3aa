"""LeRobot export → reload → import round trips, append, crash/resume (tiny 32×32 episodes)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from embodiments import registry
from embodiments.transforms import intrinsics, make_transform, rotation_about
from sim_bridge import lerobot_io as lio
from sim_bridge.clips import episode_from_clip, write_episode_clips
from sim_bridge.hand_pose import hands_in_camera
from sim_bridge.unitree import unitree_layout

os.environ.setdefault("HF_HUB_OFFLINE", "1")
H = W = 32
FPS = 16
HANDS = ("dex3_left", "dex3_right")
K = intrinsics(30.0, 30.0, 16.0, 16.0)
REPO = "local/test"


def make_episode(seed: int, T: int = 5, hands=HANDS, source: str | None = None):
    """A synthetic two-hand episode: random joints in the limits, hands ~0.35 m in front of the camera, smooth
    frames whose brightness encodes the frame index (so decoding errors are measurable)."""
    rng = np.random.default_rng(seed)
    q, roots = {}, {}
    for i, h in enumerate(hands):
        emb = registry.get(h)
        q[h] = rng.uniform(emb.lower, emb.upper, (T, emb.dof))
        R = rotation_about([0, 1, 0], 0.3 * i + rng.uniform(-0.2, 0.2)) @ rotation_about([1, 0, 0], -1.2)
        t = np.stack([np.full(T, -0.08 + 0.16 * i), np.linspace(0.02, 0.05, T), np.full(T, 0.35)], axis=1)
        roots[h] = make_transform(np.broadcast_to(R, (T, 3, 3)), t)
    joints = hands_in_camera(q, roots, K, fps=FPS)
    yy, xx = np.mgrid[0:H, 0:W]
    frames = np.stack([np.stack([(xx * 6 + 20 * t) % 256, (yy * 6) % 256, np.full_like(xx, 40 * t + 30)], -1)
                       for t in range(T)]).astype(np.uint8)
    action = {h: np.clip(v + 0.01, registry.get(h).lower, registry.get(h).upper) for h, v in q.items()}
    return lio.Episode(frames=frames, joints=joints, q=q, action=action, task=f"task {seed % 2}",
                       source=source or f"ep{seed}", T_cam_root=roots)


def reload(root):
    return lio.load_dataset(REPO, root)


def test_unitree_names_in_features_and_state_exact(tmp_path):
    root = tmp_path / "ds"
    eps = [make_episode(s) for s in range(2)]
    rep = lio.export_lerobot(eps, REPO, root)
    assert rep.written == ["ep0", "ep1"] and rep.total_episodes == 2
    ds = reload(root)
    assert ds.num_episodes == 2 and len(ds) == 10
    names = ds.meta.features["observation.state"]["names"]
    assert names[:7] == list(unitree_layout("dex3_left").names)
    assert names[7:10] == ["kRightHandThumb0", "kRightHandThumb1", "kRightHandThumb2"]
    assert names[10] == "kRightHandIndex0"
    # exact states, actions, joints; K and validity
    hf = ds.hf_dataset.with_format("numpy")
    for e, ep in enumerate(eps):
        rows = hf[e * 5:(e + 1) * 5]
        state = lio.StateLayout(HANDS).encode(ep.q)
        np.testing.assert_array_equal(rows["observation.state"], state)
        np.testing.assert_array_equal(rows["action"], lio.StateLayout(HANDS).encode(ep.action))
        np.testing.assert_array_equal(rows["observation.hand_joints"], ep.joints.positions)
        np.testing.assert_array_equal(rows["observation.hand_joints_valid"], ep.joints.valid)
        np.testing.assert_allclose(rows["observation.intrinsics"][0], K, rtol=1e-6)
    # motor convention: Unitree's right slot 3 (labelled kRightHandIndex0) is motor 3 = middle_0 (see unitree.py)
    emb = registry.get("dex3_right")
    col = names.index("kRightHandIndex0")
    np.testing.assert_allclose(hf[0:5]["observation.state"][:, col],
                               eps[0].q["dex3_right"][:, emb.joint_names.index("right_hand_middle_0_joint")],
                               rtol=1e-6)
    # frames decode within codec error, tasks per episode, sidecar
    item = ds[7]
    img = (item["observation.images.ego"].numpy().transpose(1, 2, 0) * 255).astype(np.float64)
    assert np.abs(img - eps[1].frames[2]).mean() < 6.0
    assert item["task"] == "task 1" and ds[0]["task"] == "task 0"
    side = lio.read_sidecar(root)
    assert side["hands"] == list(HANDS) and [e["source"] for e in side["episodes"]] == ["ep0", "ep1"]
    np.testing.assert_allclose(side["episodes"][0]["K"], K, rtol=1e-6)


def test_import_by_fk_matches_exported_joints(tmp_path):
    root = tmp_path / "ds"
    eps = [make_episode(3), make_episode(4)]
    lio.export_lerobot(eps, REPO, root)
    back = list(lio.import_lerobot(root, REPO))
    assert [b.source for b in back] == ["ep3", "ep4"]
    for ep, b in zip(eps, back, strict=True):
        # FK from the float32-stored states and root poses reproduces the stored camera-frame joints
        assert b.joints.valid.tolist() == ep.joints.valid.tolist()
        err = np.abs(b.joints.positions - ep.joints.positions)[ep.joints.valid]
        assert err.max() < 1e-5
        for h in HANDS:
            np.testing.assert_allclose(b.q[h], ep.q[h], atol=1e-6)
        assert b.frames.shape == ep.frames.shape and b.frames.dtype == np.uint8
        assert np.abs(b.frames.astype(float) - ep.frames).mean() < 6.0
        np.testing.assert_allclose(b.joints.frame_K()[0], K, rtol=1e-6)
    # → training clips and back
    paths = write_episode_clips(back[0], tmp_path / "clips", "ep3")
    again = episode_from_clip(paths[0])
    np.testing.assert_array_equal(again.joints.positions, back[0].joints.positions)
    np.testing.assert_allclose(again.q["dex3_right"], back[0].q["dex3_right"])


def test_label_convention_puts_each_joint_under_its_label(tmp_path):
    ep = make_episode(9)
    lio.export_lerobot([ep], REPO, tmp_path / "ds", dex3_convention="label")
    ds = reload(tmp_path / "ds")
    names = ds.meta.features["observation.state"]["names"]
    st = ds.hf_dataset.with_format("numpy")[0:5]["observation.state"]
    emb = registry.get("dex3_right")
    for label, joint in (("kRightHandIndex0", "right_hand_index_0_joint"),
                         ("kRightHandMiddle1", "right_hand_middle_1_joint")):
        np.testing.assert_allclose(st[:, names.index(label)], ep.q["dex3_right"][:, emb.joint_names.index(joint)],
                                   rtol=1e-6)
    back = next(lio.import_lerobot(tmp_path / "ds", REPO))  # the sidecar remembers the convention
    np.testing.assert_allclose(back.q["dex3_right"], ep.q["dex3_right"], atol=1e-6)


def test_fitted_root_pose_when_not_given(tmp_path):
    ep = make_episode(5)
    truth = ep.T_cam_root
    ep.T_cam_root = None
    lio.export_lerobot([ep], REPO, tmp_path / "ds")
    rows = reload(tmp_path / "ds").hf_dataset.with_format("numpy")[0:5]
    np.testing.assert_allclose(rows["observation.hand_root_pose"][:, 1], truth["dex3_right"], atol=1e-5)


def test_append_episodes_keeps_old_files(tmp_path):
    root = tmp_path / "ds"
    lio.export_lerobot([make_episode(0)], REPO, root)
    old = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "meta" not in p.parts}
    lio.export_lerobot([make_episode(1), make_episode(2)], REPO, root)
    for p, data in old.items():
        assert p.read_bytes() == data  # hard-linked staging never rewrote committed data/video files
    ds = reload(root)
    assert ds.num_episodes == 3 and len(ds) == 15
    assert int(ds[12]["episode_index"]) == 2
    # re-exporting the same sources is a no-op
    rep = lio.export_lerobot([make_episode(1)], REPO, root)
    assert rep.skipped == ["ep1"] and reload(root).num_episodes == 3


def test_crash_inside_frame_loop_then_resume(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    eps = [make_episode(s) for s in range(3)]
    monkeypatch.setenv(lio.FAILPOINT_ENV, "export.frame:8:raise")  # 3rd frame of the 2nd episode
    lio._failpoint.counts.clear()
    with pytest.raises(RuntimeError, match="failpoint"):
        lio.export_lerobot(eps, REPO, root)
    ds = reload(root)
    assert ds.num_episodes == 1 and len(ds) == 5  # the committed episode, no partial one
    assert not (tmp_path / ".ds.staging").exists()
    monkeypatch.delenv(lio.FAILPOINT_ENV)
    rep = lio.export_lerobot(eps, REPO, root)
    assert rep.skipped == ["ep0"] and rep.written == ["ep1", "ep2"]
    ds = reload(root)
    assert ds.num_episodes == 3 and len(ds) == 15
    np.testing.assert_array_equal(ds.hf_dataset.with_format("numpy")[5:10]["observation.hand_joints"],
                                  eps[1].joints.positions)


_CHILD = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {tests!r})
    from test_lerobot_io import make_episode, REPO
    from sim_bridge import lerobot_io as lio
    lio.export_lerobot([make_episode(s) for s in range(3)], REPO, {root!r})
""")


def test_sigkill_during_export(tmp_path, point="export.frame:8"):
    root = tmp_path / "ds"
    code = _CHILD.format(tests=str(Path(__file__).parent), root=str(root))
    env = {**os.environ, lio.FAILPOINT_ENV: point, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=Path(__file__).parents[1],
                          capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    ds = reload(root)  # recovers: only completed commits are visible
    assert ds.num_episodes == 1 and len(ds) == 5
    assert not (tmp_path / ".ds.staging").exists() and not (tmp_path / ".ds.backup").exists()
    rep = lio.export_lerobot([make_episode(s) for s in range(3)], REPO, root)
    assert rep.written == ["ep1", "ep2"]
    assert reload(root).num_episodes == 3


def test_recover_after_kill_between_the_commit_renames(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    lio.export_lerobot([make_episode(0)], REPO, root)
    # a kill between "root -> backup" and "staging -> root" leaves this on disk:
    os.rename(root, tmp_path / ".ds.backup")
    (tmp_path / ".ds.staging" / "meta").mkdir(parents=True)
    assert lio.recover(root) == "restored"
    assert reload(root).num_episodes == 1 and not (tmp_path / ".ds.staging").exists()
    # and a kill after the swap but before the backup was removed
    (tmp_path / ".ds.backup").mkdir()
    assert lio.recover(root) == "discarded" and reload(root).num_episodes == 1


def test_recovery_never_discards_the_committed_episodes(tmp_path):
    """Killed between the commit renames, then something (lerobot itself) opened the dataset and left an empty
    folder where it was: the backup with the committed episode is put back, not deleted as superseded."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root, backup, staging = tmp_path / "ds", tmp_path / ".ds.backup", tmp_path / ".ds.staging"
    lio.export_lerobot([make_episode(0)], REPO, root)
    lio.export_lerobot([make_episode(1)], REPO, tmp_path / "next")  # stands in for the finished staging copy
    os.rename(root, backup)
    os.rename(tmp_path / "next", staging)
    with pytest.raises(Exception):  # noqa: B017 - offline, lerobot tries the hub and fails …
        LeRobotDataset(REPO, root=root)
    assert root.is_dir() and not any(root.rglob("*.*"))  # … leaving an empty dataset folder behind
    rep = lio.export_lerobot([make_episode(0), make_episode(2)], REPO, root)
    assert rep.skipped == ["ep0"] and rep.written == ["ep2"] and rep.total_episodes == 2
    assert not backup.exists() and not staging.exists()
    # opening (not exporting) the half-renamed dataset restores it and leaves no empty folder
    shutil.rmtree(root)
    lio.export_lerobot([make_episode(0)], REPO, tmp_path / "again")
    os.rename(tmp_path / "again", backup)
    assert reload(root).num_episodes == 1 and not backup.exists()
    assert {p.name for p in tmp_path.iterdir() if p.suffix != ".lock"} == {"ds"}  # no empty folder beside it
    # a root holding something else beside a backup: refused, both kept
    os.rename(root, backup)
    root.mkdir()
    (root / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="move one of them away"):
        lio.export_lerobot([make_episode(3)], REPO, root)
    assert (root / "notes.txt").read_text() == "x" and (backup / lio.SIDECAR).exists()


def test_export_never_replaces_a_folder_it_did_not_write(tmp_path, capsys):
    from dexworld.cli import main

    clips = tmp_path / "clips"
    write_episode_clips(make_episode(0), clips, "ep0")
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "notes.txt").write_text("x")
    (tmp_path / "file").write_text("y")
    before = sorted(tmp_path.rglob("*"))
    for root, match in ((ds, f"dataset root {ds} exists and is not a LeRobot dataset (it holds notes.txt)"),
                        (tmp_path / "file", f"dataset root {tmp_path / 'file'} is a file")):
        assert main(["export-lerobot", str(clips), "--root", str(root)]) == 1
        err = capsys.readouterr().err
        assert match in err and len(err.strip().splitlines()) == 1
    assert sorted(tmp_path.rglob("*")) == before  # nothing renamed, created or deleted
    assert (ds / "notes.txt").read_text() == "x" and (tmp_path / "file").read_text() == "y"
    # an empty folder is fine; files a user keeps inside a dexworld dataset survive every later commit
    (tmp_path / "empty").mkdir()
    assert main(["export-lerobot", str(clips), "--root", str(tmp_path / "empty")]) == 0
    (tmp_path / "empty" / "README.md").write_text("my notes")
    (tmp_path / "empty" / "extra").mkdir()
    (tmp_path / "empty" / "extra" / "a.txt").write_text("a")
    write_episode_clips(make_episode(1), clips, "ep1")
    assert main(["export-lerobot", str(clips), "--root", str(tmp_path / "empty")]) == 0
    assert "wrote 1, already there 1" in capsys.readouterr().out
    assert (tmp_path / "empty" / "README.md").read_text() == "my notes"
    assert (tmp_path / "empty" / "extra" / "a.txt").read_text() == "a"


def test_bad_input_errors(tmp_path):
    ep = make_episode(0)
    ep.frames = ep.frames[:, :31]
    with pytest.raises(ValueError, match="even"):
        lio.export_lerobot([ep], REPO, tmp_path / "a")
    ep = make_episode(1)
    ep.q["dex3_left"] = ep.q["dex3_left"][:3]
    with pytest.raises(ValueError, match=r"ep1: q\['dex3_left'\] must have shape"):
        lio.export_lerobot([ep], REPO, tmp_path / "b")
    bad, good = make_episode(2, hands=("dex3_right",)), make_episode(3, hands=("dex3_right",))
    bad.frames = bad.frames.astype(np.float32)
    rep = lio.export_lerobot([bad, good], REPO, tmp_path / "c", skip_bad=True)
    assert rep.written == ["ep3"] and rep.failed[0][0] == "ep2"
    with pytest.raises(ValueError, match="hands"):
        lio.export_lerobot([make_episode(4)], REPO, tmp_path / "c")


def test_import_unitree_style_dataset_through_arm_chain(tmp_path):
    """A dataset laid out like unitree_lerobot's G1 Dex3 ones (28 named columns, no dexworld extras)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from sim_bridge.robots import arm_kinematics
    from sim_bridge.unitree import arm_feature_names, dex3_feature_names

    names = list(arm_feature_names()) + list(dex3_feature_names("left")) + list(dex3_feature_names("right"))
    feats = {"observation.images.cam_left_high": {"dtype": "video", "shape": (H, W, 3),
                                                  "names": ["height", "width", "channels"]},
             "observation.state": {"dtype": "float32", "shape": (28,), "names": [names]},
             "action": {"dtype": "float32", "shape": (28,), "names": [names]}}
    root = tmp_path / "unitree"
    ds = LeRobotDataset.create("unitree/g1", fps=30, features=feats, root=root, video_backend="pyav",
                               rgb_encoder=lio.default_encoder())
    rng = np.random.default_rng(0)
    arm = np.tile([0.0, 0.2, 0.0, 1.2, 0.0, 0.0, 0.0, 0.0, -0.2, 0.0, 1.2, 0.0, 0.0, 0.0], (4, 1))
    arm += rng.normal(0, 0.05, arm.shape)
    hands = {h: rng.uniform(registry.get(h).lower, registry.get(h).upper, (4, 7)) for h in HANDS}
    state = np.concatenate([arm] + [unitree_layout(h).to_unitree(hands[h]) for h in HANDS], 1).astype(np.float32)
    for t in range(4):
        ds.add_frame({"observation.images.cam_left_high": np.full((H, W, 3), 60 * t, np.uint8),
                      "observation.state": state[t], "action": state[t], "task": "pick"})
    ds.save_episode()
    ds.finalize()
    with pytest.raises(ValueError, match="robot 'h1_2' has no model with hands"):
        next(lio.import_lerobot(root, "unitree/g1", robot="h1_2"))
    ep = next(lio.import_lerobot(root, "unitree/g1"))  # Dex3 names → dex3 hands on the G1, no flags
    assert ep.task == "pick" and ep.frames.shape == (4, H, W, 3) and ep.joints.fps == 30
    for h in HANDS:
        np.testing.assert_allclose(ep.q[h], hands[h], atol=1e-6)
    roots = arm_kinematics("g1").camera_from_roots(state[:, :14].astype(np.float64))
    np.testing.assert_allclose(ep.joints.positions[:, 21], roots["dex3_right"][:, :3, 3], atol=1e-5)  # wrist
    K = ep.joints.frame_K()[0]  # robot default K scaled from 640×480 to 32×32
    np.testing.assert_allclose(K[0, 2], 321.61887 * W / 640, rtol=1e-6)


def test_inspire_state_is_normalised_command(tmp_path):
    ep = make_episode(7, hands=("inspire_left", "inspire_right"))
    lio.export_lerobot([ep], REPO, tmp_path / "ds")
    ds = reload(tmp_path / "ds")
    names = ds.meta.features["observation.state"]["names"]
    assert names[:6] == ["kLeftHandPinky", "kLeftHandRing", "kLeftHandMiddle", "kLeftHandIndex",
                         "kLeftHandThumbBend", "kLeftHandThumbRotation"]
    st = ds.hf_dataset.with_format("numpy")[0:5]["observation.state"]
    assert st.min() >= 0.0 and st.max() <= 1.0
    emb = registry.get("inspire_left")
    pinky = ep.q["inspire_left"][:, emb.joint_names.index("L_pinky_proximal_joint")]
    np.testing.assert_allclose(st[:, 0], (1.7 - pinky) / 1.7, atol=1e-6)
    back = next(lio.import_lerobot(tmp_path / "ds", REPO))
    np.testing.assert_allclose(back.q["inspire_right"], ep.q["inspire_right"], atol=2e-6)


def test_synthetic_hands_are_in_view():
    # guard for the synthetic scene: the hands of make_episode lie in front of the camera, near the image
    ep = make_episode(0)
    uvd, ok = ep.joints.project()
    assert ok[ep.joints.valid].all()
    assert np.all((uvd[ok][:, :2] > -20) & (uvd[ok][:, :2] < 60))


def test_cli_export_and_import(tmp_path, capsys):
    from dexworld.cli import main

    clips = tmp_path / "clips"
    for s in range(2):
        write_episode_clips(make_episode(s), clips, f"ep{s}")
    assert main(["export-lerobot", str(clips), "--root", str(tmp_path / "ds")]) == 0
    assert "wrote 2" in capsys.readouterr().out
    assert main(["export-lerobot", str(clips), "--root", str(tmp_path / "ds")]) == 0  # resume: nothing new
    assert "wrote 0, already there 2" in capsys.readouterr().out
    assert main(["import-lerobot", str(tmp_path / "ds"), "-o", str(tmp_path / "back")]) == 0
    back = sorted((tmp_path / "back").glob("*.h5"))
    assert len(back) == 2
    clip = episode_from_clip(back[1])
    ref = episode_from_clip(sorted(clips.glob("*.h5"))[1])
    np.testing.assert_allclose(clip.joints.positions, ref.joints.positions, atol=1e-5)
    assert main(["import-lerobot", str(tmp_path / "ds"), "-o", str(tmp_path / "x"), "--intrinsics", "1,2"]) == 1
    assert "--intrinsics must be four numbers" in capsys.readouterr().err


def test_rollout_to_episode_uses_recorded_poses(tmp_path):
    from types import SimpleNamespace

    from embodiments.transforms import look_at
    from sim_bridge.clips import episode_from_rollout

    ep = make_episode(11, hands=("dex3_right",))
    T_world_cam = np.broadcast_to(look_at([0.5, -0.4, 1.2], [0, 0, 0.8]), (5, 4, 4))
    sim = SimpleNamespace(frames=ep.frames, joints=ep.joints.replace(embodiment="dex3_right"), q=ep.q["dex3_right"],
                          q_target=ep.action["dex3_right"], T_world_cam=T_world_cam,
                          T_world_hand=T_world_cam @ ep.T_cam_root["dex3_right"])
    got = episode_from_rollout(sim, task="grasp", source="sim0")
    np.testing.assert_allclose(got.T_cam_root["dex3_right"], ep.T_cam_root["dex3_right"], atol=1e-12)
    lio.export_lerobot([got], REPO, tmp_path / "ds")
    back = next(lio.import_lerobot(tmp_path / "ds", REPO))
    assert back.task == "grasp" and back.source == "sim0"
    np.testing.assert_allclose(back.joints.positions, ep.joints.positions, atol=1e-5)
