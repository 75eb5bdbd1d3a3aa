"""LeRobot exports keep libx264's statistics off the terminal, and FFmpeg errors still reach it."""

from __future__ import annotations

import av
import av.logging
import numpy as np
import pytest
from test_lerobot_io import REPO, make_episode

from sim_bridge import lerobot_io as lio


def _encode_h264(path, n=3):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", 16)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_export_prints_no_libx264_chatter_and_leaves_pyav_logging_as_it_was(tmp_path, capfd):
    # The state lerobot leaves after its first video: FFmpeg's own stderr printer at FFmpeg's default level.
    # Without the fix, the next encode prints ~12 "[libx264 @ 0x…]" lines.
    av.logging.restore_default_callback()
    rep = lio.export_lerobot([make_episode(0, T=3)], REPO, tmp_path / "ds")
    assert rep.written == ["ep0"]
    _encode_h264(tmp_path / "after.mp4")  # after the export: PyAV's callback is back, so still quiet
    err = capfd.readouterr().err
    assert "libx264" not in err, err
    assert (tmp_path / "after.mp4").stat().st_size > 0


def test_ffmpeg_errors_still_reach_stderr_while_quiet(tmp_path, capfd):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\0" * 1000)
    with lio._ffmpeg_warnings_only():
        av.logging.restore_default_callback()  # as lerobot does mid-export
        with pytest.raises(av.error.InvalidDataError):
            av.open(str(bad))
    assert "moov atom not found" in capfd.readouterr().err
