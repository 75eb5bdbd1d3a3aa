"""Files users keep are written to a temporary name, flushed, checked and renamed: a full disk, a writer that fails
quietly or an unwritable folder leaves the old file untouched and no temporary file, with a one-line error."""

from __future__ import annotations

import errno
import os
import types
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dexworld.cli import main  # noqa: E402
from embodiments.io_utils import OutputError, atomic_dir, atomic_path  # noqa: E402

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


def _listing(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _one_line_error(capsys, *parts):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    out = tmp_path / "result.bin"
    out.write_bytes(b"old")

    def write_then_fill_the_disk(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
            raise ENOSPC

    for writer, why in ((write_then_fill_the_disk, "No space left on device"),
                        (lambda tmp: None, "the writer produced an empty file")):  # ffmpeg on a full disk
        with pytest.raises(OutputError, match=f"cannot write {out}: {why}"), atomic_path(out) as tmp:
            writer(tmp)
        assert _listing(tmp_path) == {"result.bin": b"old"}
    # an error about some other file (an input the writer read) is not dressed up as an output error
    with pytest.raises(FileNotFoundError), atomic_path(out) as tmp:
        (tmp_path / "missing-input").read_bytes()
    # a folder under a file, and a folder that refuses new files (read-only; root ignores chmod, so mkstemp is made
    # to fail the way it does there)
    with pytest.raises(OutputError, match=f"cannot write {out}/x.bin: "), atomic_path(out / "x.bin") as tmp:
        tmp.write_bytes(b"new")
    import tempfile

    real = tempfile.mkstemp
    tempfile.mkstemp = lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system"))
    try:
        with pytest.raises(OutputError, match="Read-only file system"), atomic_path(out) as tmp:
            tmp.write_bytes(b"new")
    finally:
        tempfile.mkstemp = real
    assert _listing(tmp_path) == {"result.bin": b"old"}


def test_atomic_dir_keeps_the_old_folder_when_the_swap_fails(tmp_path, monkeypatch):
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "w.bin").write_bytes(b"old")
    real = os.replace

    def fail_second(src, dst):
        if str(src).startswith(str(tmp_path / ".ckpt.tmp-")):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", fail_second)
    with pytest.raises(OutputError, match="No space left"), atomic_dir(target) as tmp:
        (tmp / "w.bin").write_bytes(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"] and (target / "w.bin").read_bytes() == b"old"


def _fake_ffmpeg_on_a_full_disk(monkeypatch):
    """imageio's ffmpeg writer as it behaves on a full disk: ffmpeg prints an error, the file stays empty, no
    exception reaches the caller."""
    import imageio.v2 as imageio

    class Writer:
        def __init__(self, path, **kw):
            open(path, "wb").close()

        def append_data(self, frame):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(imageio, "get_writer", lambda path, **kw: Writer(path, **kw))


def test_simulate_on_a_full_disk_keeps_the_old_video(tmp_path, capsys, monkeypatch):
    import embodiments

    emb = embodiments.get("dex3_right")
    np.save(tmp_path / "q.npy", np.repeat(((emb.lower + emb.upper) / 2)[None], 2, 0))
    out = tmp_path / "sim.mp4"
    out.write_bytes(b"old video")
    _fake_ffmpeg_on_a_full_disk(monkeypatch)
    args = ["simulate", str(tmp_path / "q.npy"), "--embodiment", "dex3_right", "--size", "32"]
    assert main([*args, "--out", str(out)]) == 1
    _one_line_error(capsys, f"cannot write {out}: the writer produced an empty file")
    assert _listing(tmp_path) == {"q.npy": (tmp_path / "q.npy").read_bytes(), "sim.mp4": b"old video"}
    # an output folder that cannot exist (under a file) is refused before the rollout
    assert main([*args, "--out", str(tmp_path / "q.npy" / "sim.mp4")]) == 1
    _one_line_error(capsys, f"cannot write {tmp_path / 'q.npy' / 'sim.mp4'}")


def test_generate_on_a_full_disk_keeps_the_old_video(tmp_path, capsys, monkeypatch):
    import PIL.Image
    from _wm_helpers import make_joints

    from worldmodel.wan.pipeline import HandControlPipeline
    from worldmodel.wan.sampling import SamplingDefaults

    class FakePipe:  # the model is not what is tested here: frames out, quickly
        defaults = SamplingDefaults(height=64, width=64, num_frames=5)
        scheduler = None

        def to(self, device):
            return self

        def __call__(self, image, joints, **kw):
            return types.SimpleNamespace(frames=np.full((len(joints), 64, 64, 3), 128, np.uint8))

    monkeypatch.setattr(HandControlPipeline, "from_pretrained", classmethod(lambda cls, *a, **k: FakePipe()))
    PIL.Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "ref.png")
    make_joints(5).save(tmp_path / "j.npz")
    out = tmp_path / "gen.mp4"
    args = ["generate", "--image", str(tmp_path / "ref.png"), "--joints", str(tmp_path / "j.npz"), "--device", "cpu"]
    assert main([*args, "-o", str(out)]) == 0 and out.stat().st_size > 0  # the fake pipe works end to end
    capsys.readouterr()
    out.write_bytes(b"old video")
    before = _listing(tmp_path)
    _fake_ffmpeg_on_a_full_disk(monkeypatch)
    assert main([*args, "-o", str(out)]) == 1
    _one_line_error(capsys, f"cannot write {out}: the writer produced an empty file")
    assert _listing(tmp_path) == before
    monkeypatch.setattr(HandControlPipeline, "from_pretrained",
                        classmethod(lambda cls, *a, **k: pytest.fail("model loaded")))
    assert main([*args, "-o", str(tmp_path / "ref.png" / "gen.mp4")]) == 1  # refused before the model loads
    _one_line_error(capsys, "cannot write")


def test_synth_on_a_full_disk_keeps_the_old_clip_and_leaves_no_temporary(tmp_path, capsys, monkeypatch):
    args = ["synth", "--embodiment", "dex3_right", "--episodes", "1", "--frames", "3", "--size", "16",
            "--motions", "random", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()
    (tmp_path / ".episode_000001.h5.k1ll3d.h5").write_bytes(b"left by a killed run")
    before = _listing(tmp_path)
    del before[".episode_000001.h5.k1ll3d.h5"]
    real = h5py.Group.create_dataset

    def full_disk(self, name, *a, **k):
        if name == "K":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, name, *a, **k)

    monkeypatch.setattr(h5py.Group, "create_dataset", full_disk)
    assert main([*args, "--overwrite"]) == 1
    _one_line_error(capsys, f"cannot write {tmp_path / 'episode_000000.h5'}: No space left on device")
    assert _listing(tmp_path) == before  # the old clip and manifest; no temporary file, the killed run's removed


def test_save_probe_into_an_unwritable_folder_is_one_error(tmp_path):
    from worldmodel.evaluation.probe import KeypointProbe
    from worldmodel.evaluation.probe_training import save_probe

    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=f"cannot write {tmp_path / 'file' / 'probe'}"):
        save_probe(KeypointProbe(), tmp_path / "file" / "probe")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_save_probe_writes_only_inside_its_folder(tmp_path, monkeypatch):
    """Saving (and re-saving) a probe stages its files inside the folder given, leaves the folder beside it
    untouched and no temporary behind."""
    import tempfile

    from worldmodel.evaluation.probe import KeypointProbe
    from worldmodel.evaluation.probe_training import save_probe

    staged = []
    real_mkdtemp = tempfile.mkdtemp

    def spy(*args, **kw):
        staged.append(Path(kw["dir"]))
        return real_mkdtemp(*args, **kw)

    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    (tmp_path / "mine.txt").write_text("keep")
    probe = KeypointProbe(embodiments=["dex3_right"], size=32, widths=(8, 8, 16, 16))
    for _ in range(2):
        save_probe(probe, tmp_path / "probe")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt", "probe"]
        assert sorted(p.name for p in (tmp_path / "probe").iterdir()) == [
            "accuracy.json", "config.json", "diffusion_pytorch_model.safetensors"]
    assert staged == [tmp_path / "probe"] * 2


def test_a_killed_command_leaves_no_temporary_folder(tmp_path):
    """``kill`` (SIGTERM) on a running ``dexworld cache`` unwinds it: the temporary folder it was filling is removed,
    the folder it would have replaced is untouched, and the exit status says it was terminated (128 + 15)."""
    import signal
    import subprocess
    import sys
    import time

    from embodiments.clip import write_clip
    from embodiments.sparse import SparseJoints

    rng = np.random.default_rng(0)
    K = np.array([[60.0, 0.0, 32.0], [0.0, 60.0, 32.0], [0.0, 0.0, 1.0]])
    for i in range(200):  # enough clips that encoding them takes longer than the kill below
        joints = SparseJoints(rng.normal([0.0, 0.0, 0.5], 0.04, (5, 42, 3)), np.ones((5, 42), bool), K=K,
                              frame="camera", fps=8.0)
        write_clip(tmp_path / "clips" / f"c{i:03d}.h5", (rng.random((5, 64, 64, 3)) * 255).astype(np.uint8), joints)
    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / "mine.txt").write_text("kept")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "dexworld.cli", "cache", "--data", str(tmp_path / "clips"),
                             "--out", str(tmp_path / "enc"), "--no-progress"], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".enc.tmp-*/000001.safetensors")):  # encoding has begun
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        proc.kill()
    assert rc == 128 + signal.SIGTERM
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert [p.name for p in (tmp_path / "enc").iterdir()] == ["mine.txt"]
