"""The editor on a network: non-loopback binds need --allow-remote, print a warning and require a token in the
URL (checked on a real websocket against the installed viser); exports stay inside the output folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
viser = pytest.importorskip("viser", reason="viser not installed (scripts/install_browser.sh installs it)")
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from dexworld.editor.access import editor_url, is_loopback  # noqa: E402
from embodiments.sparse import SparseJoints  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
K = np.array([[60.0, 0, 32], [0, 60, 32], [0, 0, 1]])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _joints() -> SparseJoints:
    return SparseJoints(np.random.default_rng(0).normal([0, 0, 0.4], 0.03, (5, 42, 3)), K=K)


def _first_message(url: str) -> bytes:
    """Open a websocket as viser's page does and return the first message, or raise ConnectionClosed."""
    with connect(url, subprotocols=[f"viser-v{viser.__version__}"], open_timeout=10) as ws:
        return ws.recv(timeout=10)


@pytest.fixture
def app(tmp_path):
    from dexworld.editor.app import EditorApp
    from dexworld.editor.runners import VideoGenerator

    a = EditorApp(np.zeros((64, 64, 3), np.uint8), _joints(), generator=VideoGenerator(None, use_shipped=False),
                  out_dir=tmp_path / "out", port=_free_port(), token="s3cret-token")
    yield a
    a.stop()


def test_loopback_is_told_apart_from_network_binds():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.org", ""))
    assert editor_url("127.0.0.1", 8080, None) == "http://127.0.0.1:8080"
    assert editor_url("10.0.0.2", 80, "tok") == "http://10.0.0.2:80/?websocket=ws://10.0.0.2:80/tok"


def test_a_websocket_without_the_token_gets_nothing(app):
    port = app.server.get_port()
    for path in ("", "/", "/wrong-token", "/s3cret-token-and-more", "/?token=s3cret-token"):
        with pytest.raises(ConnectionClosed) as e:
            _first_message(f"ws://127.0.0.1:{port}{path}")
        assert e.value.rcvd is not None and e.value.rcvd.code == 1008
    assert _first_message(f"ws://127.0.0.1:{port}/s3cret-token")  # the scene arrives with the token
    assert app.url.endswith(f":{port}/?websocket=ws://127.0.0.1:{port}/s3cret-token")


def test_exports_stay_inside_the_output_folder(app, tmp_path):
    out = tmp_path / "out"
    assert [p.name for p in app.export()] == ["edited_joints.npz"] and (out / "edited_joints.npz").exists()
    assert app.export("take2")[0] == out / "take2" / "edited_joints.npz"
    before = sorted(tmp_path.rglob("*"))
    for where in ("../escaped", str(tmp_path / "elsewhere"), "a/../../x"):
        with pytest.raises(ValueError, match="must be a relative path inside"):
            app.export(where)
        app.out_txt.value = where  # the page's field goes through the same check, shown as an error
        app._guard(app._on_export)(None)
        assert app.error_md.visible and "must be a relative path inside" in app.error_md.content
    assert sorted(tmp_path.rglob("*")) == before


def test_network_bind_needs_allow_remote_and_prints_a_warning_and_a_token_url(tmp_path):
    import PIL.Image

    jpath = _joints().save(tmp_path / "j.npz")
    ipath = tmp_path / "ref.png"
    PIL.Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(ipath)
    args = ["edit", "--image", str(ipath), "--joints", str(jpath), "--out", str(tmp_path / "out")]
    # refused up front (a subprocess: an editor that did start would serve until killed)
    refused = subprocess.run([sys.executable, "-m", "dexworld.cli", *args, "--host", "0.0.0.0"], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "--host 0.0.0.0 serves the editor to other machines; add --allow-remote" in refused.stderr
    assert not (tmp_path / "out").exists()

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dexworld.cli", *args, "--host", "0.0.0.0", "--allow-remote",
                             "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        lines, url = [], None
        end = time.monotonic() + 90
        while time.monotonic() < end and url is None:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "editor running at" in line:
                url = line.split("running at", 1)[1].split()[0]
        assert url is not None, "".join(lines)
        assert any(ln.startswith("warning: the editor is reachable from other machines") for ln in lines)
        token = url.rsplit("/", 1)[1]
        assert len(token) >= 20 and f":{port}/?websocket=ws://" in url
        with pytest.raises(ConnectionClosed):
            _first_message(f"ws://127.0.0.1:{port}/")
        assert _first_message(f"ws://127.0.0.1:{port}/{token}")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
