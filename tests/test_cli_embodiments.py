"""``dexworld embodiments list/show/plot`` through ``dexworld.cli.main``, and the plotting helpers behind ``plot``."""

from __future__ import annotations

import numpy as np
import pytest

from dexworld.cli import main
from embodiments.layout import HAND_JOINT_NAMES, NUM_SLOTS, skeleton_edges, slot_index
from embodiments.plotting import plot_sparse_joints, visible_bones

BUILTINS = ("dex3_left", "dex3_right", "inspire_left", "inspire_right", "mano_left", "mano_right")


def test_list_shows_the_six_builtins(capsys):
    assert main(["embodiments", "list"]) == 0
    out = capsys.readouterr().out
    for name in BUILTINS:
        assert name in out
    mano_row = next(line for line in out.splitlines() if "mano_right" in line)
    assert "20" in mano_row and "21/21" in mano_row and "pinky 4/4" in mano_row


def test_show_lists_joints_limits_and_slots(capsys):
    assert main(["embodiments", "show", "mano_right"]) == 0
    out = capsys.readouterr().out
    assert "index_mcp_flex" in out and "+110.0" in out  # PIP flexion limit in degrees
    line = next(row for row in out.splitlines() if "right_index_tip" in row)
    assert "index_tip" in line.replace("right_index_tip", "")
    assert "root link: wrist" in out


def test_unknown_name_is_a_one_line_error_listing_names(capsys):
    assert main(["embodiments", "show", "no_such_hand"]) == 1
    err = capsys.readouterr().err
    assert "no_such_hand" in err and "mano_right" in err and "Traceback" not in err


def _png_ok(path):
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.shape[0] > 300 and img.shape[1] > 900
    colors = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colors) > 50  # not a blank canvas


def test_plot_human_pose_and_motion(tmp_path, capsys):
    out = tmp_path / "hand.png"
    assert main(["embodiments", "plot", "mano_right", "-o", str(out)]) == 0
    _png_ok(out)
    assert str(out) in capsys.readouterr().out
    out2 = tmp_path / "pinch.png"
    assert main(["embodiments", "plot", "mano_left", "--motion", "pinch", "--frames", "9", "-o", str(out2)]) == 0
    _png_ok(out2)


def test_plot_with_q_and_robot_hand(tmp_path, capsys):
    import embodiments

    dex3 = embodiments.get("dex3_right")
    mid = (dex3.lower + dex3.upper) / 2
    out = tmp_path / "robot.png"
    assert main(["embodiments", "plot", "dex3_right", "--q", f"{mid[0]},{mid[1]}", *map(str, mid[2:]),
                 "-o", str(out)]) == 0
    _png_ok(out)
    q = " ".join(["0.2"] * 20)
    assert main(["embodiments", "plot", "mano_right", "--q", q, "-o", str(tmp_path / "q.png")]) == 0


@pytest.mark.parametrize("argv, match", [
    (["--q", "0.1", "0.2"], "needs 20 angles"), (["--q", "a", "b"], "numbers"),
    (["--motion", "jump"], "unknown human motion")])
def test_plot_bad_arguments(tmp_path, capsys, argv, match):
    assert main(["embodiments", "plot", "mano_right", *argv, "-o", str(tmp_path / "x.png")]) == 1
    assert match in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_motion_on_a_robot_hand_is_refused(tmp_path, capsys):
    assert main(["embodiments", "plot", "inspire_right", "--motion", "pinch", "-o", str(tmp_path / "x.png")]) == 1
    assert "not a human hand" in capsys.readouterr().err


def test_visible_bones_skip_missing_slots():
    full = np.zeros(NUM_SLOTS, bool)
    full[21:] = True
    assert sorted(visible_bones(full)) == sorted(skeleton_edges("right"))
    robot = np.zeros(NUM_SLOTS, bool)
    for name in ("wrist", "index_mcp", "index_tip", "thumb_cmc", "thumb_tip"):
        robot[slot_index(f"left_{name}")] = True
    bones = set(visible_bones(robot))
    s = lambda n: slot_index(f"left_{n}")  # noqa: E731
    assert bones == {(s("wrist"), s("index_mcp")), (s("index_mcp"), s("index_tip")),
                     (s("wrist"), s("thumb_cmc")), (s("thumb_cmc"), s("thumb_tip"))}


def test_plot_figure_draws_every_bone_in_each_view():
    pos = np.random.default_rng(0).normal(size=(NUM_SLOTS, 3))
    valid = np.zeros(NUM_SLOTS, bool)
    valid[:21] = True
    fig = plot_sparse_joints(pos, valid, title="t")
    axes = fig.axes[:3]
    for ax in axes:
        drawn = [line for line in ax.lines if len(line.get_xdata()) == 2]
        assert len(drawn) == len(HAND_JOINT_NAMES) - 1
    with pytest.raises(ValueError, match="shape"):
        plot_sparse_joints(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="no valid joints"):
        plot_sparse_joints(pos, np.zeros(NUM_SLOTS, bool))
