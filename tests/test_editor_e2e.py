"""The joint editor end to end in headless Chromium (Debian's chromium + chromedriver, driven by selenium).

Types a keyframe and an offset into the page, applies it, generates, simulates, exports, and checks the exported
joints moved by the expected amount; uploads broken files and checks the page shows the error and keeps working.
Takes a screenshot of the editor (written to docs/editor.png when DEXWORLD_UPDATE_DOCS=1).
Install what it needs with ``scripts/install_browser.sh`` (`make test` does).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
REPO = Path(__file__).resolve().parents[1]
SMALL_TINY = dict(num_layers=1, num_attention_heads=2, attention_head_dim=16, ffn_dim=32, text_dim=32, clip_hidden=32)
OFFSET = np.array([0.02, -0.01, 0.03])
KEYFRAME, WIDTH = 4, 4


def _browser_paths() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists()
                                              else None)
    return (chromium, driver) if chromium and driver else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond, timeout: float, what: str, interval: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = cond()
        if out:
            return out
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _scene(tmp: Path):
    """A MuJoCo render of inspire_right closing its hand (reference image) and its camera-frame joints with K."""
    from embodiments import get
    from sim_bridge.motion import hand_axes, wrist_pose
    from sim_bridge.rollout import rollout
    from sim_bridge.scene import SceneConfig, build_scene

    emb = get("inspire_right")
    s = np.linspace(0.0, 1.0, 9)[:, None]
    q = emb.lower + (0.1 + 0.6 * s) * (emb.upper - emb.lower)
    pose = wrist_pose(hand_axes(emb), np.array([0.0, 0.12, 0.09]), roll=-0.6)
    scene = build_scene(emb, SceneConfig(randomize=False, num_objects=(1, 1)), seed=1)
    roll = rollout(emb, q, np.repeat(pose[None], len(q), 0), scene=scene, size=(120, 160), fps=8.0)
    return roll.frames[0], roll.joints


@pytest.fixture(scope="module")
def editor(tmp_path_factory):
    paths = _browser_paths()
    if paths is None:
        pytest.skip("Chromium/chromedriver not found (install them with scripts/install_browser.sh)")
    pytest.importorskip("selenium", reason="selenium not installed (scripts/install_browser.sh installs it)")
    pytest.importorskip("viser", reason="viser not installed (scripts/install_browser.sh installs it)")
    from dexworld.editor.app import EditorApp
    from dexworld.editor.runners import VideoGenerator

    tmp = tmp_path_factory.mktemp("editor")
    image, joints = _scene(tmp)
    app = EditorApp(image, joints, generator=VideoGenerator(None, tiny_overrides=SMALL_TINY, use_shipped=False),
                    out_dir=tmp / "out", port=_free_port())
    yield app, paths, tmp
    app.stop()


@pytest.fixture(scope="module")
def browser(editor):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    app, (chromium, driver), tmp = editor
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1500,1000", f"--user-data-dir={tempfile.mkdtemp()}"):
        opts.add_argument(arg)
    try:
        d = webdriver.Chrome(service=Service(driver), options=opts)
    except Exception as e:  # noqa: BLE001 — a browser that cannot start is an environment problem
        pytest.skip(f"Chromium could not be started: {e}")
    d.get(app.url)
    yield d
    d.quit()


def _inputs(d, label: str):
    from selenium.webdriver.common.by import By

    return d.find_elements(By.XPATH, f"//label[text()='{label}']/ancestor::div[contains(@class,'mantine-Flex-root')]"
                                     "[1]//input[not(@type='hidden')]")


def _type(el, value) -> None:
    from selenium.webdriver.common.keys import Keys

    el.click()
    el.send_keys(Keys.CONTROL, "a")
    el.send_keys(str(value))
    el.send_keys(Keys.TAB)


def _button(d, text: str):
    from selenium.webdriver.common.by import By

    return d.find_element(By.XPATH, f"//button[.//*[normalize-space(text())='{text}']]")


def _close_notifications(d) -> None:
    from selenium.webdriver.common.by import By

    for b in d.find_elements(By.CSS_SELECTOR, ".mantine-Notification-closeButton"):
        with contextlib.suppress(Exception):  # a notification may close itself meanwhile
            b.click()


def test_edit_generate_simulate_export_in_the_browser(editor, browser):
    from selenium.webdriver.common.by import By

    app, _, tmp = editor
    d = browser
    _wait(lambda: len(_inputs(d, "Offset (m)")) == 3, 30, "the editor's controls")
    joint = app.state.selection[0]

    # keyframe, falloff window and offset through the page's inputs, then Apply
    _type(_inputs(d, "Frame")[-1], KEYFRAME)
    _wait(lambda: app.state.frame == KEYFRAME, 10, "the frame slider to reach the server")
    _type(_inputs(d, "Window ± frames")[-1], WIDTH)
    for el, v in zip(_inputs(d, "Offset (m)"), OFFSET, strict=True):
        _type(el, v)
    _wait(lambda: np.allclose(app.offset_vec.value, OFFSET), 10, "the offset to reach the server")
    _button(d, "Apply offset").click()
    _wait(lambda: app.state.can_undo, 10, "the edit to be applied")
    assert "1 edit(s)" in d.find_element(By.TAG_NAME, "body").text or _wait(
        lambda: "1 edit(s)" in d.find_element(By.TAG_NAME, "body").text, 10, "the history line")

    # Generate (2 denoising steps typed into the page) → a video appears in the page
    _type(_inputs(d, "Steps")[-1], 2)
    _wait(lambda: app.steps_num.value == 2, 10, "the steps to reach the server")
    _button(d, "Generate").click()
    _wait(lambda: d.find_elements(By.XPATH, "//figure[@data-title='imagined']//img[starts-with(@src,"
                                            "'data:image/gif')]"), 60, "the generated video")
    # Simulate → the MuJoCo rollout appears beside it
    _button(d, "Simulate").click()
    _wait(lambda: d.find_elements(By.XPATH, "//figure[starts-with(@data-title,'simulated')]//img"), 60,
          "the simulated video")
    assert app.outputs.imagined.shape[0] == 9 and app.outputs.simulated.shape[0] == 9

    # screenshot of the running editor for the docs
    _close_notifications(d)
    label = d.find_element(By.XPATH, "//*[normalize-space(text())='trajectory over the image']")
    d.execute_script("arguments[0].scrollIntoView({block: 'start'});", label)
    time.sleep(1.0)
    # The docs' picture is refreshed on request only, so a test run leaves the checkout clean.
    shot = REPO / "docs" / "editor.png" if os.environ.get("DEXWORLD_UPDATE_DOCS") else tmp / "editor.png"
    d.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000

    # Export to a subfolder (of --out) typed into the page
    out = tmp / "out" / "exported"
    _type(_inputs(d, "Subfolder")[-1], "exported")
    _wait(lambda: app.out_txt.value == "exported", 10, "the export subfolder to reach the server")
    _button(d, "Export joints + videos").click()
    _wait(lambda: (out / "edited_joints.npz").exists() and (out / "simulated.mp4").exists(), 30, "the export")
    assert (out / "imagined.mp4").stat().st_size > 0 and (out / "imagined.gif").stat().st_size > 0

    from embodiments.sparse import SparseJoints

    edited = SparseJoints.load(out / "edited_joints.npz")
    disp = edited.positions.astype(np.float64) - app.state.original.positions
    t = np.arange(len(edited)) - KEYFRAME
    weight = np.where(np.abs(t) < WIDTH, 0.5 * (1 + np.cos(np.pi * np.abs(t) / WIDTH)), 0.0)
    np.testing.assert_allclose(disp[:, joint], weight[:, None] * OFFSET, atol=1e-6)
    others = np.delete(np.arange(disp.shape[1]), joint)
    assert np.abs(disp[:, others]).max() == 0.0


def test_invalid_uploads_show_an_error_and_the_server_lives_on(editor, browser, tmp_path):
    import PIL.Image
    from selenium.webdriver.common.by import By

    app, _, _ = editor
    d = browser
    _wait(lambda: len(d.find_elements(By.CSS_SELECTOR, "input[type=file]")) >= 2, 30, "the upload inputs")

    def body() -> str:
        return d.find_element(By.TAG_NAME, "body").text

    bad = tmp_path / "bad_joints.npz"
    np.savez(bad, positions=np.zeros((5, 21, 3), np.float32), schema_version=np.asarray(1))
    d.find_elements(By.CSS_SELECTOR, "input[type=file]")[0].send_keys(str(bad))
    _wait(lambda: "bad_joints.npz" in body() and "(T, 42, 3)" in body(), 20, "the joint-shape error in the page")

    wrong = tmp_path / "wrong_size.png"
    H, W = app.image.shape[:2]
    PIL.Image.fromarray(np.zeros((3 * H, 3 * W, 3), np.uint8)).save(wrong)
    d.find_elements(By.CSS_SELECTOR, "input[type=file]")[1].send_keys(str(wrong))
    _wait(lambda: "wrong_size.png" in body() and "principal point" in body(), 20, "the image-size error")

    # still alive and editable: undo through the page changes the state
    before = len(app.state.history_labels)
    _close_notifications(d)
    if before > 1:
        _button(d, "Undo").click()
        _wait(lambda: len(app.state.history_labels) == before - 1, 10, "undo after the errors")
    assert app.image.shape[:2] == (H, W)  # the bad image was not taken


def test_cli_serves_the_editor_and_prints_the_url(tmp_path):
    """``dexworld edit`` prints the URL and serves the page; bad input is a one-line error, not a traceback."""
    import subprocess
    import sys
    import urllib.request

    import PIL.Image

    from dexworld.cli import main
    from embodiments.sparse import SparseJoints

    pytest.importorskip("viser", reason="viser not installed (scripts/install_browser.sh installs it)")
    K = np.array([[60.0, 0, 32], [0, 60, 32], [0, 0, 1]])
    pos = np.random.default_rng(0).normal([0, 0, 0.4], 0.03, (5, 42, 3))
    jpath = SparseJoints(pos, K=K).save(tmp_path / "j.npz")
    ipath = tmp_path / "ref.png"
    PIL.Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(ipath)
    wrong = tmp_path / "wrong.png"
    PIL.Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(wrong)
    assert main(["edit", "--image", str(wrong), "--joints", str(jpath)]) == 1  # K belongs to a 64 x 64 image

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dexworld.cli", "edit", "--image", str(ipath), "--joints",
                             str(jpath), "--port", str(port), "--out", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        url = None
        end = time.monotonic() + 60
        while time.monotonic() < end and url is None:
            line = proc.stdout.readline()
            if not line:
                break
            if "editor running at" in line:
                url = line.split("running at", 1)[1].split()[0]
        assert url == f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read(2000).lower()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_gizmo_drag_previews_then_commits_one_step(tmp_path):
    """The gizmo's drag lifecycle (start → updates → end) as viser delivers it, without a browser."""
    import asyncio
    from types import SimpleNamespace

    pytest.importorskip("viser", reason="viser not installed (scripts/install_browser.sh installs it)")
    from scipy.spatial.transform import Rotation

    from dexworld.editor.app import EditorApp
    from dexworld.editor.runners import VideoGenerator
    from embodiments.layout import hand_slots
    from embodiments.sparse import SparseJoints

    K = np.array([[60.0, 0, 32], [0, 60, 32], [0, 0, 1]])
    pos = np.random.default_rng(1).normal([0, 0, 0.4], 0.03, (9, 42, 3))
    joints = SparseJoints(pos, K=K)
    app = EditorApp(np.zeros((64, 64, 3), np.uint8), joints, generator=VideoGenerator(None, use_shipped=False),
                    out_dir=tmp_path, port=_free_port())
    try:
        st = app.state
        st.set_frame(3)
        anchor = st.anchor_position()
        drag = lambda phase: asyncio.run(app._on_gizmo(SimpleNamespace(phase=phase, client=None)))  # noqa: E731
        drag("start")
        app.gizmo.position = tuple(anchor + [0.01, 0.02, -0.01])
        drag("update")
        assert not st.can_undo  # preview only
        app.gizmo.position = tuple(anchor + [0.03, 0.0, 0.01])
        drag("update")
        drag("end")
        assert len(st.history_labels) == 2
        np.testing.assert_allclose(st.joints.positions[3, st.selection[0]], anchor + [0.03, 0.0, 0.01], atol=1e-6)
        np.testing.assert_allclose(app.gizmo.position, st.anchor_position(), atol=1e-6)  # gizmo follows the joint

        # whole hand: the ring rotation turns the hand about its wrist
        app.mode_dd.value = "hand"
        assert st.selection == tuple(hand_slots("right"))
        wrist = st.anchor_position()
        before = st.joints.positions[3, hand_slots("right").start + 8].astype(np.float64)
        drag("start")
        app.gizmo.wxyz = tuple(Rotation.from_rotvec([0.0, 0.3, 0.0]).as_quat(scalar_first=True))
        drag("end")
        after = st.joints.positions[3, hand_slots("right").start + 8]
        np.testing.assert_allclose(after - wrist, Rotation.from_rotvec([0, 0.3, 0]).apply(before - wrist), atol=1e-5)

        # a broken upload leaves an error in the page and the state untouched
        app._guard(lambda _e: app.load_joints_file("x.npz", b"garbage"))(None)  # as the upload callback runs it
        assert app.error_md.visible and "x.npz" in app.error_md.content
        assert len(st.history_labels) == 3
        # a good upload replaces the joints, clears the history and the error, and rebuilds the scene
        other = SparseJoints(pos[:5] + [0.0, 0.0, 0.1], K=K).save(tmp_path / "other.npz")
        app.load_joints_file("other.npz", other.read_bytes())
        assert st.num_frames == 5 and not st.can_undo and not app.error_md.visible
        assert app.frame_slider.max == 4 and len(app.spheres) == 42
        np.testing.assert_allclose(app.spheres[0].position, pos[0, 0] + [0, 0, 0.1], atol=1e-6)
    finally:
        app.stop()
