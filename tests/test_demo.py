"""`dexworld demo` end to end on the shipped model: the files it promises, and that control measurably helps."""

import json

import imageio.v3 as iio
import numpy as np
import pytest

from dexworld.cli import main


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out), "--no-progress"]) == 0
    return out


def test_demo_writes_video_metrics_and_dataset(demo_out):
    for name in ("side_by_side.mp4", "side_by_side.gif", "metrics.json"):
        assert (demo_out / name).stat().st_size > 0
    from sim_bridge.lerobot_io import load_dataset

    ds = load_dataset("dexworld/demo_imagined", demo_out / "lerobot")
    assert ds.num_episodes == 1 and ds.num_frames == 17


def test_hand_moves_in_both_panels(demo_out):
    gif = iio.imread(demo_out / "side_by_side.gif", index=None)  # (T, band + H, 3W + gaps, 3)
    assert gif.shape[0] == 17
    w = (gif.shape[2] - 4) // 3
    band = gif.shape[1] - w  # square panels under the column titles
    titles = gif[:, :band].astype(float)
    assert band > 0 and np.abs(titles - titles[:1]).mean() < 2  # the title band stays put (up to GIF palettes)
    assert ((titles < 100).all(-1).sum((1, 2)) > 20).all()  # and holds dark text on every frame
    gif = gif[:, band:]
    simulated, imagined = gif[..., :w, :].astype(float), gif[..., w + 2: 2 * w + 2, :].astype(float)
    for panel in (simulated, imagined):
        assert np.abs(panel[-1] - panel[0]).mean() > 2.0  # the last frame differs visibly from the first


def test_control_beats_control_off(demo_out):
    report = json.loads((demo_out / "metrics.json").read_text())
    on, off = report["imagined"], report["control_off"]
    assert on["psnr"] > off["psnr"]
    assert on["keypoints"]["mean_px"] < 0.5 * off["keypoints"]["mean_px"]
    assert on["keypoints"]["probe_heldout"]["mean_px"] > 0  # the probe's own accuracy travels with its numbers


def test_imagined_frames_keep_the_given_image_and_the_hand(demo_out):
    """Frame 0 and the hand region, as measured for the shipped model (docs/results.md, twenty-seventh attempt: 26.9
    dB and 16.9 dB vs 13.3 dB control off, default demo), with a margin; the issue's targets (28 / 18 dB, met on the
    48 held-out scenes) are not met on this clip."""
    report = json.loads((demo_out / "metrics.json").read_text())
    on, off = report["imagined"], report["control_off"]
    assert on["frame0_psnr"] > 25.0  # 21.9 dB before frame 0's colour was fixed in the encoder; then 25.6, 26.3, 26.7
    assert on["hand_psnr"] > 14.5 and on["hand_psnr"] > off["hand_psnr"]


def test_imagine_passes_the_guidance_scale_and_hides_joints_for_the_baseline():
    """``--guidance`` reaches the pipeline (None: the model's own); the control-off run hides every joint."""
    from types import SimpleNamespace

    from dexworld.demo import imagine
    from embodiments.sparse import SparseJoints

    calls = []

    def pipe(image, joints, **kw):
        calls.append((joints.valid.copy(), kw["guidance_scale"]))
        return SimpleNamespace(frames=np.zeros((5, 16, 16, 3)))

    valid = np.zeros((5, 42), bool)
    valid[:, 21:] = True
    joints = SparseJoints(np.ones((5, 42, 3)), valid, frame="camera")
    sim = SimpleNamespace(frames=np.zeros((5, 16, 16, 3), np.uint8), joints=joints)
    imagine(pipe, sim, "p", None, 0, guidance=2.0)
    imagine(pipe, sim, "p", None, 0, control=False)
    assert calls[0][1] == 2.0 and calls[0][0][:, 21:].all()
    assert calls[1][1] is None and not calls[1][0].any()


def test_demo_records_the_guidance_it_sampled_with(demo_out):
    assert json.loads((demo_out / "metrics.json").read_text())["guidance"] == 1.0  # the shipped model: no CFG


def test_demo_rejects_bad_frame_count(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:  # checked when the command line is parsed
        main(["demo", "--out", str(tmp_path), "--frames", "16", "--no-progress"])
    assert e.value.code == 2 and "argument --frames" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_rerun_with_another_hand_and_motion_replaces_everything(demo_out, tmp_path):
    import shutil

    from sim_bridge.lerobot_io import read_sidecar

    out = tmp_path / "d"
    shutil.copytree(demo_out, out)
    assert main(["demo", "--out", str(out), "--embodiment", "dex3_right", "--motion", "pinch", "--kinematic",
                 "--no-progress"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert (report["embodiment"], report["motion"]) == ("dex3_right", "pinch")
    episodes = read_sidecar(out / "lerobot")["episodes"]
    assert [e["task"] for e in episodes] == ["imagined: pinch retargeted to dex3_right"]
    assert sorted(p.name for p in out.iterdir()) == ["lerobot", "metrics.json", "side_by_side.gif",
                                                     "side_by_side.mp4"]


def test_swap_in_failing_half_way_leaves_every_previous_output(tmp_path, monkeypatch):
    """A failure while the new outputs move in (here: the second rename) puts all the previous ones back."""
    import os

    from dexworld import demo

    out, staging = tmp_path / "out", tmp_path / "out" / ".stage"
    staging.mkdir(parents=True)
    names = ("a.txt", "b.txt", "c.txt")
    for n in names:
        (out / n).write_text(f"old {n}")
        (staging / n).write_text(f"new {n}")
    real, moves_in = os.replace, []

    def flaky(src, dst):
        if os.fspath(src).startswith(os.fspath(staging)):
            moves_in.append(src)
            if len(moves_in) == 2:
                raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(demo.os, "replace", flaky)
    with pytest.raises(OSError):
        demo._swap_in(staging, out, names)
    assert {n: (out / n).read_text() for n in names} == {n: f"old {n}" for n in names}
    assert (staging / "a.txt").read_text() == "new a.txt"


def test_a_pair_of_hands_in_one_scene(tmp_path, capsys):
    """``--embodiment inspire_left,inspire_right``: both hands retargeted, simulated in one scene and commanded
    together; a two-hand episode. The shipped probe was trained on one-hand frames, so no joint error is reported,
    and the output says why."""
    out = tmp_path / "pair"
    assert main(["demo", "--embodiment", "inspire_left,inspire_right", "--frames", "5", "--size", "64",
                 "--steps", "2", "--kinematic", "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["embodiment"] == "inspire_left+inspire_right"
    assert report["checkpoint"] == "shipped:tiny-sim-bimanual"  # the shipped model trained on pairs
    on = report["imagined"]
    assert on.get("keypoints") is None and on["hand_psnr"] > 0
    assert any("one-hand frames" in n for n in on["notes"]) and "one-hand frames" in capsys.readouterr().out
    from sim_bridge.lerobot_io import load_dataset

    ds = load_dataset("dexworld/demo_imagined", out / "lerobot")
    assert ds.num_episodes == 1 and ds[0]["observation.state"].shape[-1] == 12  # both hands' 6 joints


def test_demo_prompt_names_each_hand():
    from dexworld.demo import demo_hands, demo_prompt

    assert demo_prompt(demo_hands("dex3_right"), "pinch") == \
        "Egocentric view: a robot right hand pinches its thumb and index finger together above the table."
    pair = demo_hands("inspire_right,inspire_left")
    assert [e.name for e in pair] == ["inspire_left", "inspire_right"]  # left first, either order given
    assert demo_prompt(pair, "open").count("hand") == 2
    from dexworld.checkpoints import shipped_model_for

    assert shipped_model_for(["dex3_right"]) == "tiny-sim"
    assert shipped_model_for(["dex3_left"]) == shipped_model_for(e.name for e in pair) == "tiny-sim-bimanual"
