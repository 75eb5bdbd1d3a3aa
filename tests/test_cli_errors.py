"""User errors are one line naming the file or argument and what was expected, never a traceback; the output a
command would have written is left as it was; ``--debug`` shows the traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from test_view_check import joints_for

import embodiments
from dexworld.cli import main
from embodiments.clip import write_clip

ASSETS = Path(embodiments.__file__).parent / "assets"


def one_line_error(capsys, command: str, *needles: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"dexworld {command}: error:")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def inputs(tmp_path):
    PIL.Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(tmp_path / "ref.png")
    joints_for(64).save(tmp_path / "j.npz")
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous video")
    return tmp_path, out


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip", b"just some text\n"])
def test_empty_or_truncated_joints_file(inputs, capsys, content):
    tmp, out = inputs
    (tmp / "bad.npz").write_bytes(content)
    assert main(["generate", "--image", str(tmp / "ref.png"), "--joints", str(tmp / "bad.npz"), "-o", str(out)]) == 1
    one_line_error(capsys, "generate", str(tmp / "bad.npz"), "not a readable SparseJoints .npz file")
    assert out.read_bytes() == b"previous video"


def test_truncated_h5_joints_and_clip(tmp_path, capsys):
    joints_for(64).save(tmp_path / "j.h5")
    data = (tmp_path / "j.h5").read_bytes()
    (tmp_path / "j.h5").write_bytes(data[: len(data) // 2])
    assert main(["retarget", str(tmp_path / "j.h5"), "--to", "inspire_right", "-o", str(tmp_path / "q.npz")]) == 1
    one_line_error(capsys, "retarget", str(tmp_path / "j.h5"), "not a readable SparseJoints .h5 file")
    write_clip(tmp_path / "c.h5", np.zeros((5, 64, 64, 3), np.uint8), joints_for(64))
    data = (tmp_path / "c.h5").read_bytes()
    (tmp_path / "c.h5").write_bytes(data[: len(data) // 2])
    np.save(tmp_path / "v.npy", np.zeros((5, 64, 64, 3), np.uint8))
    assert main(["evaluate", "--video", str(tmp_path / "v.npy"), "--clip", str(tmp_path / "c.h5"), "--no-probe",
                 "--out", str(tmp_path / "m.json")]) == 1
    one_line_error(capsys, "evaluate", str(tmp_path / "c.h5"))
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "q.npz").exists()


def test_text_file_as_image(inputs, capsys):
    tmp, out = inputs
    (tmp / "notes.png").write_text("not an image\n")
    assert main(["generate", "--image", str(tmp / "notes.png"), "--joints", str(tmp / "j.npz"), "-o", str(out)]) == 1
    one_line_error(capsys, "generate", f"--image {tmp / 'notes.png'}: not a readable image")
    assert out.read_bytes() == b"previous video"


@pytest.fixture
def checkpoint_copy(tmp_path):
    from worldmodel.wan.presets import shipped_path

    dst = tmp_path / "ckpt"
    shutil.copytree(shipped_path("tiny-sim"), dst)
    return dst


def test_checkpoint_missing_or_truncated_weights(inputs, checkpoint_copy, capsys):
    tmp, out = inputs
    argv = ["generate", "--image", str(tmp / "ref.png"), "--joints", str(tmp / "j.npz"), "-o", str(out),
            "--checkpoint", str(checkpoint_copy)]
    weights = checkpoint_copy / "control" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    assert main(argv) == 1
    one_line_error(capsys, "generate", str(weights), "truncated")
    (checkpoint_copy / "transformer_lora" / "adapter_model.safetensors").unlink()
    assert main(argv) == 1
    one_line_error(capsys, "generate", "lacks transformer_lora/adapter_model.safetensors")
    (checkpoint_copy / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    assert main(argv) == 1
    one_line_error(capsys, "generate", "lacks the weights of vae/")
    (checkpoint_copy / "model_index.json").write_text("{ not json")
    assert main(argv) == 1
    one_line_error(capsys, "generate", str(checkpoint_copy / "model_index.json"), "not valid JSON")
    assert out.read_bytes() == b"previous video"


def test_check_upstream_on_other_files(tmp_path, capsys):
    (tmp_path / "ref.txt").write_text("hello, this is text\n")
    assert main(["check-upstream", str(tmp_path / "ref.txt")]) == 1
    one_line_error(capsys, "check-upstream", str(tmp_path / "ref.txt"), "not a safetensors file")
    assert main(["check-upstream", str(tmp_path / "missing.safetensors")]) == 1
    one_line_error(capsys, "check-upstream", "no reference vector file at")


def _spec(tmp_path, urdf: str) -> Path:
    (tmp_path / "hand.urdf").write_text(urdf)
    (tmp_path / "hand.yaml").write_text("name: my_err_hand\nside: left\nurdf: hand.urdf\nslots:\n"
                                        "  index_tip: left_hand_index_tip\n")
    return tmp_path / "hand.yaml"


def test_urdf_limits_and_cycles(tmp_path):
    urdf = (ASSETS / "dex3_left.urdf").read_text()
    swapped = urdf.replace('<limit lower="0" upper="1.74532925"', '<limit lower="1.74532925" upper="0"', 1)
    with pytest.raises(ValueError, match="joint 'left_hand_thumb_2_joint' has limits lower=1.74533 > upper=0") as e:
        embodiments.register(_spec(tmp_path, swapped))
    assert "hand.urdf" in str(e.value)
    loop = ('<joint name="loop" type="fixed"><parent link="left_hand_thumb_2_link"/>'
            '<child link="left_hand_thumb_0_link"/></joint>\n</robot>')
    with pytest.raises(ValueError, match="link 'left_hand_thumb_0_link' is the child of two joints .*\\(no cycle\\)"):
        embodiments.register(_spec(tmp_path, urdf.replace("</robot>", loop)))
    assert "my_err_hand" not in embodiments.names()


def test_json_errors_name_the_file(tmp_path, capsys):
    (tmp_path / "cfg.json").write_text('{"steps": 2,}')
    assert main(["train", "--config", str(tmp_path / "cfg.json"), "--data", str(tmp_path), "--out",
                 str(tmp_path / "run")]) == 1
    one_line_error(capsys, "train", f"--config file {tmp_path / 'cfg.json'} is not valid JSON")
    assert not (tmp_path / "run").exists()


def test_debug_shows_the_traceback(tmp_path):
    argv = ["retarget", str(tmp_path / "none.npz"), "--to", "inspire_right", "-o", str(tmp_path / "o.npz")]
    with pytest.raises(FileNotFoundError):
        main(["--debug", *argv])
    with pytest.raises(FileNotFoundError):  # also after the subcommand
        main([*argv, "--debug"])
