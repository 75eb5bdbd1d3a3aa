"""Humanoid Everyday raw episodes (Unitree G1 + Dex3-1, H1-2 + Inspire; 30 Hz; egocentric RealSense) → dexworld
episodes with hand joints in the head-camera frame → training clips and/or a LeRobot dataset.

Raw layout (per task, a folder or a zip of it; verified against the dataset's README and its loader
``humanoid_everyday/core.py``)::

    <task>/episode_<N>/data.json   list, one dict per frame:
        "time", "robot_type" ("g1"/"G1"/"h1", top level or in "states", or none), "states": {"arm_state" (14),
        "leg_state", "hand_state" (14 Dex3 | 12 Inspire; left first per the README, right first in early H1
        recordings), "hand_pressure_state", "imu", "odometry"}, "actions": {"left_angles", "right_angles", "sol_q",
        ...}, "image": "color/<...>.jpg|png", "depth": "depth/frame_000000.npy.lzma" (lzma-compressed raw uint16
        480×640 mm), "lidar": "lidar/<...>.pcd" (optional)

Hand placement: arm_state (Unitree order, README) → our G1 / H1-2 upper-body URDF (``sim_bridge/assets``) gives
camera-from-hand-root per frame; the hand's own FK (registry ``dex3_*`` / ``inspire_*``) gives the joints. What is
assumed rather than published (docs/data.md): the colour intrinsics (default: the only published K, the loader's
depth back-projection), the H1-2 head-camera mount, Inspire ``hand_state`` being Unitree's normalised 1 = open
command, and the order of the 12 H1-2 ``left/right_angles`` values.
"""

from __future__ import annotations

import dataclasses
import io
import json
import lzma
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from embodiments import registry
from embodiments.io_utils import confined_path

from .hand_pose import hands_in_camera
from .ingest import IngestReport, write_episodes
from .lerobot_io import Episode
from .robots import arm_kinematics, robot_spec
from .unitree import inspire_to_command, unitree_layout

HE_FPS = 30.0
DEPTH_SHAPE = (480, 640)
# Assumed order of the 12 Inspire values in H1-2 ``actions.left_angles/right_angles`` (the Inspire URDF's joints
# as the teleoperation retargeter lists them): Humanoid Everyday's own converter reads pinky, ring, middle, index
# proximal at 4, 6, 2, 0 and the thumb at 8, 9.
HE_INSPIRE_ACTION_PARTS = ("index_proximal", "index_intermediate", "middle_proximal", "middle_intermediate",
                           "pinky_proximal", "pinky_intermediate", "ring_proximal", "ring_intermediate",
                           "thumb_proximal_yaw", "thumb_proximal_pitch", "thumb_intermediate", "thumb_distal")


class HEFormatError(ValueError):
    """A Humanoid Everyday episode that does not follow the format; the message names the episode and frame."""


class HandOrderWarning(UserWarning):
    """Humanoid Everyday hand_state looks like it lists the hands in the other order."""


# ---------------------------------------------------------------------------------------------------- sources
class TaskSource:
    """A task folder or zip: episode names and their files, without extracting the zip."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._zip = None
        if not self.path.exists():
            raise FileNotFoundError(f"no Humanoid Everyday task at {self.path}")
        if self.path.is_file():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except zipfile.BadZipFile as e:
                raise HEFormatError(f"{self.path}: not a readable zip file (truncated or corrupt?): {e}") from None
            names = [n for n in self._zip.namelist() if not n.startswith("__MACOSX")]
            jsons = [PurePosixPath(n) for n in names if PurePosixPath(n).name == "data.json"]
        else:
            jsons = [PurePosixPath(p.relative_to(self.path).as_posix()) for p in self.path.rglob("data.json")]
        self.episodes = sorted((str(j.parent) for j in jsons), key=_episode_key)
        if not self.episodes:
            raise HEFormatError(f"{self.path}: no episode_*/data.json found")
        self.task_name = self.path.stem if self._zip is not None else self.path.name

    def label(self, name: str) -> str:
        """``<task>/<episode>`` for an episode name (the zip's own top folder is not repeated)."""
        prefix = f"{self.task_name}/"
        return f"{self.task_name}/{name[len(prefix):] if name.startswith(prefix) else name}"

    def read(self, rel: str, who: str) -> bytes:
        try:
            if self._zip is not None:
                return self._zip.read(rel)
            return confined_path(self.path, rel, who).read_bytes()  # no symbolic link out of the task folder
        except (KeyError, FileNotFoundError):
            raise HEFormatError(f"{who}: file {rel} is missing") from None
        except ValueError as e:
            raise HEFormatError(str(e)) from None
        except (zipfile.BadZipFile, lzma.LZMAError, OSError, EOFError) as e:
            raise HEFormatError(f"{who}: file {rel} cannot be read ({e})") from None

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _inside(episode: str, rel: str, who: str) -> str:
    """``<episode>/<rel>`` for a file path read from ``data.json``; one leaving the episode folder is refused."""
    try:
        confined_path(episode, rel, who, follow_links=False)  # no '..', not absolute (links: checked on reading)
    except ValueError as e:
        raise HEFormatError(str(e)) from None
    return f"{episode}/{rel}"


def _episode_key(name: str) -> tuple:
    m = re.search(r"(\d+)$", name)
    return (name.rsplit("/", 1)[0] if "/" in name else "", int(m.group(1)) if m else -1, name)


# ---------------------------------------------------------------------------------------------------- raw episode
@dataclasses.dataclass
class RawEpisode:
    """The low-dimensional part of one raw episode, validated; arrays are (T, n)."""

    name: str
    robot: str
    time: np.ndarray
    arm_state: np.ndarray
    hand_state: np.ndarray
    left_angles: np.ndarray | None
    right_angles: np.ndarray | None
    images: list[str]
    depths: list[str | None]


def _vec(frame: dict, keys: tuple[str, ...], n: int | tuple[int, ...], who: str) -> np.ndarray:
    node = frame
    for k in keys:
        if not isinstance(node, dict) or k not in node:
            raise HEFormatError(f"{who}: missing field {'.'.join(keys)}")
        node = node[k]
    try:
        v = np.asarray(node, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise HEFormatError(f"{who}: field {'.'.join(keys)} is not a list of numbers") from None
    ns = (n,) if isinstance(n, int) else n
    if v.shape[0] not in ns:
        raise HEFormatError(f"{who}: field {'.'.join(keys)} has {v.shape[0]} values, expected "
                            f"{' or '.join(map(str, ns))}")
    if not np.isfinite(v).all():
        raise HEFormatError(f"{who}: field {'.'.join(keys)} contains NaN or inf")
    return v


def parse_episode(src: TaskSource, name: str, robot: str | None = None) -> RawEpisode:
    """Read and validate ``<name>/data.json``; the robot is detected (``robot_type`` → G1; 12 hand values → H1-2)
    unless given."""
    who = f"{src.path.name}:{name}"
    raw = src.read(f"{name}/data.json" if name not in ("", ".") else "data.json", who)
    try:
        frames = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HEFormatError(f"{who}/data.json is not valid JSON (truncated?): {e}") from None
    if not isinstance(frames, list) or not frames:
        raise HEFormatError(f"{who}/data.json must be a non-empty list of per-frame records")
    first = frames[0] if isinstance(frames[0], dict) else {}
    if robot is None:
        tag = first.get("robot_type", (first.get("states") or {}).get("robot_type"))
        n_hand = len((first.get("states") or {}).get("hand_state") or [])
        if tag is not None:
            robot = str(tag)
        elif n_hand == 12:
            robot = "h1_2"
        elif n_hand == 14:
            robot = "g1"
        else:
            raise HEFormatError(f"{who}: cannot tell the robot (no robot_type, {n_hand} hand_state values); "
                                "pass robot='g1' or 'h1_2'")
    try:
        spec = robot_spec(robot)
    except ValueError as e:
        raise HEFormatError(f"{who}: {e}") from None
    n_hand = 14 if spec.name == "g1" else 12
    n_act = (7,) if spec.name == "g1" else (12, 6)
    arm, hand, left, right, times, images, depths = [], [], [], [], [], [], []
    has_actions = all(isinstance(f, dict) and "left_angles" in (f.get("actions") or {}) for f in frames)
    for t, f in enumerate(frames):
        wf = f"{who} frame {t}"
        if not isinstance(f, dict):
            raise HEFormatError(f"{wf}: record is not an object")
        arm.append(_vec(f, ("states", "arm_state"), 14, wf))
        hand.append(_vec(f, ("states", "hand_state"), n_hand, wf))
        if has_actions:
            left.append(_vec(f, ("actions", "left_angles"), n_act, wf))
            right.append(_vec(f, ("actions", "right_angles"), n_act, wf))
        img = f.get("image")
        if not isinstance(img, str) or not img:
            raise HEFormatError(f"{wf}: missing the colour image path 'image'")
        images.append(_inside(name, img, f"{wf}: field 'image'"))
        dep = f.get("depth")
        depths.append(_inside(name, dep, f"{wf}: field 'depth'") if isinstance(dep, str) and dep else None)
        times.append(float(f.get("time", t / HE_FPS)))
    for label, arrs in (("left_angles", left), ("right_angles", right)):
        if arrs and len({a.shape[0] for a in arrs}) != 1:
            raise HEFormatError(f"{who}: actions.{label} changes length within the episode")
    return RawEpisode(name=name, robot=spec.name, time=np.asarray(times), arm_state=np.stack(arm),
                      hand_state=np.stack(hand), left_angles=np.stack(left) if left else None,
                      right_angles=np.stack(right) if right else None, images=images, depths=depths)


def load_depth(src: TaskSource, rel: str, who: str, shape: tuple[int, int] = DEPTH_SHAPE) -> np.ndarray:
    """A depth map: lzma-compressed raw uint16 (H, W) (millimetres, as the dataset's loader treats it)."""
    data = src.read(rel, who)
    try:
        buf = lzma.decompress(data)
    except lzma.LZMAError as e:
        raise HEFormatError(f"{who}: depth {rel} is not lzma data ({e})") from None
    if len(buf) != 2 * shape[0] * shape[1]:
        raise HEFormatError(f"{who}: depth {rel} holds {len(buf)} bytes, expected uint16 {shape}")
    return np.frombuffer(buf, dtype="<u2").reshape(shape)


def load_image(src: TaskSource, rel: str, who: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    data = src.read(rel, who)
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise HEFormatError(f"{who}: colour image {rel} cannot be decoded ({e})") from None


# ---------------------------------------------------------------------------------------------------- conversion
HAND_ORDERS = ("left-first", "right-first")


def _hand_blocks(raw: RawEpisode, hand_order: str) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) halves of ``hand_state`` under ``hand_order`` (README: left first)."""
    if hand_order not in HAND_ORDERS:
        raise ValueError(f"hand_order must be one of {HAND_ORDERS}, got {hand_order!r}")
    n = raw.hand_state.shape[1] // 2
    first, second = raw.hand_state[:, :n], raw.hand_state[:, n:]
    return (first, second) if hand_order == "left-first" else (second, first)


def _commanded_state(raw: RawEpisode, side: str) -> np.ndarray | None:
    """The commanded hand of ``side`` in ``hand_state`` units (Dex3 radians; Inspire 1 = open), or None."""
    acts = raw.left_angles if side == "left" else raw.right_angles
    if acts is None:
        return None
    spec = robot_spec(raw.robot)
    layout = unitree_layout(spec.hands[side])
    if not layout.normalised:
        return acts
    if acts.shape[1] == 6:
        return acts
    prefix = "L_" if side == "left" else "R_"
    order = [f"{prefix}{p}_joint" for p in HE_INSPIRE_ACTION_PARTS]
    return inspire_to_command(acts[:, [order.index(j) for j in layout.slot_joints]])


def hand_order_warning(raw: RawEpisode, hand_order: str = "left-first") -> str | None:
    """A warning when ``hand_state`` looks swapped under ``hand_order``: the commanded right hand
    (``actions.right_angles``) follows the block read as the left hand much better than the block read as the right
    (mean absolute difference under half), as in early H1 recordings that store the right hand first."""
    want = _commanded_state(raw, "right")
    if want is None or len(want) < 2:
        return None
    left, right = _hand_blocks(raw, hand_order)
    same, swapped = np.abs(right - want).mean(), np.abs(left - want).mean()
    if swapped < 0.5 * same:
        other = HAND_ORDERS[1 - HAND_ORDERS.index(hand_order)]
        return (f"{raw.name}: hand_state looks swapped (commanded right hand differs by {swapped:.3f} from the "
                f"block read as left, {same:.3f} from the one read as right); if this recording stores the right "
                f"hand first, pass hand_order={other!r} (--hand-order {other})")
    return None


def hand_vectors(raw: RawEpisode, hand_order: str = "left-first"
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """Joint states and commanded joints per hand (T, dof), in each hand's ``joint_names`` order.

    ``hand_order`` says which hand ``hand_state`` lists first: ``"left-first"`` (the README, default) or
    ``"right-first"`` (early H1 recordings); a :class:`HandOrderWarning` is issued when the data look swapped.
    """
    spec = robot_spec(raw.robot)
    blocks = dict(zip(("left", "right"), _hand_blocks(raw, hand_order), strict=True))
    message = hand_order_warning(raw, hand_order)
    if message:
        warnings.warn(message, HandOrderWarning, stacklevel=2)
    q, action = {}, {}
    for side in ("left", "right"):
        hand = spec.hands[side]
        layout = unitree_layout(hand)
        try:
            q[hand] = layout.from_unitree(blocks[side])
        except ValueError as e:
            raise HEFormatError(f"{raw.name}: {side} hand_state: {e}") from None
        acts = raw.left_angles if side == "left" else raw.right_angles
        if acts is None:
            continue
        if layout.normalised and acts.shape[1] == 12:
            emb = registry.get(hand)
            prefix = "L_" if side == "left" else "R_"
            order = [f"{prefix}{p}_joint" for p in HE_INSPIRE_ACTION_PARTS]
            action[hand] = acts[:, [order.index(j) for j in emb.joint_names]]
        else:
            action[hand] = layout.from_unitree(acts)
    return q, (action or None)


def to_episode(src: TaskSource, raw: RawEpisode, K: np.ndarray | None = None, T_torso_cam: np.ndarray | None = None,
               task: str | None = None, strict: bool = False, hand_order: str = "left-first") -> Episode:
    """Decode the colour frames and place both hands in the head camera: a dexworld :class:`Episode` at 30 Hz."""
    frames = []
    for t, rel in enumerate(raw.images):
        frames.append(load_image(src, rel, f"{src.path.name}:{raw.name} frame {t}"))
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise HEFormatError(f"{src.path.name}:{raw.name}: colour images change size within the episode: {shapes}")
    frames = np.stack(frames)
    spec = robot_spec(raw.robot)
    if K is None:
        from embodiments.transforms import scale_intrinsics

        H, W = frames.shape[1:3]
        K = scale_intrinsics(spec.K, W / spec.image_size[1], H / spec.image_size[0])
    q, action = hand_vectors(raw, hand_order)
    roots = arm_kinematics(spec.name).camera_from_roots(raw.arm_state, T_torso_cam)
    joints = hands_in_camera(q, roots, K, fps=HE_FPS, strict=strict)
    text = task if task is not None else src.task_name.replace("_", " ")
    return Episode(frames=frames, joints=joints, q=q, action=action, task=text,
                   source=src.label(raw.name), T_cam_root=roots)


def iter_episodes(path: str | os.PathLike, robot: str | None = None, K: np.ndarray | None = None,
                  T_torso_cam: np.ndarray | None = None, task: str | None = None, with_depth: bool = False,
                  skip_bad: bool = False, report: IngestReport | None = None,
                  hand_order: str = "left-first") -> Iterator[Episode]:
    """Episodes of a task folder or zip, in episode order. ``with_depth`` also checks every depth file decodes;
    ``hand_order``: see :func:`hand_vectors`."""
    src = TaskSource(path)
    try:
        for name in src.episodes:
            try:
                raw = parse_episode(src, name, robot)
                if with_depth:
                    for t, rel in enumerate(raw.depths):
                        if rel is None:
                            raise HEFormatError(f"{src.path.name}:{name} frame {t}: missing field depth")
                        load_depth(src, rel, f"{src.path.name}:{name} frame {t}")
                ep = to_episode(src, raw, K, T_torso_cam, task, hand_order=hand_order)
            except HEFormatError as e:
                if not skip_bad:
                    raise
                if report is not None:
                    report.failed.append((name, str(e)))
                continue
            if report is not None:
                report.episodes.append(ep.source)
            yield ep
    finally:
        src.close()


def ingest(path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
           lerobot_root: str | os.PathLike | None = None, repo_id: str | None = None, fps: float | None = 16.0,
           num_frames: int | None = 81, stride: int | None = None, robot: str | None = None,
           K: np.ndarray | None = None, T_torso_cam: np.ndarray | None = None, task: str | None = None,
           with_depth: bool = False, skip_bad: bool = False,
           progress: Callable[[Episode], None] | None = None, hand_order: str = "left-first") -> IngestReport:
    """Raw task → training clips (``fps``, windows of ``num_frames``) in ``out_dir`` and/or a LeRobot dataset at
    30 Hz in ``lerobot_root``. Every episode is read once."""
    if out_dir is None and lerobot_root is None:
        raise ValueError("nothing to write: give out_dir (clips) and/or lerobot_root")
    report = IngestReport()
    eps = iter_episodes(path, robot, K, T_torso_cam, task, with_depth, skip_bad, report, hand_order)
    return write_episodes(eps, report, out_dir, lerobot_root, repo_id, int(HE_FPS), fps=fps, num_frames=num_frames,
                          stride=stride, skip_bad=skip_bad, progress=progress)
