"""MediaPipe hand landmarks (JSON or npz) → :class:`SparseJoints` of ``mano_left`` / ``mano_right``.

MediaPipe's 21 hand landmarks are in the MANO/OpenPose order of the slots (``WRIST``, ``THUMB_CMC`` …
``PINKY_TIP``). Each detected hand carries a handedness label ("Left"/"Right") and its score. Accepted shapes:

* JSON, a list of frames (or ``{"frames": [...], "fps": 30}``); a frame is ``null``/``{}`` (no hand) or
  - the Tasks API ``HandLandmarkerResult`` as a dict: ``handedness`` (per hand a list of categories
    ``{"category_name" | "categoryName", "score", "index"}``; ``handednesses`` also read), ``hand_world_landmarks`` /
    ``worldLandmarks`` and ``hand_landmarks`` / ``landmarks`` (per hand 21 ``{"x", "y", "z"}``), or
  - the legacy Solutions output through ``MessageToDict``: ``multi_handedness`` (``{"classification": [{"label",
    "score"}]}``), ``multi_hand_world_landmarks`` / ``multi_hand_landmarks`` (``{"landmark": [...]}``).
* npz: ``world_landmarks`` (or ``hand_world_landmarks``) or ``landmarks`` (or ``hand_landmarks``) of shape
  (T, H, 21, 3) or (T, 21, 3), NaN where no hand; ``handedness`` (T, H) labels "Left"/"Right" (or category index:
  0 = Left, 1 = Right); ``handedness_score`` (or ``score``) (T, H); optional ``fps``.

World landmarks (metres, origin near the hand's centre) are used when present, else image landmarks, which need
``image_size`` (normalised x by width, y by height; z on the scale of x) and come out in pixels (frame "image").
MediaPipe assumes a mirrored (selfie) image when it labels handedness; for an unmirrored camera pass
``swap_handedness=True``. Hands below ``min_score`` are dropped; of two hands with one label the likelier is kept.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .layout import NUM_HAND_JOINTS, NUM_SLOTS, side_offset
from .sparse import SparseJoints

_WORLD_KEYS = ("hand_world_landmarks", "worldLandmarks", "world_landmarks", "multi_hand_world_landmarks")
_IMAGE_KEYS = ("hand_landmarks", "landmarks", "multi_hand_landmarks")
_LABELS = {"left": "left", "right": "right"}


def load_mediapipe(path: str | Path, fps: float | None = None, min_score: float = 0.5, swap_handedness: bool = False,
                   image_size: tuple[int, int] | None = None) -> SparseJoints:
    """Read MediaPipe hand landmarks; see the module docstring for the shapes. Errors name the file and what was
    expected."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no MediaPipe landmark file at {path}")
    if path.suffix.lower() == ".json":
        hands, file_fps, world = _read_json(path)
    elif path.suffix.lower() == ".npz":
        hands, file_fps, world = _read_npz(path)
    else:
        raise ValueError(f"{path}: MediaPipe landmarks must be a .json or .npz file, got {path.suffix!r}")
    fps = fps if fps is not None else (file_fps or 30.0)
    T = len(hands)
    if T == 0:
        raise ValueError(f"{path}: no frames")
    pos = np.zeros((T, NUM_SLOTS, 3))
    valid = np.zeros((T, NUM_SLOTS), bool)
    best = np.full((T, 2), -np.inf)
    for t, frame in enumerate(hands):
        for label, score, pts in frame:
            side = _LABELS.get(str(label).lower())
            if side is None:
                raise ValueError(f"{path}: frame {t}: handedness label {label!r}; expected 'Left' or 'Right'")
            if swap_handedness:
                side = "right" if side == "left" else "left"
            k = 0 if side == "left" else 1
            if score < min_score or score <= best[t, k]:
                continue
            best[t, k] = score
            pts = np.asarray(pts, dtype=np.float64)
            if not world:
                if image_size is None:
                    raise ValueError(f"{path}: only image (normalised) landmarks; pass image_size=(width, height) "
                                     "to read them in pixels, or give world landmarks")
                pts = pts * np.array([image_size[0], image_size[1], image_size[0]])
            o = side_offset(side)
            pos[t, o:o + NUM_HAND_JOINTS] = np.nan_to_num(pts)
            valid[t, o:o + NUM_HAND_JOINTS] = np.isfinite(pts).all(-1)
    sides = [s for k, s in enumerate(("left", "right")) if np.isfinite(best[:, k]).any()]
    if not sides:
        raise ValueError(f"{path}: no hand with a handedness score of at least {min_score}")
    return SparseJoints(pos, valid, frame="mediapipe_world" if world else "image", fps=fps,
                        embodiment="+".join(f"mano_{s}" for s in sides))


# ------------------------------------------------------------------------------------------------ JSON
def _read_json(path: Path) -> tuple[list, float | None, bool]:
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    fps = None
    if isinstance(raw, dict) and "frames" in raw:
        fps = raw.get("fps")
        raw = raw["frames"]
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a list of per-frame MediaPipe results (or {{'frames': [...]}})")
    world = any(isinstance(f, dict) and any(f.get(k) for k in _WORLD_KEYS) for f in raw)
    keys = _WORLD_KEYS if world else _IMAGE_KEYS
    frames = []
    for t, f in enumerate(raw):
        if not f:
            frames.append([])
            continue
        if not isinstance(f, dict):
            raise ValueError(f"{path}: frame {t} must be an object (a MediaPipe result) or null")
        marks = next((f[k] for k in keys if f.get(k)), [])
        labels = next((f[k] for k in ("handedness", "handednesses", "multi_handedness") if f.get(k)), None)
        if marks and (labels is None or len(labels) != len(marks)):
            raise ValueError(f"{path}: frame {t} has {len(marks)} hand(s) but "
                             f"{0 if labels is None else len(labels)} handedness entries")
        frames.append([(*_category(c, path, t), _points(m, path, t)) for c, m in zip(labels or [], marks,
                                                                                   strict=True)])
    return frames, fps, world


def _category(entry, path: Path, t: int) -> tuple[str, float]:
    cats = entry.get("classification", entry) if isinstance(entry, dict) else entry
    if isinstance(cats, dict):
        cats = [cats]
    if not cats or not isinstance(cats[0], dict):
        raise ValueError(f"{path}: frame {t}: a handedness entry must hold a category with a label and a score")
    c = max(cats, key=lambda c: c.get("score", 0.0))
    label = c.get("category_name", c.get("categoryName", c.get("label")))
    if label is None:
        raise ValueError(f"{path}: frame {t}: handedness category without category_name/label")
    return label, float(c.get("score", 1.0))


def _points(hand, path: Path, t: int) -> np.ndarray:
    pts = hand.get("landmark", hand.get("landmarks")) if isinstance(hand, dict) else hand
    try:
        arr = np.array([[p["x"], p["y"], p.get("z", 0.0)] for p in pts], dtype=np.float64)
    except (TypeError, KeyError):
        raise ValueError(f"{path}: frame {t}: landmarks must be lists of {{'x', 'y', 'z'}}") from None
    if arr.shape != (NUM_HAND_JOINTS, 3):
        raise ValueError(f"{path}: frame {t}: a hand has {len(arr)} landmarks; MediaPipe hands have "
                         f"{NUM_HAND_JOINTS} (a 25-joint array is the WebXR / Vision Pro layout: use webxr_left/right)")
    return arr


# ------------------------------------------------------------------------------------------------ npz
def _read_npz(path: Path) -> tuple[list, float | None, bool]:
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    key = next((k for k in ("world_landmarks", "hand_world_landmarks") if k in data), None)
    world = key is not None
    key = key or next((k for k in ("landmarks", "hand_landmarks") if k in data), None)
    if key is None:
        raise ValueError(f"{path}: no landmarks; expected 'world_landmarks' or 'landmarks' (T, H, 21, 3)")
    lm = np.asarray(data[key], dtype=np.float64)
    if lm.ndim == 3:
        lm = lm[:, None]
    if lm.ndim != 4 or lm.shape[2:] != (NUM_HAND_JOINTS, 3):
        raise ValueError(f"{path}: '{key}' must have shape (T, H, {NUM_HAND_JOINTS}, 3) or (T, {NUM_HAND_JOINTS}, 3), "
                         f"got {data[key].shape}")
    if "handedness" not in data:
        raise ValueError(f"{path}: no 'handedness' (T, H) labels 'Left'/'Right' (or 0 = Left, 1 = Right)")
    hd = np.asarray(data["handedness"]).reshape(lm.shape[0], -1)
    score_key = next((k for k in ("handedness_score", "score") if k in data), None)
    sc = np.ones(hd.shape) if score_key is None else np.asarray(data[score_key], np.float64).reshape(hd.shape)
    if hd.shape != lm.shape[:2]:
        raise ValueError(f"{path}: 'handedness' must have shape {lm.shape[:2]} (T, H), got {data['handedness'].shape}")
    if hd.dtype.kind in "iuf":
        hd = np.where(hd.astype(int) == 0, "Left", "Right")
    frames = [[(hd[t, h], sc[t, h], lm[t, h]) for h in range(lm.shape[1]) if np.isfinite(lm[t, h]).any()]
              for t in range(lm.shape[0])]
    fps = float(data["fps"]) if "fps" in data else None
    return frames, fps, world
