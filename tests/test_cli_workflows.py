"""The first hour of use: commands make each other's inputs, reruns replace their outputs, and routine data goes
through without spurious warnings or errors (issue 16, items 12-15)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_lerobot_io import make_episode

import embodiments
from dexworld import demo as demo_mod
from dexworld.checkpoints import resolve_checkpoint
from dexworld.cli import main
from embodiments import JointLimitWarning, SparseJoints


# ------------------------------------------------------------------------------------------ item 12: demo reruns
def _fake_steps(cfg, emb, checkpoint, out):
    """Stands in for the minutes of real work: writes the demo's four outputs, tagged with the motion."""
    from sim_bridge.lerobot_io import SIDECAR, SIDECAR_FORMAT, SIDECAR_VERSION

    for name in ("side_by_side.mp4", "side_by_side.gif"):
        (out / name).write_text(cfg.motion)
    (out / "lerobot" / SIDECAR).parent.mkdir(parents=True)
    (out / "lerobot" / SIDECAR).write_text(json.dumps({"format": SIDECAR_FORMAT, "schema_version": SIDECAR_VERSION,
                                                        "episodes": [{"source": "demo-seed0"}]}))
    (out / "lerobot" / "episode.txt").write_text(cfg.motion)
    (out / "metrics.json").write_text(json.dumps({"motion": cfg.motion, "imagined": {}}))
    if cfg.motion == "wave":
        raise RuntimeError("the physics rollout was unstable")
    return {"motion": cfg.motion}


def test_demo_rerun_replaces_all_outputs_and_only_them(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_mod, "_run_steps", _fake_steps)
    out = tmp_path / "d"
    demo_mod.run_demo(demo_mod.DemoConfig(out=out, motion="power_grasp", progress=False))
    (out / "notes.txt").write_text("mine")
    (out / "lerobot" / "stale_file").write_text("from the first run")
    demo_mod.run_demo(demo_mod.DemoConfig(out=out, motion="pinch", progress=False))
    assert {p.name for p in out.iterdir()} == {"side_by_side.mp4", "side_by_side.gif", "metrics.json", "lerobot",
                                               "notes.txt"}
    assert (out / "side_by_side.gif").read_text() == "pinch"
    assert (out / "lerobot" / "episode.txt").read_text() == "pinch"
    assert not (out / "lerobot" / "stale_file").exists() and (out / "notes.txt").read_text() == "mine"
    with pytest.raises(RuntimeError):  # a failing rerun leaves the previous outputs whole
        demo_mod.run_demo(demo_mod.DemoConfig(out=out, motion="wave", progress=False))
    assert {p.name for p in out.iterdir()} == {"side_by_side.mp4", "side_by_side.gif", "metrics.json", "lerobot",
                                               "notes.txt"}
    assert json.loads((out / "metrics.json").read_text())["motion"] == "pinch"


@pytest.mark.parametrize("name, content", [("metrics.json", '{"my": "results"}'), ("lerobot", None),
                                           ("side_by_side.gif", None)])
def test_demo_refuses_to_replace_files_it_did_not_write(tmp_path, monkeypatch, capsys, name, content):
    monkeypatch.setattr(demo_mod, "_run_steps", _fake_steps)
    out = tmp_path / "d"
    out.mkdir()
    if content is None:
        (out / name).mkdir()  # a user's folder (e.g. their own dataset) under one of the demo's names
        (out / name / "data.txt").write_text("mine")
    else:
        (out / name).write_text(content)
    assert main(["demo", "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"--out {out}: {name} there was not written by 'dexworld demo'" in err and "Traceback" not in err
    assert [p.name for p in out.iterdir()] == [name]
    assert (out / name).read_text() == content if content else (out / name / "data.txt").read_text() == "mine"


def test_demo_refuses_bad_names_before_touching_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo_mod, "_run_steps", _fake_steps)
    out = tmp_path / "d"
    demo_mod.run_demo(demo_mod.DemoConfig(out=out, motion="pinch", progress=False))
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["demo", "--out", str(out), "--embodiment", "no_such_hand", "--no-progress"]) == 1
    assert main(["demo", "--out", str(out), "--motion", "juggle", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "no_such_hand" in err and "juggle" in err and "Traceback" not in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


# ------------------------------------------------------------------------------------------ item 13: export
def test_export_skip_bad_catches_a_hand_out_of_view_and_names_the_clip(tmp_path, capsys):
    from sim_bridge.clips import write_episode_clips

    bad = make_episode(0, source="a_hidden")
    valid = bad.joints.valid.copy()
    valid[0, 21:] = False  # the right hand is out of view in frame 0, as in synth clips
    bad.joints, bad.T_cam_root = bad.joints.replace(valid=valid), None  # no recorded pose: it has to be fitted
    clips = tmp_path / "clips"
    write_episode_clips(bad, clips, "a_hidden")
    write_episode_clips(make_episode(1, source="b_good"), clips, "b_good")
    root = tmp_path / "ds"
    assert main(["export-lerobot", str(clips), "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "episode 'a_hidden@0'" in err and "fewer than 3 valid joints" in err
    assert not root.exists()
    assert main(["export-lerobot", str(clips), "--root", str(root), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "skipped a_hidden@0: episode 'a_hidden@0': dex3_right: frame 0 has fewer than 3 valid joints" in out
    assert "wrote 1" in out


# ------------------------------------------------------------------------------------------ item 14: quiet data
def test_float32_overshoot_of_a_limit_is_not_a_warning():
    import sim_bridge

    emb = embodiments.get("inspire_right")
    q = np.repeat(emb.upper[None], 2, 0).astype(np.float32).astype(np.float64) + 1e-7
    with warnings.catch_warnings():
        warnings.simplefilter("error", JointLimitWarning)
        emb.check_q(q)
        sim = sim_bridge.rollout(emb, q, np.repeat(np.eye(4)[None], 2, 0), size=(32, 32))
    assert sim.issues == []
    with pytest.warns(JointLimitWarning):
        emb.check_q(q + 1e-3)


def test_opening_an_exported_dataset_prints_no_torchcodec_traceback(tmp_path, capfd):
    from sim_bridge import lerobot_io as lio

    lio.export_lerobot([make_episode(0)], repo_id="local/q", root=tmp_path / "ds")
    capfd.readouterr()
    ds = lio.load_dataset("local/q", tmp_path / "ds")
    assert ds[0]["observation.images.ego"].shape[0] == 3
    out, err = capfd.readouterr()
    assert "torchcodec" not in (out + err) and "Traceback" not in (out + err)


# ------------------------------------------------------------------------------------------ item 15: inputs
def test_motion_command_writes_the_builtin_motion(tmp_path, capsys):
    assert main(["motion", "pinch", "-o", str(tmp_path / "p.npz"), "--frames", "9", "--side", "left"]) == 0
    got = SparseJoints.load(tmp_path / "p.npz")
    ref = embodiments.human_motion("pinch", side="left", frames=9)
    np.testing.assert_array_equal(got.positions, ref.positions)
    assert got.embodiment == "mano_left" and "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["motion", "juggle", "-o", str(tmp_path / "j.npz")])
    assert main(["motion", "wave", "-o", str(tmp_path / "w.txt")]) == 1
    assert not (tmp_path / "j.npz").exists() and not (tmp_path / "w.txt").exists()


def test_checkpoint_argument_takes_a_run_folder(tmp_path):
    from worldmodel.wan.presets import shipped_path

    run = tmp_path / "run"
    for step in (5, 40):
        shutil.copytree(shipped_path("tiny-sim"), run / f"checkpoint-{step:06d}")
    assert resolve_checkpoint(run) == run / "checkpoint-000040"  # no 'latest' file: the highest step
    (run / "latest").write_text("checkpoint-000005")
    assert resolve_checkpoint(run) == run / "checkpoint-000005"
    assert resolve_checkpoint(run / "checkpoint-000040") == run / "checkpoint-000040"
    with pytest.raises(FileNotFoundError, match="neither a saved model .* nor a training run folder"):
        resolve_checkpoint(tmp_path)


def test_checkpoint_argument_takes_a_shipped_name(tmp_path, monkeypatch):
    root = Path(__file__).resolve().parents[1] / "worldmodel" / "checkpoints"
    monkeypatch.chdir(tmp_path)  # no folder of that name here
    assert resolve_checkpoint("tiny-sim-bimanual") == root / "tiny-sim-bimanual"
    (tmp_path / "tiny-sim-bimanual").mkdir()  # a folder of the user's own under that name wins (and is then checked)
    with pytest.raises(FileNotFoundError, match="tiny-sim-bimanual: neither a saved model"):
        resolve_checkpoint("tiny-sim-bimanual")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        resolve_checkpoint("tiny-sim-5x")


def test_simulate_saves_a_reference_frame_and_joints_for_generate(tmp_path, capsys):
    import PIL.Image

    emb = embodiments.get("inspire_right")
    np.save(tmp_path / "q.npy", np.repeat(emb.neutral()[None], 5, 0))
    assert main(["simulate", str(tmp_path / "q.npy"), "--embodiment", "inspire_right", "--size", "64",
                 "--out", str(tmp_path / "sim.mp4"), "--joints-out", str(tmp_path / "j.npz"),
                 "--save-ref", str(tmp_path / "ref.png")]) == 0
    ref = np.asarray(PIL.Image.open(tmp_path / "ref.png"))
    joints = SparseJoints.load(tmp_path / "j.npz")
    assert ref.shape == (64, 64, 3) and joints.frame == "camera" and joints.K is not None and len(joints) == 5
    assert main(["generate", "--image", str(tmp_path / "ref.png"), "--joints", str(tmp_path / "j.npz"), "-o",
                 str(tmp_path / "gen.mp4"), "--steps", "1", "--height", "64", "--width", "64", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "generating 5 frames at 64x64" in out and "wrote" in out
    assert (tmp_path / "gen.mp4").stat().st_size > 0


def test_device_reaches_train_and_demo(tmp_path, monkeypatch):
    import worldmodel.training.distributed as dist
    import worldmodel.training.trainer as trainer_mod

    seen = {}

    class Stop(ValueError):
        pass

    def fake_make_accelerator(cfg, cpu=False):
        seen["cpu"] = cpu
        return "accelerator"

    def fake_trainer(cfg, resume=None, accelerator=None, overwrite=False):
        seen["accelerator"] = accelerator
        raise Stop("stop here")

    monkeypatch.setattr(dist, "make_accelerator", fake_make_accelerator)
    monkeypatch.setattr(trainer_mod, "Trainer", fake_trainer)
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--device", "cpu"]) == 1
    assert seen == {"cpu": True, "accelerator": "accelerator"}

    def fake_run_demo(cfg):
        seen["demo_device"] = cfg.device
        raise Stop("stop here")

    monkeypatch.setattr(demo_mod, "run_demo", fake_run_demo)
    assert main(["demo", "--out", str(tmp_path / "d"), "--device", "cpu", "--no-progress"]) == 1
    assert seen["demo_device"] == "cpu"
