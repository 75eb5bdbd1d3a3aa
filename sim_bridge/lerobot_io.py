"""LeRobot datasets ↔ dexworld episodes, through lerobot's own API (``LeRobotDataset.create/resume``,
``add_frame``, ``save_episode``, ``finalize``; reading with ``LeRobotDataset(repo_id, root=...)``).

Dataset layout written by :func:`export_lerobot` (features; T frames per episode, D = total hand DoF)::

    observation.images.<camera>     video (H, W, 3)        encoded with h264 (libx264) by default
    observation.state               float32 (D,)           names: Unitree's (kLeftHandThumb0 …) for Dex3/Inspire,
                                                           '<hand>.<joint>' otherwise; Inspire as 1 = open command
    action                          float32 (D,)           same names and units as the state
    observation.hand_joints         float32 (42, 3)        camera frame (OpenCV), metres, dexworld slot order
    observation.hand_joints_valid   bool (42,)
    observation.intrinsics          float32 (3, 3)         pixel K of the camera images
    observation.hand_root_pose      float32 (n_hands, 4, 4) camera-from-hand-root transform of each hand
    task                            per episode (lerobot's task table)

``meta/dexworld.json`` (sidecar, written atomically in the same commit) records the hands, camera, image size,
Dex3 slot convention, the state names and, per episode, its source id (used to resume) and task. lerobot's own
``meta/info.json`` is left to lerobot.

Crash safety: lerobot keeps parquet writers open and buffers episode metadata until ``finalize``, so a killed
writer leaves files without footers. Every commit therefore works on a staging copy of the dataset
(``.<name>.staging`` beside it; meta copied, data and videos hard-linked — lerobot never rewrites an existing data
or video file when resuming), finalizes it, and swaps it in by renaming. :func:`recover` (run by every entry point)
restores or discards what a killed run left; a rerun skips episodes whose source id is already committed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import shutil
import signal
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from embodiments import registry
from embodiments.io_utils import atomic_path
from embodiments.layout import NUM_SLOTS, SLOT_NAMES
from embodiments.sparse import SparseJoints

from .hand_pose import fit_root_pose, hands_in_camera, join_names, split_names
from .unitree import arm_feature_names, unitree_layout

SIDECAR = "meta/dexworld.json"
SIDECAR_FORMAT = "dexworld.lerobot"
SIDECAR_VERSION = 1
DEFAULT_CAMERA = "ego"
FEATURE_JOINTS = "observation.hand_joints"
FEATURE_VALID = "observation.hand_joints_valid"
FEATURE_K = "observation.intrinsics"
FEATURE_ROOT = "observation.hand_root_pose"
FAILPOINT_ENV = "DEXWORLD_FAILPOINT"

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------- episodes
@dataclasses.dataclass
class Episode:
    """One episode moving between LeRobot and dexworld.

    Attributes:
        frames: (T, H, W, 3) uint8 RGB of the camera.
        joints: camera-frame SparseJoints (T, 42, 3) with K.
        q: hand name → joint vectors (T, dof) in that hand's ``joint_names`` order.
        action: hand name → commanded joint vectors (T, dof); defaults to ``q``.
        task: task text.
        source: unique id of where the episode came from (a clip path, a raw episode); used to resume exports.
        T_cam_root: hand name → (T, 4, 4) camera-from-hand-root; fitted from ``q`` and ``joints`` if missing.
        info: extra JSON-able fields stored with the episode's sidecar entry (e.g. provenance, a quality score).
    """

    frames: np.ndarray
    joints: SparseJoints
    q: dict[str, np.ndarray]
    action: dict[str, np.ndarray] | None = None
    task: str = ""
    source: str = ""
    T_cam_root: dict[str, np.ndarray] | None = None
    info: dict | None = None

    @property
    def hands(self) -> tuple[str, ...]:
        return tuple(self.q)

    def validate(self) -> None:
        """Shapes, dtypes and lengths; errors name the episode's source."""
        who = f"episode {self.source or '<unnamed>'}"
        f = np.asarray(self.frames)
        if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
            raise ValueError(f"{who}: frames must be uint8 (T, H, W, 3), got {f.dtype} {f.shape}")
        T = f.shape[0]
        if T == 0:
            raise ValueError(f"{who}: no frames")
        if f.shape[1] % 2 or f.shape[2] % 2:
            raise ValueError(f"{who}: frame height and width must be even for yuv420p video, got {f.shape[1:3]}")
        if len(self.joints) != T:
            raise ValueError(f"{who}: {T} frames but {len(self.joints)} joint frames")
        if self.joints.frame != "camera" or self.joints.K is None:
            raise ValueError(f"{who}: joints must be in the camera frame and carry K")
        if not self.q:
            raise ValueError(f"{who}: no hand joint states (q)")
        for name, arrs in (("q", self.q), ("action", self.action or {})):
            for hand, v in arrs.items():
                dof = registry.get(hand).dof
                if np.shape(v) != (T, dof):
                    raise ValueError(f"{who}: {name}[{hand!r}] must have shape ({T}, {dof}), got {np.shape(v)}")
        if self.action is not None and set(self.action) != set(self.q):
            raise ValueError(f"{who}: action hands {sorted(self.action)} differ from state hands {sorted(self.q)}")


# ---------------------------------------------------------------------------------------------------- state layout
class StateLayout:
    """Concatenated state vector of several hands ↔ per-hand joint vectors, with LeRobot feature names."""

    def __init__(self, hands: Iterable[str], dex3_convention: str = "motor"):
        self.hands = tuple(hands)
        self.dex3_convention = dex3_convention
        self._parts = []
        names: list[str] = []
        for hand in self.hands:
            emb = registry.get(hand)
            layout = unitree_layout(hand, dex3_convention)
            hand_names = list(layout.names) if layout else [f"{hand}.{j}" for j in emb.joint_names]
            self._parts.append((hand, layout, slice(len(names), len(names) + len(hand_names))))
            names += hand_names
        if len(set(names)) != len(names):
            raise ValueError(f"hands {self.hands} give duplicate state names")
        self.names = names

    def encode(self, q: dict[str, np.ndarray]) -> np.ndarray:
        """Per-hand joint vectors (T, dof) → state (T, D) float32."""
        cols = [layout.to_unitree(q[hand]) if layout else np.asarray(q[hand], np.float64)
                for hand, layout, _ in self._parts]
        return np.concatenate(cols, axis=-1).astype(np.float32)

    def decode(self, v: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """State (T, D') → per-hand joint vectors, reading columns by name from ``names`` (default ours)."""
        v = np.asarray(v, dtype=np.float64)
        names = self.names if names is None else list(names)
        out = {}
        for hand, layout, sl in self._parts:
            want = self.names[sl]
            missing = [n for n in want if n not in names]
            if missing:
                raise ValueError(f"state has no columns {missing} for hand {hand!r}; columns are {names}")
            cols = v[..., [names.index(n) for n in want]]
            if layout:
                out[hand] = layout.from_unitree(cols)
            else:
                out[hand] = cols
        return out


def lerobot_features(hands: Iterable[str], height: int, width: int, camera: str = DEFAULT_CAMERA,
                     dex3_convention: str = "motor") -> dict:
    """The LeRobot ``features`` dict of a dexworld export (see the module docstring)."""
    layout = StateLayout(hands, dex3_convention)
    D = len(layout.names)
    return {
        f"observation.images.{camera}": {"dtype": "video", "shape": (height, width, 3),
                                         "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (D,), "names": layout.names},
        "action": {"dtype": "float32", "shape": (D,), "names": layout.names},
        FEATURE_JOINTS: {"dtype": "float32", "shape": (NUM_SLOTS, 3), "names": list(SLOT_NAMES)},
        FEATURE_VALID: {"dtype": "bool", "shape": (NUM_SLOTS,), "names": list(SLOT_NAMES)},
        FEATURE_K: {"dtype": "float32", "shape": (3, 3), "names": None},
        FEATURE_ROOT: {"dtype": "float32", "shape": (len(layout.hands), 4, 4), "names": list(layout.hands)},
    }


# ---------------------------------------------------------------------------------------------------- sidecar
def read_sidecar(root: str | os.PathLike) -> dict | None:
    """The dexworld sidecar of a dataset, or None if it has none."""
    path = Path(root) / SIDECAR
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if data.get("format") != SIDECAR_FORMAT or data.get("schema_version") != SIDECAR_VERSION:
        raise ValueError(f"{path}: not a dexworld sidecar of schema version {SIDECAR_VERSION}")
    return data


def _write_sidecar(root: Path, data: dict) -> None:
    with atomic_path(root / SIDECAR) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


# ---------------------------------------------------------------------------------------------------- commit/recover
def _aux(root: Path, kind: str) -> Path:
    return root.parent / f".{root.name}.{kind}"


def recover(root: str | os.PathLike) -> str:
    """Bring a dataset folder back to its last committed state after a killed export.

    Returns what was done: ``"clean"``, ``"restored"`` (a swap was cut between its two renames; the previous
    commit is back) or ``"discarded"`` (an uncommitted staging folder, or a backup that the committed dataset
    supersedes, removed). Committed episodes are never discarded: a backup is deleted only when ``root`` is a
    complete dataset holding all its episodes; a ``root`` of empty folders (left by something that opened the
    half-renamed dataset) is removed and the backup put back; anything else is a ``ValueError`` that deletes nothing.
    """
    root = Path(root)
    staging, backup = _aux(root, "staging"), _aux(root, "backup")
    action = "clean"
    if backup.exists():
        if root.exists() and _supersedes(root, backup):
            shutil.rmtree(backup)
            action = "discarded"
        else:
            if root.exists():
                if not root.is_dir() or any(p.is_file() or p.is_symlink() for p in root.rglob("*")):
                    raise ValueError(f"{root} is not the dataset its interrupted export committed, and {backup} "
                                     "holds the previous commit; move one of them away (nothing was deleted)")
                _remove_empty_tree(root)
            os.rename(backup, root)
            action = "restored"
    if staging.exists():
        shutil.rmtree(staging)
        action = "discarded" if action == "clean" else action
    if action != "clean":
        log.warning("recovered %s after an interrupted export: %s", root, action)
    return action


def _supersedes(root: Path, backup: Path) -> bool:
    """Whether ``root`` is a complete dexworld dataset that holds every episode of ``backup`` (a finished swap)."""
    try:
        new, old = read_sidecar(root), read_sidecar(backup)
    except ValueError:
        return False
    if new is None or not (root / "meta" / "info.json").exists():
        return False
    old_eps = old["episodes"] if old else []
    return new["episodes"][:len(old_eps)] == old_eps


def _remove_empty_tree(folder: Path) -> None:
    """Remove a folder that holds only empty folders (``os.rmdir`` refuses anything else)."""
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        os.rmdir(sub)
    os.rmdir(folder)


def check_root(root: str | os.PathLike) -> Path:
    """A folder to export into: missing, empty, or a dataset (with :func:`recover`'s aux folders beside it).

    Anything else — a file, a folder of other things — is refused, so an export never replaces what it did not
    write.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"dataset root {root} is a file; give a folder (new, empty, or a LeRobot dataset written "
                         "by dexworld)")
    if root.is_dir() and not (root / "meta" / "info.json").exists() and any(root.iterdir()) \
            and not _aux(root, "backup").exists():
        names = sorted(p.name for p in root.iterdir())
        shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
        raise ValueError(f"dataset root {root} exists and is not a LeRobot dataset (it holds {shown}); export into "
                         "a new or empty folder")
    return root


class DatasetBusy(ValueError):
    """Another process holds the dataset's write lock."""


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    """One writer per dataset folder (advisory lock beside it)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(_aux(root, "lock"), "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetBusy(f"another export is writing {root}") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _failpoint(name: str) -> None:
    """Test hook: ``DEXWORLD_FAILPOINT=<name>[:<n>[:raise|kill]]`` fails the n-th time ``name`` is reached."""
    spec = os.environ.get(FAILPOINT_ENV)
    if not spec:
        return
    parts = spec.split(":")
    if parts[0] != name:
        return
    n = int(parts[1]) if len(parts) > 1 else 1
    mode = parts[2] if len(parts) > 2 else "kill"
    _failpoint.counts[name] = _failpoint.counts.get(name, 0) + 1
    if _failpoint.counts[name] == n:
        if mode == "raise":
            raise RuntimeError(f"failpoint {name} hit ({n})")
        os.kill(os.getpid(), signal.SIGKILL)


_failpoint.counts = {}


def _quiet_lerobot() -> None:
    logging.getLogger("lerobot").setLevel(logging.ERROR)
    with contextlib.suppress(Exception):
        import av

        av.logging.set_level(av.logging.ERROR)


@contextlib.contextmanager
def _ffmpeg_warnings_only() -> Iterator[None]:
    """FFmpeg's own log shows only warnings and errors inside the block; PyAV's logging is put back after it.

    lerobot's encoder ends every video with ``av.logging.restore_default_callback()``, which hands FFmpeg's log
    back to FFmpeg's stderr printer at FFmpeg's default level (INFO), so libx264 printed its statistics
    (``[libx264 @ 0x…] frame I:…``) on the terminal during exports. Lowering FFmpeg's level (which that printer
    obeys) drops the chatter and keeps real warnings and errors on stderr. On exit FFmpeg's default level is set
    again (PyAV cannot read the previous one) and PyAV's callback is reinstalled at its previous threshold, which
    undoes lerobot's switch for the rest of the process.
    """
    import av.logging

    previous = av.logging.get_level()
    av.logging.set_libav_level(av.logging.WARNING)
    try:
        yield
    finally:
        av.logging.set_libav_level(av.logging.INFO)
        av.logging.set_level(previous)


def default_encoder(crf: int = 18):
    """h264 via PyAV/libx264: available in every FFmpeg build; lerobot's default libsvtav1 rejects tiny frames."""
    from lerobot.configs.video import RGBEncoderConfig

    return RGBEncoderConfig(vcodec="h264", crf=crf, g=2)


def root_poses(ep: Episode, hands: list[str]) -> dict[str, np.ndarray]:
    """Camera-from-hand-root transforms per hand: the episode's own, else fitted to its joints (a ValueError naming
    the episode when a frame shows too few joints of a hand, e.g. the hand out of view)."""
    given = ep.T_cam_root or {}
    try:
        return {h: given[h] if h in given else fit_root_pose(h, ep.q[h], ep.joints)[0] for h in hands}
    except ValueError as e:
        raise ValueError(f"episode {ep.source!r}: {e}") from None


class _Stage:
    """An uncommitted copy of the dataset being appended to."""

    def __init__(self, root: Path, repo_id: str, fps: int, features: dict, sidecar: dict, encoder):
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        self.root, self.dir = root, _aux(root, "staging")
        if self.dir.exists():
            shutil.rmtree(self.dir)
        if (root / "meta" / "info.json").exists():
            shutil.copytree(root / "meta", self.dir / "meta")
            for entry in root.iterdir():  # data, videos and anything a user keeps beside them: hard links
                if entry.name == "meta":
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.copytree(entry, self.dir / entry.name, symlinks=True, copy_function=_link_or_copy)
                elif entry.is_symlink():
                    os.symlink(os.readlink(entry), self.dir / entry.name)
                else:
                    _link_or_copy(str(entry), str(self.dir / entry.name))
            self.ds = LeRobotDataset.resume(repo_id, root=self.dir, video_backend="pyav", rgb_encoder=encoder)
        else:
            self.ds = LeRobotDataset.create(repo_id, fps=fps, features=features, root=self.dir, use_videos=True,
                                            video_backend="pyav", rgb_encoder=encoder)
        self.sidecar = sidecar
        self.count = 0

    def add(self, ep: Episode, layout: StateLayout, camera: str, roots: dict[str, np.ndarray]) -> None:
        T = len(ep.frames)
        state = layout.encode(ep.q)
        action = layout.encode(ep.action if ep.action is not None else ep.q)
        K = ep.joints.frame_K().astype(np.float32)
        root_pose = np.stack([np.broadcast_to(np.asarray(roots[h], np.float64), (T, 4, 4)) for h in layout.hands],
                             axis=1).astype(np.float32)
        key = f"observation.images.{camera}"
        for t in range(T):
            self.ds.add_frame({key: ep.frames[t], "observation.state": state[t], "action": action[t],
                               FEATURE_JOINTS: ep.joints.positions[t], FEATURE_VALID: ep.joints.valid[t],
                               FEATURE_K: K[t], FEATURE_ROOT: root_pose[t], "task": ep.task})
            _failpoint("export.frame")
        index = self.ds.meta.total_episodes
        self.ds.save_episode()
        self.sidecar["episodes"].append({"episode_index": int(index), "source": ep.source, "task": ep.task,
                                         "length": int(T), "K": K[0].astype(float).tolist(), **(ep.info or {})})
        self.count += 1

    def commit(self) -> None:
        self.ds.finalize()
        _write_sidecar(self.dir, self.sidecar)
        _failpoint("export.before_swap")
        backup = _aux(self.root, "backup")
        if self.root.exists():
            os.rename(self.root, backup)
        _failpoint("export.between_renames")
        os.rename(self.dir, self.root)
        if backup.exists():
            shutil.rmtree(backup)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.ds.writer.clear_episode_buffer()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclasses.dataclass
class ExportReport:
    written: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    total_episodes: int = 0


def export_lerobot(episodes: Iterable[Episode], repo_id: str, root: str | os.PathLike, fps: int | None = None,
                   camera: str = DEFAULT_CAMERA, commit_every: int = 1, dex3_convention: str = "motor",
                   encoder=None, skip_bad: bool = False, progress: Callable[[Episode], None] | None = None
                   ) -> ExportReport:
    """Append episodes to the LeRobot dataset at ``root`` (created on first use), crash-safely.

    Episodes whose ``source`` is already in the dataset are skipped, so rerunning an interrupted export resumes
    it. ``commit_every`` episodes are made durable together (1 = after every episode). With ``skip_bad`` an
    episode that fails validation is reported and skipped instead of stopping the export.
    """
    _quiet_lerobot()
    root = check_root(root)
    if commit_every < 1:
        raise ValueError(f"commit_every must be ≥ 1, got {commit_every}")
    encoder = encoder or default_encoder()
    report = ExportReport()
    with _lock(root), _ffmpeg_warnings_only():
        recover(root)
        check_root(root)
        sidecar = read_sidecar(root)
        if sidecar is None and (root / "meta" / "info.json").exists():
            raise ValueError(f"{root} is a LeRobot dataset not written by dexworld (no {SIDECAR}); "
                             "export into a new folder")
        done = {e["source"] for e in sidecar["episodes"]} if sidecar else set()
        stage: _Stage | None = None
        layout: StateLayout | None = None
        try:
            for ep in episodes:
                try:
                    ep.validate()
                    if sidecar is None:
                        sidecar = _new_sidecar(ep, camera, fps, dex3_convention)
                    _check_compatible(ep, sidecar, camera)
                    roots = root_poses(ep, sidecar["hands"])
                except ValueError as e:
                    if not skip_bad:
                        raise
                    report.failed.append((ep.source, str(e)))
                    continue
                if ep.source and ep.source in done:
                    report.skipped.append(ep.source)
                    continue
                layout = layout or StateLayout(sidecar["hands"], sidecar["dex3_convention"])
                if stage is None:
                    H, W = sidecar["image_size"]
                    feats = lerobot_features(sidecar["hands"], H, W, sidecar["camera"], sidecar["dex3_convention"])
                    stage = _Stage(root, repo_id, sidecar["fps"], feats, sidecar, encoder)
                stage.add(ep, layout, sidecar["camera"], roots)
                done.add(ep.source)
                report.written.append(ep.source)
                if progress:
                    progress(ep)
                if stage.count >= commit_every:
                    stage.commit()
                    stage = None
            if stage is not None:
                stage.commit()
                stage = None
        except BaseException:
            if stage is not None:
                stage.abort()
            raise
    final = read_sidecar(root)
    report.total_episodes = len(final["episodes"]) if final else 0
    return report


def _new_sidecar(ep: Episode, camera: str, fps: int | None, dex3_convention: str) -> dict:
    ep_fps = ep.joints.fps
    fps = int(round(ep_fps)) if fps is None else int(fps)
    return {"format": SIDECAR_FORMAT, "schema_version": SIDECAR_VERSION, "hands": list(ep.hands),
            "embodiment": join_names(list(ep.hands)), "camera": camera, "fps": fps,
            "image_size": list(ep.frames.shape[1:3]), "dex3_convention": dex3_convention,
            "state_names": StateLayout(ep.hands, dex3_convention).names, "episodes": []}


def _check_compatible(ep: Episode, sidecar: dict, camera: str) -> None:
    who = f"episode {ep.source or '<unnamed>'}"
    if list(ep.hands) != sidecar["hands"]:
        kinds = "a pair and a single hand" if len(ep.hands) != len(sidecar["hands"]) else "different hands"
        raise ValueError(f"{who}: hands {list(ep.hands)} differ from the dataset's {sidecar['hands']}; one dataset "
                         f"has one state layout, so export {kinds} into separate datasets")
    if list(ep.frames.shape[1:3]) != sidecar["image_size"]:
        raise ValueError(f"{who}: frames are {tuple(ep.frames.shape[1:3])}, the dataset's images are "
                         f"{tuple(sidecar['image_size'])}")
    if abs(ep.joints.fps - sidecar["fps"]) > 1e-6:
        raise ValueError(f"{who}: {ep.joints.fps} fps, the dataset is {sidecar['fps']} fps (LeRobot needs one "
                         "integer fps); resample first")
    if camera != sidecar["camera"]:
        raise ValueError(f"{who}: camera {camera!r}, the dataset's camera is {sidecar['camera']!r}")


# ---------------------------------------------------------------------------------------------------- reading
def load_dataset(repo_id: str, root: str | os.PathLike):
    """``LeRobotDataset(repo_id, root=root)`` offline with the PyAV decoder, after :func:`recover`."""
    _quiet_lerobot()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    # Only a killed export leaves a backup or staging folder beside the dataset: a plain read writes nothing.
    if any(p.exists() for p in (_aux(root, "backup"), _aux(root, "staging"))):
        try:
            with _lock(root):
                recover(root)
        except DatasetBusy:
            pass  # an export is writing it: that writer recovers; read the last commit
    if not (root / "meta" / "info.json").exists():
        raise FileNotFoundError(f"no LeRobot dataset at {root} (meta/info.json missing)")
    return LeRobotDataset(repo_id, root=root, video_backend="pyav")


def _flat_names(names) -> list[str]:
    from .lerobot_layouts import flat_names

    return flat_names(names)


def _episode_frames(ds, ep_index: int, camera_key: str, length: int) -> np.ndarray:
    from lerobot.datasets.video_utils import decode_video_frames

    ep = ds.meta.episodes[ep_index]
    path = ds.root / ds.meta.get_video_file_path(ep_index, camera_key)
    t0 = ep[f"videos/{camera_key}/from_timestamp"]
    ts = [t0 + i / ds.fps for i in range(length)]
    frames = decode_video_frames(path, ts, ds.tolerance_s, backend="pyav", return_uint8=True)
    return frames.permute(0, 2, 3, 1).numpy().astype(np.uint8)


def import_lerobot(root: str | os.PathLike, repo_id: str | None = None, hands: list[str] | None = None,
                   camera: str | None = None, robot: str | None = None, K: np.ndarray | None = None,
                   T_cam_root: dict[str, np.ndarray] | None = None, T_torso_cam: np.ndarray | None = None,
                   episodes: list[int] | None = None, dex3_convention: str | None = None,
                   strict: bool = False, skip_bad: bool = False, convert_dir: str | os.PathLike | None = None,
                   skipped: list[tuple[str, str]] | None = None) -> Iterator[Episode]:
    """Episodes of a LeRobot dataset (v3.0, or v2.1 through a converted copy) as dexworld episodes: frames,
    SparseJoints by hand FK, K.

    The layout is told from the feature names (:mod:`sim_bridge.lerobot_layouts`: dexworld exports, Unitree's
    unitree_IL_lerobot G1 Dex3 / Inspire, Humanoid Everyday's LeRobot copies); ``hands``, ``robot`` and ``camera``
    override what is detected. Hand joints are read by name (Unitree names for Dex3/Inspire). The camera-from-hand
    transform comes from, in order: ``T_cam_root`` (hand → (4, 4), e.g. a wrist camera's fixed calibration); the
    dataset's ``observation.hand_root_pose`` (dexworld exports); the arm chain of the robot (detected, or
    ``g1``/``g1_inspire``/``h1_2``) fed with the Unitree arm columns, optionally with a calibrated ``T_torso_cam``.
    K: ``K``, else the dataset's ``observation.intrinsics``, else the robot's default scaled to the image size.

    A v2.1 dataset is converted once into ``convert_dir`` (default: a cache folder) by lerobot's converter; the
    source is not written. Its episodes with missing files raise, or with ``skip_bad`` are left out and appended
    to ``skipped`` as (name, reason). Episode indices (``episodes``, sources ``<name>#<i>``) are the source's.
    """
    from .lerobot_layouts import resolve
    from .lerobot_v21 import convert_v21, needs_conversion

    source = Path(root)
    repo_id = repo_id or f"local/{source.name}"
    index_map = None
    if (source / "meta" / "info.json").exists() and needs_conversion(source):
        conv = convert_v21(source, convert_dir, skip_bad=skip_bad, repo_id=repo_id)
        root, index_map = conv.root, conv.episodes
        if skipped is not None:
            skipped += [(f"{source.name}#{i}", why) for i, why in conv.skipped]
    root = Path(root)
    sidecar = read_sidecar(root)
    ds = load_dataset(repo_id, root)
    feats = ds.meta.features
    lay = resolve(feats, ds.meta.robot_type, sidecar, hands, robot, camera)
    hands, robot, cam_key = lay.hands, lay.robot, lay.camera_key
    convention = dex3_convention or (sidecar["dex3_convention"] if sidecar else "motor")
    layout = StateLayout(hands, convention)
    state_names, action_names = lay.state_names, lay.action_names
    arm = None
    if T_cam_root is None and FEATURE_ROOT not in feats:
        if robot is None:
            raise ValueError("no camera-from-hand transform: the dataset has no observation.hand_root_pose; pass "
                             "robot='g1'/'g1_inspire'/'h1_2' (arm joints in the state) or a fixed T_cam_root per hand")
        from .robots import arm_kinematics

        arm = arm_kinematics(robot)
        missing = [n for n in arm_feature_names() if n not in state_names]
        if missing:
            raise ValueError(f"robot {robot!r} needs arm columns {missing} in {' + '.join(lay.state_keys)}")
    default_spec = None
    if K is None and FEATURE_K not in feats:
        if robot is None:
            raise ValueError("no intrinsics: pass K= or robot= (uses the robot's default camera K)")
        from .robots import robot_spec

        default_spec = robot_spec(robot)
    columns = lay.state_keys + [k for k in lay.action_keys if k not in lay.state_keys] + \
        [k for k in (FEATURE_K, FEATURE_ROOT) if k in feats]
    hf = ds.hf_dataset.with_format("numpy", columns=columns)
    tasks_by_ep = {e["episode_index"]: e for e in sidecar["episodes"]} if sidecar else {}
    to_copy = {src: i for i, src in enumerate(index_map)} if index_map is not None else None
    every = index_map if index_map is not None else range(ds.meta.total_episodes)
    wanted = episodes if episodes is not None else every
    for want in wanted:
        ep_index = want
        if to_copy is not None:
            if want not in to_copy:
                raise ValueError(f"{source}: episode {want} is not in the dataset (or was skipped as bad)")
            ep_index = to_copy[want]
        elif not 0 <= want < ds.meta.total_episodes:
            raise ValueError(f"{source}: episode {want} is out of range (0…{ds.meta.total_episodes - 1})")
        meta = ds.meta.episodes[ep_index]
        lo, hi = int(meta["dataset_from_index"]), int(meta["dataset_to_index"])
        rows = hf[lo:hi]
        state = np.concatenate([np.asarray(rows[k], np.float64).reshape(hi - lo, -1) for k in lay.state_keys], 1)
        q = layout.decode(state, state_names)
        action = None
        if lay.action_keys:
            act = np.concatenate([np.asarray(rows[k], np.float64).reshape(hi - lo, -1) for k in lay.action_keys], 1)
            action = layout.decode(act, action_names)
        if T_cam_root is not None:
            roots = T_cam_root
        elif FEATURE_ROOT in feats:
            pose = np.asarray(rows[FEATURE_ROOT], np.float64)
            names = _flat_names(feats[FEATURE_ROOT].get("names"))
            roots = {h: pose[:, names.index(h)] for h in hands}
        else:
            arm_q = state[:, [state_names.index(n) for n in arm_feature_names()]]
            roots = arm.camera_from_roots(arm_q, T_torso_cam)
        frames = _episode_frames(ds, ep_index, cam_key, hi - lo)
        if default_spec is not None:  # the robot's K scaled to the decoded frames (declared shapes may differ)
            from embodiments.transforms import scale_intrinsics

            H, W = frames.shape[1:3]
            Kep = scale_intrinsics(default_spec.K, W / default_spec.image_size[1], H / default_spec.image_size[0])
        else:
            Kep = K if K is not None else np.asarray(rows[FEATURE_K], np.float64)
        joints = hands_in_camera(q, roots, Kep, fps=float(ds.fps), strict=strict)
        info = tasks_by_ep.get(ep_index, {})
        task = meta["tasks"][0] if len(meta["tasks"]) else ""
        yield Episode(frames=frames, joints=joints, q=q, action=action, task=str(task),
                      source=info.get("source", f"{source.name}#{want}"), T_cam_root=roots)


def split_clip_state(embodiment: str, q: np.ndarray) -> dict[str, np.ndarray]:
    """A clip's concatenated joint states (T, D) → hand name → (T, dof), hands from ``"a+b"`` embodiment names."""
    hands = split_names(embodiment)
    q = np.asarray(q, dtype=np.float64)
    dofs = [registry.get(h).dof for h in hands]
    if q.ndim != 2 or q.shape[1] != sum(dofs):
        raise ValueError(f"joint states for {hands} must have shape (T, {sum(dofs)}), got {q.shape}")
    return dict(zip(hands, np.split(q, np.cumsum(dofs)[:-1], axis=1), strict=True))
