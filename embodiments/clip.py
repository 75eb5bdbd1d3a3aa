"""The training clip file: frames + camera-frame SparseJoints + K + extras, one HDF5 file per clip.

The contract between the writers in ``sim_bridge`` (synth, ingest, annotate, import) and the reader in
``worldmodel``; it lives here, next to :class:`SparseJoints`, so neither of them imports the other.

File layout (schema version 1)::

    /                 attrs: format="dexworld.clip", schema_version, fps, embodiment, prompt, mirrored
    /frames           uint8 (T, H, W, 3) RGB
    /joints/positions float32 (T, 42, 3) camera frame (OpenCV), metres
    /joints/valid     bool (T, 42)
    /joints/K         float64 (3, 3) or (T, 3, 3) pixel intrinsics of ``frames``
    /prompt_embeds    optional float32 (L, D) precomputed text-encoder output
    /extra/<name>     optional arrays; scalar/str extras are attrs ``extra.<name>``, dicts JSON in ``extra_json.<name>``
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .io_utils import atomic_path, h5_writer
from .sparse import SparseJoints

CLIP_FORMAT = "dexworld.clip"
CLIP_SCHEMA_VERSION = 1


@dataclasses.dataclass
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    joints: SparseJoints
    prompt: str = ""
    prompt_embeds: np.ndarray | None = None  # (L, D)
    extra: dict = dataclasses.field(default_factory=dict)


def _check_clip(frames: np.ndarray, joints: SparseJoints) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3) RGB, got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (0–255), got dtype {frames.dtype}")
    if not isinstance(joints, SparseJoints):
        raise ValueError(f"joints must be a SparseJoints, got {type(joints).__name__}")
    if len(joints) != frames.shape[0]:
        raise ValueError(f"joints have {len(joints)} frames but frames has {frames.shape[0]}; they must match")
    if joints.frame != "camera":
        raise ValueError(f"joints must be in the camera frame (joints.frame == 'camera'), got {joints.frame!r}")
    if joints.K is None:
        raise ValueError("joints must carry the pixel intrinsics K of the frames (SparseJoints(..., K=...))")
    return frames


def write_clip(path: str | os.PathLike, frames: np.ndarray, joints: SparseJoints, prompt: str = "",
               **extra) -> Path:
    """Write one training clip atomically. ``frames`` (T, H, W, 3) uint8; ``joints`` camera frame with K.

    Extras: ``prompt_embeds=`` (L, D) array is stored as the clip's precomputed prompt embedding; other arrays go to
    ``/extra``, numbers and strings to attributes, dicts as JSON; ``None`` values are skipped.
    """

    path = Path(path)
    frames = _check_clip(frames, joints)
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a str, got {type(prompt).__name__}")
    prompt_embeds = extra.pop("prompt_embeds", None)
    if prompt_embeds is not None:
        prompt_embeds = np.asarray(prompt_embeds, dtype=np.float32)
        if prompt_embeds.ndim != 2:
            raise ValueError(f"prompt_embeds must have shape (L, D), got {prompt_embeds.shape}")
    with atomic_path(path) as tmp, h5_writer(tmp) as f:
        f.attrs.update({"format": CLIP_FORMAT, "schema_version": CLIP_SCHEMA_VERSION, "fps": joints.fps,
                        "embodiment": joints.embodiment, "prompt": prompt, "mirrored": joints.mirrored})
        f.create_dataset("frames", data=frames, chunks=(1, *frames.shape[1:]), compression="gzip",
                         compression_opts=1)
        g = f.create_group("joints")
        g.create_dataset("positions", data=joints.positions)
        g.create_dataset("valid", data=joints.valid)
        g.create_dataset("K", data=joints.K)
        if prompt_embeds is not None:
            f.create_dataset("prompt_embeds", data=prompt_embeds)
        for key, value in extra.items():
            if value is None:
                continue
            if isinstance(value, (str, int, float, bool, np.integer, np.floating, np.bool_)):
                f.attrs[f"extra.{key}"] = value
            elif isinstance(value, dict):
                try:
                    f.attrs[f"extra_json.{key}"] = json.dumps(value)
                except TypeError:
                    raise ValueError(f"extra field {key!r}: a dict must be JSON-serialisable") from None
            else:
                arr = np.asarray(value)
                if arr.dtype == object or arr.dtype.kind == "U":
                    raise ValueError(f"extra field {key!r} must be a number, a str, a JSON-able dict or a numeric "
                                     f"array, got {type(value).__name__}")
                f.require_group("extra").create_dataset(key, data=arr,
                                                        compression="gzip" if arr.size > 4096 else None)
    return path


def open_clip(path: Path):
    """Open a clip file for reading (an ``h5py.File``), checking format, schema version and required fields."""
    import h5py

    if not path.exists():
        raise FileNotFoundError(f"no clip file at {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path} is not a readable HDF5 clip file: {e}") from None
    if f.attrs.get("format") != CLIP_FORMAT:
        f.close()
        raise ValueError(f"{path} is not a dexworld clip (attribute format={CLIP_FORMAT!r} missing)")
    version = int(f.attrs.get("schema_version", -1))
    if version != CLIP_SCHEMA_VERSION:
        f.close()
        raise ValueError(f"{path}: clip schema version {version}, this dexworld reads version {CLIP_SCHEMA_VERSION}")
    for key in ("frames", "joints/positions", "joints/valid", "joints/K"):
        if key not in f:
            f.close()
            raise ValueError(f"{path}: missing dataset {key!r}")
    return f


def clip_joints(f, path: Path, sl: slice = slice(None)) -> SparseJoints:
    """The SparseJoints of an open clip file, frames ``sl``."""
    K = f["joints/K"][()]
    if K.ndim == 3:
        K = K[sl]
    try:
        return SparseJoints(positions=f["joints/positions"][sl], valid=f["joints/valid"][sl], K=K,
                            frame="camera", fps=float(f.attrs["fps"]), embodiment=str(f.attrs["embodiment"]),
                            mirrored=bool(f.attrs.get("mirrored", False)))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def read_clip(path: str | os.PathLike) -> Clip:
    """Read a clip written by :func:`write_clip`; wrong format, schema version or missing fields raise ValueError."""
    path = Path(path)
    try:
        return _read_clip(path)
    except OSError as e:  # a truncated file opens but fails while reading its datasets
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable clip file, truncated or damaged ({e})") from None


def _read_clip(path: Path) -> Clip:
    with open_clip(path) as f:
        frames = f["frames"][()]
        joints = clip_joints(f, path)
        if len(joints) != frames.shape[0]:
            raise ValueError(f"{path}: {frames.shape[0]} frames but {len(joints)} joint frames")
        pe = f["prompt_embeds"][()] if "prompt_embeds" in f else None
        extra = {k[len("extra."):]: (v.item() if hasattr(v, "item") else v)
                 for k, v in f.attrs.items() if k.startswith("extra.")}
        extra.update({k[len("extra_json."):]: json.loads(v) for k, v in f.attrs.items()
                      if k.startswith("extra_json.")})
        if "extra" in f:
            extra.update({k: f["extra"][k][()] for k in f["extra"]})
        return Clip(frames=frames, joints=joints, prompt=str(f.attrs.get("prompt", "")), prompt_embeds=pe,
                    extra=extra)


def clip_length(path: str | os.PathLike) -> int:
    with open_clip(Path(path)) as f:
        return int(f["frames"].shape[0])


def find_clips(root: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """A folder (searched recursively for ``*.h5``/``*.hdf5``), a single clip file, or a list of files."""
    if isinstance(root, (list, tuple)):
        return [Path(p) for p in root]
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"no clip file or folder at {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".h5", ".hdf5") and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"no .h5/.hdf5 clip files under {root}")
    return files
