"""Unitree's raw teleoperation recordings (``xr_teleoperate`` / ``avp_teleoperate`` ``EpisodeWriter``) → dexworld
episodes with both hands placed in the head camera through the arm chain.

Layout (one folder per episode, usually ``<task>/episode_0000/``)::

    data.json = {"info": {..., "image": {"width", "height", "fps"}, "joint_names": {...}},
                 "text": {"goal", "desc", "steps"},
                 "data": [{"idx", "colors": {"color_0": "colors/000000_color_0.jpg", ...}, "depths": {...},
                           "states": {"left_arm": {"qpos": [7], ...}, "right_arm": {...},
                                      "left_ee": {"qpos": [7 Dex3 | 6 Inspire]}, "right_ee": {...}, "body": ...},
                                      (avp_teleoperate: "left_hand" / "right_hand" instead of *_ee)
                           "actions": {same keys}, ...}, ...]}
    colors/000000_color_0.jpg …

Arm qpos follow Unitree's arm order (shoulder pitch/roll/yaw, elbow, wrist roll/pitch/yaw). Hand qpos: Dex3 motor
order in radians, Inspire the normalised 1 = open value (the same vectors unitree_IL_lerobot concatenates into its
``observation.state``). ``color_0`` is the head camera (unitree_IL_lerobot maps it to ``cam_left_high``/``cam_high``).
Frames are taken at ``info.image.fps`` (30 Hz by default).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .hand_pose import hands_in_camera
from .ingest import IngestReport, write_episodes
from .lerobot_io import Episode
from .robots import arm_kinematics, robot_spec, robot_with_hands
from .unitree import unitree_layout

XR_FPS = 30.0
HEAD_COLOR = "color_0"


class XRFormatError(ValueError):
    """A teleoperation episode that does not follow the EpisodeWriter layout; the message names episode and frame."""


@dataclasses.dataclass
class XREpisode:
    """The validated low-dimensional part of one episode; arrays are (T, n)."""

    name: str
    folder: Path
    fps: float
    task: str
    arm: np.ndarray
    ee: dict[str, np.ndarray]
    ee_action: dict[str, np.ndarray] | None
    images: list[Path]


def find_episodes(path: str | os.PathLike) -> list[Path]:
    """Episode folders under ``path``: the folder itself if it holds ``data.json``, else its ``*/data.json``."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no teleoperation recording folder at {path}")
    if (path / "data.json").is_file():
        return [path]
    found = sorted(p.parent for p in path.glob("*/data.json"))
    if not found:
        raise XRFormatError(f"{path}: no episode_*/data.json found")
    return found


def _qpos(frame: dict, group: str, parts: tuple[str, ...], n: tuple[int, ...], who: str) -> np.ndarray:
    """``frame[group][part]["qpos"]`` of the first of ``parts`` present, validated to hold ``n`` numbers."""
    node = frame.get(group)
    part = next((p for p in parts if p in node), parts[0]) if isinstance(node, dict) else parts[0]
    node = node.get(part) if isinstance(node, dict) else None
    node = node.get("qpos") if isinstance(node, dict) else None
    if node is None:
        alt = f" (or {', '.join(parts[1:])})" if len(parts) > 1 else ""
        raise XRFormatError(f"{who}: missing {group}.{part}.qpos{alt}")
    try:
        v = np.asarray(node, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise XRFormatError(f"{who}: {group}.{part}.qpos is not a list of numbers") from None
    if v.shape[0] not in n:
        raise XRFormatError(f"{who}: {group}.{part}.qpos has {v.shape[0]} values, expected "
                            f"{' or '.join(map(str, n))}")
    if not np.isfinite(v).all():
        raise XRFormatError(f"{who}: {group}.{part}.qpos contains NaN or inf")
    return v


def _hand_keys(side: str) -> tuple[str, str]:
    """Hand entries of a side: ``<side>_ee`` (xr_teleoperate) or ``<side>_hand`` (avp_teleoperate)."""
    return f"{side}_ee", f"{side}_hand"


def parse_episode(folder: str | os.PathLike, camera: str = HEAD_COLOR) -> XREpisode:
    """Read and validate ``folder/data.json``; image paths must stay inside ``folder``."""
    folder = Path(folder)
    who = folder.name
    try:
        doc = json.loads((folder / "data.json").read_text())
    except FileNotFoundError:
        raise XRFormatError(f"{who}: data.json is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise XRFormatError(f"{who}/data.json is not valid JSON (truncated?): {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list) or not doc["data"]:
        raise XRFormatError(f"{who}/data.json must be an object with a non-empty 'data' list (EpisodeWriter layout)")
    info = doc.get("info") if isinstance(doc.get("info"), dict) else {}
    fps = float((info.get("image") or {}).get("fps") or XR_FPS)
    text = doc.get("text") if isinstance(doc.get("text"), dict) else {}
    arm, ee, act, images = [], {"left": [], "right": []}, {"left": [], "right": []}, []
    has_act = all(isinstance(f, dict) and isinstance(f.get("actions"), dict)
                  and all(any(isinstance(f["actions"].get(k), dict) for k in _hand_keys(s)) for s in ("left", "right"))
                  for f in doc["data"])
    root = folder.resolve()
    for t, f in enumerate(doc["data"]):
        wf = f"{who} frame {t}"
        if not isinstance(f, dict):
            raise XRFormatError(f"{wf}: record is not an object")
        arm.append(np.concatenate([_qpos(f, "states", (f"{s}_arm",), (7,), wf) for s in ("left", "right")]))
        for s in ("left", "right"):
            ee[s].append(_qpos(f, "states", _hand_keys(s), (6, 7), wf))
            if has_act:
                act[s].append(_qpos(f, "actions", _hand_keys(s), (ee[s][0].shape[0],), wf))
        rel = (f.get("colors") or {}).get(camera) if isinstance(f.get("colors"), dict) else None
        if not isinstance(rel, str) or not rel:
            raise XRFormatError(f"{wf}: missing colour image colors.{camera}")
        path = (folder / rel).resolve()
        if not path.is_relative_to(root):
            raise XRFormatError(f"{wf}: colour image path {rel!r} leaves the episode folder")
        images.append(path)
    sizes = {s: {v.shape[0] for v in ee[s]} for s in ee}
    if any(len(v) != 1 for v in sizes.values()) or sizes["left"] != sizes["right"]:
        raise XRFormatError(f"{who}: hand qpos lengths change within the episode or differ between hands: {sizes}")
    return XREpisode(name=who, folder=folder, fps=fps, task=str(text.get("goal") or ""), arm=np.stack(arm),
                     ee={f"{s}": np.stack(v) for s, v in ee.items()},
                     ee_action={s: np.stack(v) for s, v in act.items()} if has_act else None, images=images)


def hands_for(n_values: int) -> tuple[str, str]:
    """Registered hands for a hand qpos length: 7 → Dex3-1, 6 → Inspire."""
    return ("dex3_left", "dex3_right") if n_values == 7 else ("inspire_left", "inspire_right")


def _load_image(path: Path, who: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise XRFormatError(f"{who}: colour image {path.name} is missing") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise XRFormatError(f"{who}: colour image {path.name} cannot be decoded ({e})") from None


def to_episode(raw: XREpisode, robot: str = "g1", K: np.ndarray | None = None,
               T_torso_cam: np.ndarray | None = None, task: str | None = None, source: str | None = None,
               strict: bool = False) -> Episode:
    """Decode the head-camera frames and place both hands in that camera: a dexworld :class:`Episode`."""
    hands = hands_for(raw.ee["left"].shape[1])
    try:
        spec = robot_spec(robot_with_hands(robot, hands))
    except ValueError as e:
        raise XRFormatError(f"{raw.name}: {e}") from None
    frames = [_load_image(p, f"{raw.name} frame {t}") for t, p in enumerate(raw.images)]
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise XRFormatError(f"{raw.name}: colour images change size within the episode: {shapes}")
    frames = np.stack(frames)
    if K is None:
        from embodiments.transforms import scale_intrinsics

        H, W = frames.shape[1:3]
        K = scale_intrinsics(spec.K, W / spec.image_size[1], H / spec.image_size[0])
    q, action = {}, {} if raw.ee_action is not None else None
    for side, hand in zip(("left", "right"), hands, strict=True):
        layout = unitree_layout(hand)
        try:
            q[hand] = layout.from_unitree(raw.ee[side])
            if action is not None:
                action[hand] = layout.from_unitree(raw.ee_action[side])
        except ValueError as e:
            raise XRFormatError(f"{raw.name}: {side}_ee: {e}") from None
    roots = arm_kinematics(spec.name).camera_from_roots(raw.arm, T_torso_cam)
    joints = hands_in_camera(q, roots, K, fps=raw.fps, strict=strict)
    return Episode(frames=frames, joints=joints, q=q, action=action, task=task if task is not None else raw.task,
                   source=source or raw.name, T_cam_root=roots)


def iter_episodes(path: str | os.PathLike, robot: str = "g1", K: np.ndarray | None = None,
                  T_torso_cam: np.ndarray | None = None, task: str | None = None, camera: str = HEAD_COLOR,
                  skip_bad: bool = False, report: IngestReport | None = None) -> Iterator[Episode]:
    """Episodes of a recording folder (a task folder of ``episode_*`` or one episode), in name order."""
    path = Path(path)
    for folder in find_episodes(path):
        label = f"{path.name}/{folder.name}" if folder != path else folder.name
        try:
            ep = to_episode(parse_episode(folder, camera), robot, K, T_torso_cam, task, source=label)
        except XRFormatError as e:
            if not skip_bad:
                raise
            if report is not None:
                report.failed.append((label, str(e)))
            continue
        if report is not None:
            report.episodes.append(ep.source)
        yield ep


def ingest(path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
           lerobot_root: str | os.PathLike | None = None, repo_id: str | None = None, robot: str = "g1",
           fps: float | None = 16.0, num_frames: int | None = 81, stride: int | None = None,
           K: np.ndarray | None = None, T_torso_cam: np.ndarray | None = None, task: str | None = None,
           camera: str = HEAD_COLOR, skip_bad: bool = False,
           progress: Callable[[Episode], None] | None = None) -> IngestReport:
    """Recording folder → training clips in ``out_dir`` and/or a LeRobot dataset (at the recording's rate) in
    ``lerobot_root``."""
    report = IngestReport()
    eps = iter_episodes(path, robot, K, T_torso_cam, task, camera, skip_bad, report)
    return write_episodes(eps, report, out_dir, lerobot_root, repo_id, None, fps=fps, num_frames=num_frames,
                          stride=stride, skip_bad=skip_bad, progress=progress)
