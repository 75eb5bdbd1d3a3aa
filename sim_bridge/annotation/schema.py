"""Input schema of the annotation pipeline: per-frame hand detections of one egocentric video.

A detector + 3D hand reconstructor (e.g. a box detector followed by a MANO regressor) gives, for every frame,
a list of hands. Each hand has a handedness label (``"left"``/``"right"``) and its confidence in [0, 1], a pixel
bounding box ``[x0, y0, x1, y1]``, and either MANO parameters (``pose`` (45,) axis-angle of the 15 finger joints,
``betas`` (10,), ``global_orient`` (3,), ``transl`` (3,) camera-frame metres) or ``joints`` (21, 3): 3D joints
in the camera frame (OpenCV axes, metres, MANO/OpenPose order) — or both. Per video: the video's path, fps and
pixel intrinsics K.

Three file forms carry the same content (see docs/annotation.md for examples):

- JSON, per frame (easy to write by hand or from any detector)::

    {"video": "kitchen.mp4", "fps": 30, "intrinsics": {"fx": 600, "fy": 600, "cx": 320, "cy": 240},
     "num_frames": 300,
     "frames": [{"frame": 0, "hands": [{"handedness": "right", "handedness_conf": 0.98,
                                         "bbox": [300, 200, 420, 330],
                                         "mano": {"pose": [...45], "betas": [...10],
                                                  "global_orient": [...3], "transl": [...3]}}]}]}

  A file holds one such video object, or ``{"videos": [...]}`` with several.
- NPZ, columnar (one row per detection): ``frame`` (D,) int, ``handedness`` (D,) (0/1 or "left"/"right"),
  ``handedness_conf`` (D,), ``bbox`` (D, 4), optional ``joints`` (D, 21, 3), optional ``mano_pose`` (D, 45),
  ``mano_betas`` (D, 10), ``mano_global_orient`` (D, 3), ``mano_transl`` (D, 3); scalars ``video``, ``fps``,
  ``num_frames``, ``K`` (3, 3), optional ``width``, ``height``, ``video_id``. NaN rows mean "not given".
- HDF5: the NPZ datasets in the root group (one video) or in one group per video; scalars may be attributes.

In memory every form becomes :class:`VideoDetections` (columnar numpy arrays). Structural errors raise a
``ValueError`` naming the file, video, frame, hand and field; a hand whose numbers are NaN/inf is dropped and
counted (``VideoDetections.nonfinite_frames``), because detectors emit NaN for failed fits and one bad fit must
not cost a whole video.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np

from embodiments.io_utils import atomic_path, h5_writer, plain_name
from embodiments.layout import NUM_HAND_JOINTS, SIDES

MANO_FIELDS: dict[str, int] = {"pose": 45, "betas": 10, "global_orient": 3, "transl": 3}
SCHEMA_NAME = "dexworld.hand_detections"
SCHEMA_VERSION = 1


@dataclasses.dataclass(frozen=True, eq=False)
class VideoDetections:
    """All hand detections of one video, one row per detection (D rows), sorted by frame.

    Attributes:
        video: path of the video file (relative paths are resolved against the detections file's folder).
        fps: frames per second of the video.
        K: (3, 3) pixel intrinsics of the camera.
        num_frames: frames in the video (frames without a row have no detections).
        frame: (D,) int frame index of each detection.
        handedness: (D,) int8, 0 = left, 1 = right (the detector's label).
        handedness_conf: (D,) float32 confidence of that label in [0, 1].
        bbox: (D, 4) float32 pixel box [x0, y0, x1, y1].
        joints: (D, 21, 3) float32 camera-frame joints; rows without joints are NaN.
        mano: dict of MANO arrays ``pose`` (D, 45), ``betas`` (D, 10), ``global_orient`` (D, 3),
            ``transl`` (D, 3); rows without MANO are NaN. Empty dict when no detection has MANO.
        video_id: short name used for output files.
        width, height: frame size in pixels when known (else read from the video).
        nonfinite_frames: frames in which at least one hand was dropped for NaN/inf numbers.
        nonfinite_hands: how many hands were dropped for NaN/inf numbers.
    """

    video: str
    fps: float
    K: np.ndarray
    num_frames: int
    frame: np.ndarray
    handedness: np.ndarray
    handedness_conf: np.ndarray
    bbox: np.ndarray
    joints: np.ndarray
    mano: dict[str, np.ndarray]
    video_id: str = ""
    width: int | None = None
    height: int | None = None
    nonfinite_frames: tuple[int, ...] = ()
    nonfinite_hands: int = 0

    def __post_init__(self) -> None:
        if not self.video_id:
            object.__setattr__(self, "video_id", Path(self.video).stem or "video")

    @property
    def num_detections(self) -> int:
        return int(self.frame.shape[0])

    @property
    def has_joints(self) -> np.ndarray:
        """(D,) rows whose 21 joints are given."""
        return np.isfinite(self.joints).all(axis=(1, 2))

    @property
    def has_mano(self) -> np.ndarray:
        """(D,) rows whose MANO parameters are given."""
        if not self.mano:
            return np.zeros(self.num_detections, bool)
        return np.stack([np.isfinite(v).all(-1) for v in self.mano.values()]).all(0)

    def detections_per_frame(self) -> np.ndarray:
        """(num_frames,) int: how many hands the detector reported in each frame."""
        return np.bincount(self.frame, minlength=self.num_frames)[: self.num_frames]

    def translations(self) -> np.ndarray:
        """(D, 3) each hand's 3D position used for tracking: the wrist joint where joints are given, else the
        MANO camera translation. (After :func:`~sim_bridge.annotation.pipeline.detection_joints` every row has
        joints, so a video is tracked on wrists throughout.)"""
        t = self.joints[:, 0].copy()
        if self.mano:
            use = ~self.has_joints
            t[use] = self.mano["transl"][use]
        return t

    def with_joints(self, joints: np.ndarray) -> VideoDetections:
        """A copy whose ``joints`` are replaced (e.g. computed from MANO)."""
        return dataclasses.replace(self, joints=np.asarray(joints, np.float32))

    # ------------------------------------------------------------------ writing
    def to_json_dict(self) -> dict:
        """The per-frame JSON form (see the module docstring)."""
        frames: dict[int, list] = {}
        has_j, has_m = self.has_joints, self.has_mano
        for i in range(self.num_detections):
            hand = {"handedness": SIDES[int(self.handedness[i])],
                    "handedness_conf": float(self.handedness_conf[i]),
                    "bbox": [float(v) for v in self.bbox[i]]}
            if has_j[i]:
                hand["joints"] = self.joints[i].astype(float).round(6).tolist()
            if has_m[i]:
                hand["mano"] = {k: self.mano[k][i].astype(float).round(6).tolist() for k in MANO_FIELDS}
            frames.setdefault(int(self.frame[i]), []).append(hand)
        K = self.K
        out = {"schema": SCHEMA_NAME, "version": SCHEMA_VERSION, "video": self.video, "video_id": self.video_id,
               "fps": self.fps, "num_frames": self.num_frames,
               "intrinsics": {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2]},
               "frames": [{"frame": f, "hands": frames[f]} for f in sorted(frames)]}
        if self.width is not None and self.height is not None:
            out.update(width=self.width, height=self.height)
        return out

    def _columns(self) -> dict[str, np.ndarray]:
        cols = {"frame": self.frame, "handedness": self.handedness, "handedness_conf": self.handedness_conf,
                "bbox": self.bbox, "joints": self.joints, "K": self.K,
                "fps": np.float64(self.fps), "num_frames": np.int64(self.num_frames),
                "video": np.str_(self.video), "video_id": np.str_(self.video_id)}
        cols.update({f"mano_{k}": v for k, v in self.mano.items()})
        if self.width is not None and self.height is not None:
            cols.update(width=np.int64(self.width), height=np.int64(self.height))
        return cols


def save_detections(path: str | os.PathLike, videos: VideoDetections | list[VideoDetections]) -> Path:
    """Write detections as ``.json``, ``.npz`` (one video) or ``.h5``/``.hdf5`` (one group per video), atomically."""
    path = Path(path)
    videos = [videos] if isinstance(videos, VideoDetections) else list(videos)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".json":
            doc = videos[0].to_json_dict() if len(videos) == 1 else {
                "schema": SCHEMA_NAME, "version": SCHEMA_VERSION, "videos": [v.to_json_dict() for v in videos]}
            tmp.write_text(json.dumps(doc))
        elif suffix == ".npz":
            if len(videos) != 1:
                raise ValueError("an .npz detections file holds one video; use .h5 or .json for several")
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **videos[0]._columns())
        elif suffix in (".h5", ".hdf5"):
            with h5_writer(tmp) as f:
                f.attrs.update(schema=SCHEMA_NAME, version=SCHEMA_VERSION)
                for v in videos:
                    g = f.create_group(v.video_id)
                    for k, a in v._columns().items():
                        if a.ndim == 0:
                            g.attrs[k] = a.item()
                        else:
                            g.create_dataset(k, data=a)
        else:
            raise ValueError(f"unknown detections file type {path.suffix!r}; use .json, .npz, .h5 or .hdf5")
    return path


# ====================================================================== reading
def load_detections(path: str | os.PathLike) -> list[VideoDetections]:
    """Read a detections file (``.json``, ``.npz``, ``.h5``/``.hdf5``) into one :class:`VideoDetections` per video.

    Raises ``ValueError`` naming the file, video, frame, hand and field for malformed content.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no detections file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: top level must be an object with 'video' or 'videos'")
        if "videos" in doc:
            if not isinstance(doc["videos"], list) or not doc["videos"]:
                raise ValueError(f"{path}: field 'videos' must be a non-empty list of video objects")
            videos = [_parse_json_video(v, f"{path}: videos[{i}]") for i, v in enumerate(doc["videos"])]
        else:
            videos = [_parse_json_video(doc, str(path))]
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            cols = {k: f[k] for k in f.files}
        videos = [_from_columns(cols, str(path))]
    elif suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            groups = [("", f)] if "frame" in f else [(k, f[k]) for k in f if isinstance(f[k], h5py.Group)]
            if not groups:
                raise ValueError(f"{path}: no detections found; expected datasets 'frame', 'handedness', … in the "
                                 "root group or in one group per video")
            videos = []
            for name, g in groups:
                cols = {k: g[k][()] for k in g if isinstance(g[k], h5py.Dataset)}
                cols.update({k: np.asarray(v) for k, v in g.attrs.items() if k not in cols})
                if name and "video_id" not in cols:
                    cols["video_id"] = np.str_(name)
                videos.append(_from_columns(cols, f"{path}:{g.name}"))
    else:
        raise ValueError(f"unknown detections file type {path.suffix!r}; use .json, .npz, .h5 or .hdf5")
    for v in videos:  # it names the clip files: a path here would write outside the output folder
        plain_name(v.video_id, f"{path}: video '{v.video}': field 'video_id'")
    base = path.parent
    return [v if Path(v.video).is_absolute() else dataclasses.replace(v, video=str(base / v.video))
            for v in videos]


def _require(obj: dict, name: str, where: str, expected: str):
    if not isinstance(obj, dict) or name not in obj:
        raise ValueError(f"{where}: missing field '{name}' ({expected})")
    return obj[name]


def _number(value, where: str, name: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: field '{name}' must be a number, got {value!r}")
    value = float(value)
    if positive and not (math.isfinite(value) and value > 0):
        raise ValueError(f"{where}: field '{name}' must be a positive number, got {value}")
    return value


def _array(value, shape: tuple[int, ...], where: str, name: str, alt_shapes: tuple = ()) -> np.ndarray:
    """Numbers of the given shape (NaN allowed: the caller decides what a non-finite value means)."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: field '{name}' must be numbers of shape {shape}, got {str(value)[:60]}") from None
    if a.shape != shape:
        if a.shape in alt_shapes:
            a = a.reshape(shape)
        else:
            raise ValueError(f"{where}: field '{name}' must have shape {shape}, got {a.shape}")
    return a


def _intrinsics(doc: dict, where: str) -> np.ndarray:
    if "intrinsics" in doc:
        value, name = doc["intrinsics"], "intrinsics"
    elif "K" in doc:
        value, name = doc["K"], "K"
    else:
        raise ValueError(f"{where}: missing field 'intrinsics' ({{fx, fy, cx, cy}} or a 3×3 matrix 'K')")
    if isinstance(value, dict):
        fx, fy, cx, cy = (_number(_require(value, k, f"{where}: {name}", "pixels"), where, f"{name}.{k}")
                          for k in ("fx", "fy", "cx", "cy"))
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    else:
        K = _array(value, (3, 3), where, name)
    return _check_K(K, where, name)


def _check_K(K: np.ndarray, where: str, name: str = "K") -> np.ndarray:
    K = np.asarray(K, np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"{where}: field '{name}' must be a 3×3 intrinsics matrix, got shape {K.shape}")
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], [0, 0, 1]):
        raise ValueError(f"{where}: field '{name}' must be finite intrinsics [[fx,0,cx],[0,fy,cy],[0,0,1]] with "
                         f"fx, fy > 0, got {K.tolist()}")
    return K


def _handedness(value, where: str) -> int:
    if isinstance(value, str) and value.lower() in SIDES:
        return SIDES.index(value.lower())
    raise ValueError(f"{where}: field 'handedness' must be 'left' or 'right', got {value!r}")


def _parse_json_video(doc: dict, where: str) -> VideoDetections:
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: a video must be an object with 'video', 'fps', 'intrinsics', 'frames'")
    video = _require(doc, "video", where, "path of the video file")
    if not isinstance(video, str) or not video:
        raise ValueError(f"{where}: field 'video' must be a non-empty path string, got {video!r}")
    where = f"{where}: video '{video}'"
    fps = _number(_require(doc, "fps", where, "frames per second"), where, "fps", positive=True)
    K = _intrinsics(doc, where)
    frames = _require(doc, "frames", where, "list of {frame, hands}")
    if not isinstance(frames, list):
        raise ValueError(f"{where}: field 'frames' must be a list of {{'frame': int, 'hands': [...]}}")
    rows: list[tuple] = []
    seen: set[int] = set()
    nonfinite_frames: set[int] = set()
    nonfinite_hands = 0
    any_mano = False
    for n, fr in enumerate(frames):
        fwhere = f"{where}: frames[{n}]"
        idx = _require(fr, "frame", fwhere, "integer frame index")
        if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
            raise ValueError(f"{fwhere}: field 'frame' must be a non-negative integer, got {idx!r}")
        fwhere = f"{where}: frame {idx}"
        if idx in seen:
            raise ValueError(f"{fwhere}: listed twice in 'frames'")
        seen.add(idx)
        hands = _require(fr, "hands", fwhere, "list of hand detections")
        if not isinstance(hands, list):
            raise ValueError(f"{fwhere}: field 'hands' must be a list of hand detections")
        for h, hand in enumerate(hands):
            hwhere = f"{fwhere}, hand {h}"
            if not isinstance(hand, dict):
                raise ValueError(f"{hwhere}: a hand must be an object with 'handedness', 'bbox', 'mano'/'joints'")
            side = _handedness(_require(hand, "handedness", hwhere, "'left' or 'right'"), hwhere)
            conf = _number(_require(hand, "handedness_conf", hwhere, "confidence in [0, 1]"), hwhere,
                           "handedness_conf")
            bbox = _array(_require(hand, "bbox", hwhere, "[x0, y0, x1, y1] pixels"), (4,), hwhere, "bbox")
            joints = np.full((NUM_HAND_JOINTS, 3), np.nan)
            mano = {k: np.full(n_, np.nan) for k, n_ in MANO_FIELDS.items()}
            if "joints" not in hand and "mano" not in hand:
                raise ValueError(f"{hwhere}: needs field 'mano' ({{pose, betas, global_orient, transl}}) or "
                                 f"'joints' ({NUM_HAND_JOINTS}×3 camera-frame metres)")
            if "joints" in hand:
                joints = _array(hand["joints"], (NUM_HAND_JOINTS, 3), hwhere, "joints",
                                alt_shapes=((NUM_HAND_JOINTS * 3,),))
            if "mano" in hand:
                m = hand["mano"]
                if not isinstance(m, dict):
                    raise ValueError(f"{hwhere}: field 'mano' must be an object with {', '.join(MANO_FIELDS)}")
                for k, n_ in MANO_FIELDS.items():
                    alt = ((15, 3),) if k == "pose" else ()
                    mano[k] = _array(_require(m, k, f"{hwhere}: mano", f"{n_} numbers"), (n_,), hwhere,
                                     f"mano.{k}", alt_shapes=alt)
                any_mano = True
            numbers = [np.asarray([conf]), bbox] + ([joints] if "joints" in hand else []) + (
                list(mano.values()) if "mano" in hand else [])
            if not all(np.isfinite(a).all() for a in numbers):
                nonfinite_frames.add(idx)
                nonfinite_hands += 1
                continue
            _check_hand(conf, bbox, hwhere)
            rows.append((idx, side, conf, bbox, joints, mano))
    num_frames = doc.get("num_frames", max(seen, default=-1) + 1)
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 0:
        raise ValueError(f"{where}: field 'num_frames' must be a non-negative integer, got {num_frames!r}")
    if seen and max(seen) >= num_frames:
        raise ValueError(f"{where}: frame {max(seen)} is past 'num_frames' = {num_frames}")
    rows.sort(key=lambda r: r[0])
    D = len(rows)
    mano_cols = ({k: np.array([r[5][k] for r in rows], np.float32).reshape(D, n_) for k, n_ in MANO_FIELDS.items()}
                 if any_mano else {})
    width, height = (_optional_int(doc, k, where) for k in ("width", "height"))
    return VideoDetections(
        video=video, fps=fps, K=K, num_frames=num_frames,
        frame=np.array([r[0] for r in rows], np.int64),
        handedness=np.array([r[1] for r in rows], np.int8),
        handedness_conf=np.array([r[2] for r in rows], np.float32),
        bbox=np.array([r[3] for r in rows], np.float32).reshape(D, 4),
        joints=np.array([r[4] for r in rows], np.float32).reshape(D, NUM_HAND_JOINTS, 3),
        mano=mano_cols, video_id=str(doc.get("video_id", "")), width=width, height=height,
        nonfinite_frames=tuple(sorted(nonfinite_frames)), nonfinite_hands=nonfinite_hands)


def _optional_int(doc: dict, key: str, where: str) -> int | None:
    v = doc.get(key)
    if v is None:
        return None
    v = v.item() if isinstance(v, np.generic | np.ndarray) else v
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"{where}: field '{key}' must be a positive integer (pixels), got {v!r}")
    return v


def _check_hand(conf: float, bbox: np.ndarray, where: str) -> None:
    if not 0.0 <= conf <= 1.0:
        raise ValueError(f"{where}: field 'handedness_conf' must be in [0, 1], got {conf}")
    if bbox[2] < bbox[0] or bbox[3] < bbox[1]:
        raise ValueError(f"{where}: field 'bbox' must be [x0, y0, x1, y1] with x1 >= x0 and y1 >= y0, "
                         f"got {bbox.tolist()}")


def _scalar(cols: dict, key: str, where: str, expected: str):
    if key not in cols:
        raise ValueError(f"{where}: missing field '{key}' ({expected})")
    a = np.asarray(cols[key])
    if a.size != 1:
        raise ValueError(f"{where}: field '{key}' must be a single value ({expected}), got shape {a.shape}")
    v = a.reshape(()).item()
    return v.decode() if isinstance(v, bytes) else v


def _from_columns(cols: dict, where: str) -> VideoDetections:
    """Columnar (NPZ / HDF5) detections → :class:`VideoDetections`, with the same checks as JSON."""
    video = str(_scalar(cols, "video", where, "path of the video file"))
    where = f"{where}: video '{video}'"
    fps = _number(_scalar(cols, "fps", where, "frames per second"), where, "fps", positive=True)
    K = _check_K(np.asarray(_require(cols, "K", where, "3×3 intrinsics")), where)
    num_frames = _scalar(cols, "num_frames", where, "frames in the video")
    if not isinstance(num_frames, int) or num_frames < 0:
        raise ValueError(f"{where}: field 'num_frames' must be a non-negative integer, got {num_frames!r}")
    frame = np.asarray(_require(cols, "frame", where, "(D,) frame index per detection"))
    if frame.ndim != 1 or not (np.issubdtype(frame.dtype, np.integer) or frame.size == 0):
        raise ValueError(f"{where}: field 'frame' must be a 1-D integer array (D,), got {frame.dtype} {frame.shape}")
    D = frame.shape[0]
    bad = np.flatnonzero((frame < 0) | (frame >= num_frames))
    if bad.size:
        raise ValueError(f"{where}: frame {int(frame[bad[0]])} (row {bad[0]}): field 'frame' must be in "
                         f"[0, num_frames={num_frames})")

    def col(name: str, shape: tuple[int, ...], required: bool = True) -> np.ndarray:
        if name not in cols:
            if required:
                raise ValueError(f"{where}: missing field '{name}' of shape {(D, *shape)}")
            return np.full((D, *shape), np.nan)
        a = np.asarray(cols[name])
        if a.shape != (D, *shape):
            raise ValueError(f"{where}: field '{name}' must have shape {(D, *shape)} (one row per detection), "
                             f"got {a.shape}")
        if a.dtype.kind not in "fiu":
            raise ValueError(f"{where}: field '{name}' must be numeric, got dtype {a.dtype}")
        return a.astype(np.float64)

    hraw = np.asarray(_require(cols, "handedness", where, "(D,) 0/1 or 'left'/'right'"))
    if hraw.shape != (D,):
        raise ValueError(f"{where}: field 'handedness' must have shape {(D,)}, got {hraw.shape}")
    if hraw.dtype.kind in "US":
        labels = np.char.lower(hraw.astype(str))
        handedness = np.where(labels == "right", 1, np.where(labels == "left", 0, -1))
    else:
        handedness = np.where(np.isin(hraw, (0, 1)), hraw, -1).astype(np.int64)
    bad = np.flatnonzero(handedness < 0)
    if bad.size:
        raise ValueError(f"{where}: frame {int(frame[bad[0]])} (row {bad[0]}): field 'handedness' must be 0/'left' "
                         f"or 1/'right', got {hraw[bad[0]]!r}")
    conf = col("handedness_conf", ())
    bbox = col("bbox", (4,))
    joints = col("joints", (NUM_HAND_JOINTS, 3), required=False)
    mano_given = [f"mano_{k}" in cols for k in MANO_FIELDS]
    if any(mano_given) and not all(mano_given):
        missing = [f"mano_{k}" for k, g in zip(MANO_FIELDS, mano_given, strict=True) if not g]
        raise ValueError(f"{where}: MANO columns are incomplete; missing {', '.join(missing)}")
    mano = {k: col(f"mano_{k}", (n,)) for k, n in MANO_FIELDS.items()} if all(mano_given) else {}
    has_j = np.isfinite(joints).all(axis=(1, 2))
    has_m = np.stack([np.isfinite(v).all(-1) for v in mano.values()]).all(0) if mano else np.zeros(D, bool)
    ok = (has_j | has_m) & np.isfinite(conf) & np.isfinite(bbox).all(-1)
    # Checked on whole columns; the first bad row is re-checked by _check_hand for its message.
    bad = np.flatnonzero(ok & ((conf < 0) | (conf > 1) | (bbox[:, 2] < bbox[:, 0]) | (bbox[:, 3] < bbox[:, 1])))
    if bad.size:
        i = bad[0]
        _check_hand(float(conf[i]), bbox[i], f"{where}: frame {int(frame[i])} (row {i})")
    drop = ~ok
    order = np.argsort(frame[ok], kind="stable")
    keep = np.flatnonzero(ok)[order]
    return VideoDetections(
        video=video, fps=fps, K=K, num_frames=int(num_frames), frame=frame[keep].astype(np.int64),
        handedness=handedness[keep].astype(np.int8), handedness_conf=conf[keep].astype(np.float32),
        bbox=bbox[keep].astype(np.float32), joints=joints[keep].astype(np.float32),
        mano={k: v[keep].astype(np.float32) for k, v in mano.items()},
        video_id=str(cols["video_id"].item()) if "video_id" in cols else "",
        width=_optional_int({k: cols.get(k) for k in ("width", "height")}, "width", where),
        height=_optional_int({k: cols.get(k) for k in ("width", "height")}, "height", where),
        nonfinite_frames=tuple(sorted(set(frame[drop].tolist()))), nonfinite_hands=int(drop.sum()))
