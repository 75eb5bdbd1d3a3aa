"""The shared (image size, K, joints) check: every entry point refuses what would silently make another control
signal (a K for another image size, a tiny image, a negative focal length, joints at absurd distances) and warns
about joints behind the camera."""

from __future__ import annotations

import warnings

import numpy as np
import PIL.Image
import pytest

from dexworld.cli import main
from embodiments.layout import NUM_SLOTS
from embodiments.sparse import SparseJoints
from embodiments.transforms import intrinsics
from embodiments.view_check import ViewWarning, check_view


def joints_for(size: int = 64, T: int = 5, z: float = 0.4, **kw) -> SparseJoints:
    """Right-hand joints ~z m in front of a camera whose K belongs to a size×size image."""
    rng = np.random.default_rng(0)
    pos = np.zeros((T, NUM_SLOTS, 3), np.float32)
    pos[:, 21:] = rng.uniform(-0.05, 0.05, (T, 21, 3)) + [0.0, 0.0, z]
    valid = np.zeros((T, NUM_SLOTS), bool)
    valid[:, 21:] = True
    return SparseJoints(pos, valid, K=kw.pop("K", intrinsics(size, size, size / 2, size / 2)), **kw)


def test_matching_image_and_joints_pass_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_view((64, 64), joints_for(64))
        check_view((96, 128), joints_for(64, K=intrinsics(80, 80, 64, 48)))


@pytest.mark.parametrize("hw, joints, match", [
    ((7, 7), joints_for(7), "7x7 pixels; both sides must be between 16"),
    ((128, 128), joints_for(64), "principal point at \\(32, 32\\).*about 64x64"),
    ((64, 64), joints_for(64, K=intrinsics(-60, 60, 32, 32)), "non-positive focal length"),
    ((64, 64), joints_for(64, z=1e30), "1e\\+30 m from the camera"),
])
def test_refused_with_a_message_naming_the_input(hw, joints, match):
    with pytest.raises(ValueError, match=match) as e:
        check_view(hw, joints, name="--image ref.png")
    assert str(e.value).startswith("--image ref.png") or "--image" not in match


def test_joints_behind_the_camera_warn():
    joints = joints_for(64)
    pos = joints.positions.copy()
    pos[2, 21:, 2] *= -1  # frame 2 mirrored behind the camera
    with pytest.warns(ViewWarning, match="21 of 105 valid joints .* first frame 2.* behind the camera"):
        check_view((64, 64), joints.replace(positions=pos))


def _save_inputs(tmp_path, image_side: int, joints: SparseJoints):
    PIL.Image.fromarray(np.full((image_side, image_side, 3), 90, np.uint8)).save(tmp_path / "ref.png")
    joints.save(tmp_path / "j.npz")
    return ["--image", str(tmp_path / "ref.png"), "--joints", str(tmp_path / "j.npz")]


@pytest.mark.parametrize("image_side, joints, match", [
    (128, joints_for(64), "principal point"),
    (7, joints_for(7), "7x7 pixels"),
    (64, joints_for(64, K=intrinsics(60, -60, 32, 32)), "non-positive focal length"),
])
def test_generate_refuses_before_loading_the_model(tmp_path, capsys, monkeypatch, image_side, joints, match):
    from worldmodel.wan.pipeline import HandControlPipeline

    monkeypatch.setattr(HandControlPipeline, "from_pretrained",
                        classmethod(lambda cls, *a, **k: pytest.fail("model loaded")))
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous video")
    assert main(["generate", *_save_inputs(tmp_path, image_side, joints), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert match in err and f"--image {tmp_path / 'ref.png'}" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"previous video"


def test_pipeline_and_editor_use_the_same_check():
    from dexworld.editor.state import check_image_matches
    from worldmodel.wan.pipeline import load_shipped

    with pytest.raises(ValueError, match="principal point"):
        check_image_matches(np.zeros((128, 128, 3), np.uint8), joints_for(64, T=17))
    pipe = load_shipped("tiny-sim")
    with pytest.raises(ValueError, match="the reference image: .*principal point"):
        pipe(np.zeros((128, 128, 3), np.uint8), joints_for(64, T=17), num_inference_steps=1, progress=False)
    with pytest.raises(ValueError, match="1e\\+30 m"):
        pipe(np.zeros((64, 64, 3), np.uint8), joints_for(64, T=17, z=1e30), num_inference_steps=1, progress=False)
