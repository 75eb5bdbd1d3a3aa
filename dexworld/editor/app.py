"""The browser front end of the joint editor, built on viser: a thin layer over :class:`EditorState`.

3D view (OpenCV camera frame, shown with the camera looking along +y and z up): the reference camera's frustum with
the reference image on a plane at the pinhole-correct place, the hand joints as clickable spheres, the skeleton,
the selected joints' trajectories (edited in yellow, original in grey), and a transform gizmo on the selection's
anchor joint. Side panel: 2D view, timeline, selection, edit controls, Generate, Simulate, export, uploads.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import viser
from scipy.spatial.transform import Rotation

from embodiments.io_utils import confined_path
from embodiments.layout import NUM_SLOTS, SLOT_NAMES, skeleton_edges
from embodiments.sparse import SparseJoints
from worldmodel.editing import FALLOFFS

from .access import editor_url, is_loopback, require_token
from .overlay import ORIGINAL_RGB, SELECTED_RGB, side_color, trajectory_overlay
from .runners import ROBOTS, SIM_MODES, GenerateSettings, VideoGenerator, simulate
from .state import (
    SELECTION_MODES,
    EditorState,
    check_image,
    check_image_matches,
    load_image_bytes,
    load_joints_bytes,
)

# The scene root shows the OpenCV camera frame (x right, y down, z forward) in viser's z-up world:
# world = R · cam with R = rotation of −90° about x (camera forward → world +y, camera down → world −z).
CAM_IN_WORLD_WXYZ = (np.sqrt(0.5), -np.sqrt(0.5), 0.0, 0.0)
JOINT_RADIUS = 0.006
VIEW_FROM_HAND = (-0.8, -0.9, 0.6)  # initial viewer position relative to the hand, in units of its distance


def _gif_data_uri(frames: np.ndarray, fps: float) -> str:
    import imageio.v2 as imageio

    buf = io.BytesIO()
    imageio.mimsave(buf, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
    return "data:image/gif;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _video_html(videos: list[tuple[str, np.ndarray, float]]) -> str:
    """Videos side by side as looping GIFs (every browser plays them, no codec needed)."""
    cells = []
    for title, frames, fps in videos:
        cells.append(
            f'<figure class="dexworld-video" data-title="{title}" style="margin:0;flex:1;min-width:0">'
            f'<img alt="{title}" src="{_gif_data_uri(frames, fps)}" '
            'style="width:100%;image-rendering:pixelated;border-radius:4px"/>'
            f'<figcaption style="font-size:0.75em;text-align:center">{title} · {len(frames)} frames</figcaption>'
            "</figure>")
    return f'<div style="display:flex;gap:6px;align-items:flex-start">{"".join(cells)}</div>'


@dataclasses.dataclass
class Outputs:
    imagined: np.ndarray | None = None  # (T, H, W, 3) uint8
    imagined_overlay: np.ndarray | None = None
    simulated: np.ndarray | None = None
    sim_robot: str | None = None


class EditorApp:
    """The running editor. ``EditorApp(image, joints, ...)`` starts the server; :meth:`stop` ends it.

    Args:
        image: (H, W, 3) uint8 reference image (the first frame), in the pixels ``joints.K`` refers to.
        joints: SparseJoints in the camera frame with K.
        generator: the video model runner (default: shipped tiny model, or a fresh untrained one).
        out_dir: where Export writes ``edited_joints.npz`` and the videos; the page can name a subfolder of it,
            nothing outside it.
        host, port: where to serve (127.0.0.1 by default: local only).
        token: required in the websocket URL (``access.require_token``); needed for a non-loopback ``host``.
    """

    def __init__(self, image: np.ndarray, joints: SparseJoints, generator: VideoGenerator | None = None,
                 out_dir: str | Path = "dexworld_edit", host: str = "127.0.0.1", port: int = 8080,
                 verbose: bool = False, token: str | None = None):
        if token is None and not is_loopback(host):
            raise ValueError(f"serving on {host!r} reaches other machines: give a token (dexworld edit --allow-remote "
                             "makes one)")
        self.state = EditorState(joints)
        image = check_image(image)
        check_image_matches(image, joints)
        self.image = image
        self.generator = generator or VideoGenerator()
        self.out_dir = Path(out_dir)
        self.outputs = Outputs()
        self._lock = threading.RLock()
        self._syncing = False
        self._busy = threading.Lock()
        self._drag: dict | None = None
        self._traj = None
        self.token = token
        self.server = viser.ViserServer(host=host, port=port, label="dexworld · joint editor", verbose=verbose)
        if token is not None:
            require_token(self.server, token)
        self.server.scene.set_up_direction("+z")
        self._build_gui()
        self._build_scene()
        self._refresh_all()

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return editor_url(self.server.get_host(), self.server.get_port(), self.token)

    def stop(self) -> None:
        self.server.stop()

    # ------------------------------------------------------------------ error handling
    def _guard(self, func):
        """Run a UI callback; any error becomes a red notification and the error panel, never a dead server."""

        @functools.wraps(func)
        def wrapped(event=None):
            try:
                return func(event)
            except Exception as e:  # noqa: BLE001 — the server must survive whatever a callback raises
                if not isinstance(e, (ValueError, KeyError, FileNotFoundError)):
                    traceback.print_exc(file=sys.stderr)
                self.show_error(str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e),
                                getattr(event, "client", None))
                return None

        return wrapped

    def show_error(self, message: str, client=None) -> None:
        self.error_md.content = f"**Error:** {message}"
        self.error_md.visible = True
        clients = [client] if client is not None else list(self.server.get_clients().values())
        for c in clients:
            c.add_notification("Error", message, color="red", auto_close_seconds=15.0)

    def _clear_error(self) -> None:
        self.error_md.visible = False

    def _notify(self, title: str, body: str, color: str = "green") -> None:
        for c in self.server.get_clients().values():
            c.add_notification(title, body, color=color, auto_close_seconds=6.0)

    # ------------------------------------------------------------------ GUI
    def _build_gui(self) -> None:
        gui = self.server.gui
        st = self.state
        gui.configure_theme(control_layout="collapsible", control_width="large", dark_mode=False,
                            show_logo=False)
        self.error_md = gui.add_markdown("", visible=False)
        notice = self.generator.describe()
        if self.generator.untrained:
            notice = f"⚠️ **Untrained model.** {notice}"
        self.model_md = gui.add_markdown(f"<small>Video model: {notice}</small>")

        with gui.add_folder("2D view"):
            self.overlay_img = gui.add_image(np.zeros((16, 16, 3), np.uint8), label="trajectory over the image",
                                             format="png")
        self.video_html = gui.add_html("")  # generated / simulated videos, right under the 2D view
        with gui.add_folder("Timeline"):
            self.frame_slider = gui.add_slider("Frame", min=0, max=max(st.num_frames - 1, 1), step=1,
                                               initial_value=0, disabled=st.num_frames < 2)
            self.play_cb = gui.add_checkbox("Play", initial_value=False)
        with gui.add_folder("Selection"):
            self.mode_dd = gui.add_dropdown("Pick", SELECTION_MODES, initial_value=st.mode,
                                            hint="joint: one joint · set: click joints to add/remove · hand: the "
                                                 "whole hand (rotates about the wrist)")
            names = st.selectable_names()
            self.joint_dd = gui.add_dropdown("Joint", names, initial_value=SLOT_NAMES[st.selection[0]])
            self.sel_md = gui.add_markdown("")
        with gui.add_folder("Edit"):
            self.falloff_dd = gui.add_dropdown("Falloff", FALLOFFS, initial_value=st.falloff)
            self.width_slider = gui.add_slider("Window ± frames", min=0, max=max(st.num_frames, 1), step=1,
                                               initial_value=st.width)
            self.offset_vec = gui.add_vector3("Offset (m)", initial_value=(0.0, 0.0, 0.0), step=0.001,
                                              hint="camera frame: x right, y down, z forward")
            self.apply_btn = gui.add_button("Apply offset", icon=viser.Icon.ARROWS_MOVE)
            self.history_bg = gui.add_button_group("History", ("Undo", "Redo", "Reset"))
            self.history_md = gui.add_markdown("")
        with gui.add_folder("Generate"):
            self.steps_num = gui.add_number("Steps", initial_value=0, min=0, max=200, step=1,
                                            hint="denoising steps; 0 = the model's default")
            self.seed_num = gui.add_number("Seed", initial_value=0, min=0, max=2**31 - 1, step=1)
            self.prompt_txt = gui.add_text("Prompt", initial_value="")
            self.generate_btn = gui.add_button("Generate", icon=viser.Icon.PLAYER_PLAY, color="blue")
            self.progress = gui.add_progress_bar(0.0, visible=False, animated=True)
            self.status_md = gui.add_markdown("")
        with gui.add_folder("Simulate"):
            robots = list(ROBOTS)
            self.robot_dd = gui.add_dropdown("Robot", ["auto", *robots], initial_value="auto")
            self.sim_mode_dd = gui.add_dropdown("Mode", SIM_MODES, initial_value="kinematic")
            self.simulate_btn = gui.add_button("Simulate", icon=viser.Icon.ROBOT)
            self.sim_md = gui.add_markdown("")
        with gui.add_folder("Export"):
            self.out_txt = gui.add_text("Subfolder", initial_value="",
                                        hint=f"inside {self.out_dir} (empty: that folder itself)")
            self.export_btn = gui.add_button("Export joints + videos", icon=viser.Icon.DOWNLOAD)
            self.download_btn = gui.add_button("Download joints (.npz)", icon=viser.Icon.FILE_DOWNLOAD)
            self.export_md = gui.add_markdown("")
        with gui.add_folder("Load", expand_by_default=False):
            self.upload_joints = gui.add_upload_button("Upload joints (.npz/.h5)", icon=viser.Icon.UPLOAD)
            self.upload_image = gui.add_upload_button("Upload image", icon=viser.Icon.PHOTO,
                                                      mime_type="image/*")

        g = self._guard
        self.frame_slider.on_update(g(self._on_frame))
        self.mode_dd.on_update(g(self._on_mode))
        self.joint_dd.on_update(g(self._on_joint))
        self.falloff_dd.on_update(g(self._on_falloff))
        self.width_slider.on_update(g(self._on_falloff))
        self.apply_btn.on_click(g(self._on_apply))
        self.history_bg.on_click(g(self._on_history))
        self.generate_btn.on_click(g(self._on_generate))
        self.simulate_btn.on_click(g(self._on_simulate))
        self.export_btn.on_click(g(self._on_export))
        self.download_btn.on_click(g(self._on_download))
        self.upload_joints.on_upload(g(self._on_upload_joints))
        self.upload_image.on_upload(g(self._on_upload_image))
        self.play_cb.on_update(g(self._on_play))

    # ------------------------------------------------------------------ scene
    def _build_scene(self) -> None:
        """Static parts that depend on the image and K: frustum and image plane; then the joint spheres."""
        sc = self.server.scene
        self.root = sc.add_frame("/cam", wxyz=CAM_IN_WORLD_WXYZ, show_axes=False)
        sc.add_frame("/cam/origin", axes_length=0.015, axes_radius=0.0008)
        H, W = self.image.shape[:2]
        K = self.state.joints.frame_K()[0]
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        # Image plane just behind the farthest joint: joints stay in front of it with little parallax.
        z = self.state.joints.positions[self.state.joints.valid, 2]
        self.plane_depth = float(max(z.max() + 0.03, 0.05))
        d = self.plane_depth
        fov = 2 * np.arctan(H / (2 * fy))
        aspect = (W / fx) / (H / fy)
        vol = np.cbrt(np.tan(fov / 2) ** 2 * aspect / 3.0)  # viser normalises the frustum's volume; undo that
        sc.add_camera_frustum("/cam/frustum", fov=float(fov), aspect=float(aspect), scale=float(d * vol),
                              color=(40, 40, 40), thickness=1.5, thickness_units="screen")
        # The image plane at depth d, centred on the principal ray offset: exact pinhole placement.
        self.plane_center = np.array([(W / 2 - cx) / fx * d, (H / 2 - cy) / fy * d, d])
        self.plane_size = (W / fx * d, H / fy * d)
        self.image_plane = None
        self.spheres = []
        for i in range(NUM_SLOTS):
            h = sc.add_icosphere(f"/cam/joints/{SLOT_NAMES[i]}", radius=JOINT_RADIUS, color=side_color(i),
                                 subdivisions=2, visible=False)
            h.on_click(self._guard(functools.partial(self._on_sphere_click, i)))
            self.spheres.append(h)
        self.gizmo = sc.add_transform_controls("/cam/gizmo", scale=0.06, line_width=3.0, depth_test=False)
        self.gizmo.on_update(self._on_gizmo)
        center = self.state.joints.positions[self.state.joints.valid].mean(0)
        world_center = np.array([center[0], center[2], -center[1]])
        self.server.initial_camera.look_at = tuple(world_center)
        # Viewer to the left of, behind and above the reference camera, looking at the hand: the frustum, the image
        # and the joints in front of it all in view, with enough parallax to see depth.
        dist = float(np.linalg.norm(center))
        self.server.initial_camera.position = tuple(world_center + dist * np.array(VIEW_FROM_HAND))

    def _set_image_plane(self, overlay: np.ndarray) -> None:
        sc = self.server.scene
        w, h = self.plane_size
        self.image_plane = sc.add_image("/cam/image", overlay, render_width=float(w), render_height=float(h),
                                        position=tuple(self.plane_center), format="jpeg")

    # ------------------------------------------------------------------ drawing
    def _refresh_all(self, joints: SparseJoints | None = None, move_gizmo: bool = True) -> None:
        """Redraw everything that depends on the joints, the frame and the selection."""
        with self._lock:
            st = self.state
            j = st.joints if joints is None else joints
            t = st.frame
            with self.server.atomic():
                for i, h in enumerate(self.spheres):
                    ok = bool(j.valid[t, i])
                    h.visible = ok
                    if ok:
                        h.position = tuple(float(v) for v in j.positions[t, i])
                        h.color = SELECTED_RGB if i in st.selection else side_color(i)
                self._draw_lines(j)
                if move_gizmo:
                    self.gizmo.position = tuple(st.anchor_position(j))
                    self.gizmo.wxyz = (1.0, 0.0, 0.0, 0.0)
                    self.gizmo.disable_rotations = len(st.selection) < 2
                overlay = trajectory_overlay(self.image, j, t, st.selection, original=st.original)
                self.overlay_img.image = overlay
                self._set_image_plane(overlay)
            self._sync_widgets()

    def _draw_lines(self, j: SparseJoints) -> None:
        sc = self.server.scene
        st = self.state
        t = st.frame
        edges = [(a, b) for a, b in skeleton_edges() if j.valid[t, a] and j.valid[t, b]]
        if edges:
            pts = np.array([[j.positions[t, a], j.positions[t, b]] for a, b in edges], np.float32)
            cols = np.array([[side_color(b)] * 2 for _, b in edges], np.uint8)
            sc.add_line_segments("/cam/skeleton", pts, cols, line_width=3.0)
        segs, cols = [], []
        for sel in st.selection:
            for src, col in ((st.original, ORIGINAL_RGB), (j, SELECTED_RGB)):
                ok = src.valid[:-1, sel] & src.valid[1:, sel]
                p = src.positions[:, sel]
                for k in np.flatnonzero(ok):
                    segs.append([p[k], p[k + 1]])
                    cols.append([col, col])
        if self._traj is not None:
            self._traj.visible = bool(segs)
        if segs:
            self._traj = sc.add_line_segments("/cam/trajectories", np.array(segs, np.float32),
                                              np.array(cols, np.uint8), line_width=2.0)

    def _sync_widgets(self) -> None:
        """Push state → widgets without re-triggering their callbacks."""
        st = self.state
        self._syncing = True
        try:
            if self.frame_slider.value != st.frame:
                self.frame_slider.value = st.frame
            if self.mode_dd.value != st.mode:
                self.mode_dd.value = st.mode
            anchor = SLOT_NAMES[st.selection[0]]
            if self.joint_dd.value != anchor:
                self.joint_dd.value = anchor
            self.sel_md.content = f"Selected: **{st.selection_label()}** · anchor `{anchor}`"
            disp = np.linalg.norm(st.displacement(), axis=-1)
            labels = st.history_labels
            last = labels[-1] if len(labels) > 1 else "no edits yet"
            self.history_md.content = (f"<small>{len(labels) - 1} edit(s); last: {last}. Max joint displacement "
                                       f"{disp.max() * 100:.1f} cm.</small>")
            self.history_bg.disabled = False
        finally:
            self._syncing = False

    # ------------------------------------------------------------------ callbacks: editing
    def _on_frame(self, _event) -> None:
        if self._syncing:
            return
        with self._lock:
            self.state.set_frame(int(self.frame_slider.value))
        self._refresh_all()

    def _on_play(self, _event) -> None:
        if not self.play_cb.value:
            return

        def loop():
            while self.play_cb.value:
                with self._lock:
                    self.state.set_frame((self.state.frame + 1) % self.state.num_frames)
                self._refresh_all()
                time.sleep(1.0 / min(self.state.joints.fps, 10.0))

        threading.Thread(target=loop, daemon=True).start()

    def _on_mode(self, _event) -> None:
        if self._syncing:
            return
        with self._lock:
            self.state.set_mode(self.mode_dd.value)
        self._refresh_all()

    def _on_joint(self, _event) -> None:
        if self._syncing:
            return
        with self._lock:
            self.state.pick(self.joint_dd.value, toggle=False)
        self._refresh_all()

    def _on_sphere_click(self, slot: int, _event) -> None:
        with self._lock:
            self.state.pick(slot, toggle=True)
        self._refresh_all()

    def _on_falloff(self, _event) -> None:
        with self._lock:
            self.state.set_falloff(self.falloff_dd.value, float(self.width_slider.value))

    def _on_apply(self, _event) -> None:
        off = np.asarray(self.offset_vec.value, np.float64)
        with self._lock:
            self.state.set_falloff(self.falloff_dd.value, float(self.width_slider.value))
            self.state.apply(offset=off)
        self._clear_error()
        self._refresh_all()

    def _on_history(self, event) -> None:
        which = self.history_bg.value
        with self._lock:
            if which == "Undo":
                self.state.undo()
            elif which == "Redo":
                self.state.redo()
            elif which == "Reset":
                self.state.reset()
        self._refresh_all()

    async def _on_gizmo(self, event) -> None:
        """Drag: preview on every update, commit on release (one undo step per drag)."""
        try:
            g = self.gizmo
            with self._lock:
                if event.phase == "start" or self._drag is None:
                    self._drag = {"anchor": self.state.anchor_position()}
                offset = np.asarray(g.position, np.float64) - self._drag["anchor"]
                rot = Rotation.from_quat(np.asarray(g.wxyz, np.float64), scalar_first=True).as_rotvec()
                if len(self.state.selection) < 2:
                    rot = np.zeros(3)
                if event.phase == "end":
                    self._drag = None
                    self.state.set_falloff(self.falloff_dd.value, float(self.width_slider.value))
                    self.state.apply(offset=offset, rotation=rot)
                    self._refresh_all()
                else:
                    self._refresh_all(self.state.preview(offset, rot), move_gizmo=False)
        except Exception as e:  # noqa: BLE001
            self._drag = None
            self.show_error(str(e), event.client)
            self._refresh_all()

    # ------------------------------------------------------------------ callbacks: generate / simulate
    def _start_job(self, name: str) -> bool:
        if not self._busy.acquire(blocking=False):
            self.show_error(f"{name}: another job is still running; wait for it to finish")
            return False
        self.generate_btn.disabled = self.simulate_btn.disabled = True
        return True

    def _end_job(self) -> None:
        self.generate_btn.disabled = self.simulate_btn.disabled = False
        self.progress.visible = False
        self._busy.release()

    def _on_generate(self, _event) -> None:
        if not self._start_job("Generate"):
            return
        try:
            with self._lock:
                joints, image = self.state.joints, self.image
            steps = int(self.steps_num.value) or None
            settings = GenerateSettings(steps=steps, seed=int(self.seed_num.value), prompt=self.prompt_txt.value)
            n = self.generator.frames_for(joints, settings)
            self.progress.value = 0.0
            self.progress.visible = True
            self.status_md.content = f"Generating {n} frames…"
            t0 = time.perf_counter()

            def progress(i, total):
                self.progress.value = float(min(100.0, 100.0 * i / total))
                self.status_md.content = f"Generating {n} frames… denoising step {i}/{total}"

            frames = self.generator(image, joints, settings, progress=progress)
            from worldmodel.evaluation.video import draw_joints

            H, W = frames.shape[1:3]
            uvd, ok = joints[:n].project()
            uv = uvd[..., :2] * np.array([W / image.shape[1], H / image.shape[0]])
            self.outputs.imagined = frames
            self.outputs.imagined_overlay = draw_joints(frames, uv, ok)
            dt = time.perf_counter() - t0
            self.status_md.content = (f"Generated {len(frames)} frames of {W}x{H} in {dt:.1f} s"
                                      + (" (untrained model: noise is expected)" if self.generator.untrained else ""))
            self._show_videos()
            self._clear_error()
        finally:
            self._end_job()

    def _on_simulate(self, _event) -> None:
        if not self._start_job("Simulate"):
            return
        try:
            with self._lock:
                joints = self.state.joints
            robot = None if self.robot_dd.value == "auto" else self.robot_dd.value
            self.progress.visible = True
            self.progress.value = 50.0
            self.sim_md.content = "Retargeting and rolling out in MuJoCo…"
            t0 = time.perf_counter()
            res = simulate(joints, self.image.shape[:2], robot=robot, mode=self.sim_mode_dd.value)
            self.outputs.simulated, self.outputs.sim_robot = res.frames, res.robot
            note = f"; {'; '.join(res.issues)}" if res.issues else ""
            self.sim_md.content = (f"Simulated {res.robot} (retargeted from {res.source}; rigid fit residual "
                                   f"{res.fit_rms * 100:.1f} cm) in {time.perf_counter() - t0:.1f} s{note}")
            self._show_videos()
            self._clear_error()
        finally:
            self._end_job()

    def _show_videos(self) -> None:
        fps = self.state.joints.fps
        vids = []
        o = self.outputs
        if o.imagined is not None:
            vids += [("imagined", o.imagined, fps), ("imagined + joints", o.imagined_overlay, fps)]
        if o.simulated is not None:
            vids.append((f"simulated ({o.sim_robot})", o.simulated, fps))
        self.video_html.content = _video_html(vids)

    # ------------------------------------------------------------------ callbacks: export, uploads
    def export(self, subfolder: str | None = None) -> list[Path]:
        """Write ``edited_joints.npz`` and whichever videos exist (mp4 + gif) into the output folder, or into
        ``subfolder`` of it (a relative path; one leading outside the output folder is refused)."""
        from worldmodel.evaluation.video import side_by_side, write_video

        out = confined_path(self.out_dir, subfolder, "export subfolder") if subfolder else self.out_dir
        with self._lock:
            written = [self.state.export_joints(out / "edited_joints.npz")]
        o, fps = self.outputs, self.state.joints.fps
        if o.imagined is not None:
            for ext in (".mp4", ".gif"):
                written.append(write_video(out / f"imagined{ext}", o.imagined, fps=fps))
            written.append(write_video(out / "imagined_joints.mp4", side_by_side(o.imagined, o.imagined_overlay),
                                       fps=fps))
        if o.simulated is not None:
            for ext in (".mp4", ".gif"):
                written.append(write_video(out / f"simulated{ext}", o.simulated, fps=fps))
        return written

    def _on_export(self, _event) -> None:
        written = self.export(self.out_txt.value.strip() or None)
        self.export_md.content = "Wrote:\n" + "\n".join(f"- `{p}`" for p in written)
        self._notify("Exported", f"{len(written)} file(s) in {written[0].parent}")

    def _on_download(self, event) -> None:
        buf = io.BytesIO()
        j = self.state.joints
        arrays = {"positions": j.positions, "valid": j.valid, **({"K": j.K} if j.K is not None else {}),
                  **{k: np.asarray(v) for k, v in j._meta().items()}}
        np.savez(buf, **arrays)
        target = event.client if event is not None and event.client is not None else self.server
        target.send_file_download("edited_joints.npz", buf.getvalue())

    def _on_upload_joints(self, _event) -> None:
        f = self.upload_joints.value
        self.load_joints_file(f.name, f.content)

    def _on_upload_image(self, _event) -> None:
        f = self.upload_image.value
        self.load_image_file(f.name, f.content)

    def load_joints_file(self, name: str, content: bytes) -> None:
        """Replace the joints by an uploaded file; ValueError (shown in the page) if it is not usable."""
        joints = load_joints_bytes(name, content)
        check_image_matches(self.image, joints, name=f"the current image (for {name!r})")
        self._replace(joints=joints)
        self._notify("Loaded", f"{name}: {len(joints)} frames")

    def load_image_file(self, name: str, content: bytes) -> None:
        """Replace the reference image by an uploaded file; ValueError (shown in the page) if it does not fit."""
        image = load_image_bytes(name, content)
        check_image_matches(image, self.state.joints, name=repr(name))
        self._replace(image=image)
        self._notify("Loaded", f"{name}: {image.shape[1]}x{image.shape[0]}")

    def _replace(self, joints: SparseJoints | None = None, image: np.ndarray | None = None) -> None:
        with self._lock:
            if joints is not None:
                self.state.load(joints)
                self.outputs = Outputs()
                self.video_html.content = ""
                self.frame_slider.max = max(self.state.num_frames - 1, 1)
                self.width_slider.max = max(self.state.num_frames, 1)
                self.joint_dd.options = self.state.selectable_names()
            if image is not None:
                self.image = image
            for h in self.spheres:
                h.remove()
            self.gizmo.remove()
            self._build_scene()
        self._clear_error()
        self._refresh_all()
