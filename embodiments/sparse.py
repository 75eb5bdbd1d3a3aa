"""``SparseJoints``: the one type that carries hand joints between dexworld's packages.

Positions (T, 42, 3) float32 in metres, validity (T, 42) bool, the frame they are expressed in, fps, the
embodiment they came from and, when the frame is a camera, the pixel intrinsics K (3, 3) or (T, 3, 3).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from .io_utils import atomic_path, h5_writer
from .layout import NUM_HAND_JOINTS, NUM_SLOTS, hand_slots, side_offset
from .transforms import apply_transform, project

SCHEMA_VERSION = 1
_MIRROR_PERM = np.r_[np.arange(NUM_HAND_JOINTS, NUM_SLOTS), np.arange(NUM_HAND_JOINTS)]


@dataclasses.dataclass(frozen=True, eq=False)
class SparseJoints:
    """Hand joints in the shared 42-slot space (left 0–20, right 21–41, MANO/OpenPose order per hand).

    Args:
        positions: (T, 42, 3) metres. Values in invalid slots carry no meaning.
        valid: (T, 42) bool. Defaults to every slot whose position is finite.
        frame: name of the frame the positions are in, e.g. ``"camera"``, ``"world"``, ``"hand_root"``.
        fps: frames per second.
        embodiment: registry name of the hand(s) that produced the joints, e.g. ``"mano_right"``.
        K: optional pixel intrinsics (3, 3) or (T, 3, 3) of the camera whose frame the positions are in.
        mirrored: True after an odd number of :meth:`mirror` calls, so the mirroring can be undone.
    """

    positions: np.ndarray
    valid: np.ndarray | None = None
    frame: str = "camera"
    fps: float = 16.0
    embodiment: str = "unknown"
    K: np.ndarray | None = None
    mirrored: bool = False

    def __post_init__(self) -> None:
        pos = np.asarray(self.positions, dtype=np.float32)
        if pos.ndim != 3 or pos.shape[1:] != (NUM_SLOTS, 3):
            raise ValueError(f"SparseJoints.positions must have shape (T, {NUM_SLOTS}, 3), got {pos.shape}")
        finite = np.isfinite(pos).all(-1)
        if self.valid is None:
            valid = finite
        else:
            valid = np.asarray(self.valid)
            if valid.shape != pos.shape[:2]:
                raise ValueError(f"SparseJoints.valid must have shape {pos.shape[:2]} (T, {NUM_SLOTS}), "
                                 f"got {valid.shape}")
            valid = valid.astype(bool)
            bad = valid & ~finite
            if bad.any():
                t, s = np.argwhere(bad)[0]
                raise ValueError(f"SparseJoints.positions has NaN/inf in a slot marked valid "
                                 f"(frame {t}, slot {s}); mark it invalid or fix the value")
        pos = np.where(valid[..., None], pos, 0.0).astype(np.float32)
        K = self.K
        if K is not None:
            K = np.asarray(K, dtype=np.float64)
            if K.shape not in ((3, 3), (pos.shape[0], 3, 3)):
                raise ValueError(f"SparseJoints.K must have shape (3, 3) or (T, 3, 3) with T={pos.shape[0]}, "
                                 f"got {K.shape}")
            if not np.isfinite(K).all() or np.any(np.abs(np.linalg.det(K)) < 1e-12):
                raise ValueError("SparseJoints.K must be a finite, invertible intrinsics matrix")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"SparseJoints.fps must be a positive number, got {self.fps}")
        object.__setattr__(self, "positions", pos)
        object.__setattr__(self, "valid", valid)
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "fps", float(self.fps))

    # ---------------------------------------------------------------- construction and access
    @classmethod
    def from_hand(cls, hand: np.ndarray, side: str, valid: np.ndarray | None = None, **kw) -> SparseJoints:
        """Place one hand's (T, 21, 3) joints into its slots; the other hand's slots are invalid."""
        hand = np.asarray(hand, dtype=np.float32)
        if hand.ndim != 3 or hand.shape[1:] != (NUM_HAND_JOINTS, 3):
            raise ValueError(f"hand joints must have shape (T, {NUM_HAND_JOINTS}, 3), got {hand.shape}")
        T = hand.shape[0]
        pos = np.zeros((T, NUM_SLOTS, 3), np.float32)
        ok = np.zeros((T, NUM_SLOTS), bool)
        o = side_offset(side)
        pos[:, o:o + NUM_HAND_JOINTS] = np.nan_to_num(hand)
        hv = np.isfinite(hand).all(-1) if valid is None else np.asarray(valid, bool)
        ok[:, o:o + NUM_HAND_JOINTS] = hv & np.isfinite(hand).all(-1)
        return cls(pos, ok, **kw)

    def hand(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        """One hand's (T, 21, 3) positions and (T, 21) validity."""
        s = hand_slots(side)
        return self.positions[:, s.start:s.stop], self.valid[:, s.start:s.stop]

    def __len__(self) -> int:
        return self.positions.shape[0]

    @property
    def num_frames(self) -> int:
        return self.positions.shape[0]

    def replace(self, **changes) -> SparseJoints:
        return dataclasses.replace(self, **changes)

    def frame_K(self) -> np.ndarray:
        """Intrinsics per frame, (T, 3, 3); raises if the joints carry none."""
        if self.K is None:
            raise ValueError("these SparseJoints carry no intrinsics K; pass K= when creating them")
        return np.broadcast_to(self.K, (len(self), 3, 3)) if self.K.ndim == 2 else self.K

    # ---------------------------------------------------------------- geometry
    def transform(self, T_new_old: np.ndarray, frame: str, K: np.ndarray | None = None) -> SparseJoints:
        """Express the joints in another frame. ``T_new_old`` is (4, 4) or per frame (T, 4, 4)."""
        T_new_old = np.asarray(T_new_old, dtype=np.float64)
        if T_new_old.shape not in ((4, 4), (len(self), 4, 4)):
            raise ValueError(f"transform must have shape (4, 4) or (T, 4, 4) with T={len(self)}, "
                             f"got {T_new_old.shape}")
        pos = apply_transform(T_new_old, self.positions.astype(np.float64))
        return self.replace(positions=pos, valid=self.valid, frame=frame, K=K)

    def project(self, K: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(u, v, disparity) (T, 42, 3) in pixels and 1/m, and validity that also drops joints at/behind the camera."""
        K = self.frame_K() if K is None else np.broadcast_to(np.asarray(K, np.float64), (len(self), 3, 3))
        uvd, in_front = project(self.positions, K)
        return uvd, self.valid & in_front

    def mirror(self) -> SparseJoints:
        """Mirror across the sagittal plane (x → −x) and swap left/right slots; applying it twice is the identity.

        This is how the paper maps right hands into the canonical space; ``mirrored`` records it.
        """
        pos = self.positions[:, _MIRROR_PERM].copy()
        pos[..., 0] *= -1.0
        K = self.K
        return self.replace(positions=pos, valid=self.valid[:, _MIRROR_PERM], K=K, mirrored=not self.mirrored)

    # ---------------------------------------------------------------- time
    def __getitem__(self, index: slice) -> SparseJoints:
        """Slice in time: ``joints[4:20:2]`` keeps fps in step with the stride."""
        if not isinstance(index, slice):
            raise TypeError("SparseJoints can only be sliced in time with a slice, e.g. joints[0:17]")
        step = index.step or 1
        if step <= 0:
            raise ValueError("time slices must have a positive step")
        K = self.K[index] if (self.K is not None and self.K.ndim == 3) else self.K
        return self.replace(positions=self.positions[index], valid=self.valid[index], K=K, fps=self.fps / step)

    def resample(self, fps: float, num_frames: int | None = None) -> SparseJoints:
        """Linear resampling to ``fps``. A resampled joint is valid only if both neighbours were valid."""
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        duration = (len(self) - 1) / self.fps
        n = num_frames if num_frames is not None else int(np.floor(duration * fps + 1e-9)) + 1
        t = np.arange(n) / fps * self.fps
        if t[-1] > len(self) - 1 + 1e-6:
            raise ValueError(f"cannot resample {len(self)} frames at {self.fps} fps to {n} frames at {fps} fps: "
                             "that runs past the last frame")
        i0 = np.clip(np.floor(t).astype(int), 0, len(self) - 1)
        i1 = np.clip(i0 + 1, 0, len(self) - 1)
        w = (t - i0)[:, None, None]
        pos = (1 - w) * self.positions[i0] + w * self.positions[i1]
        exact = (w[:, 0, 0] < 1e-9)[:, None]
        valid = self.valid[i0] & (self.valid[i1] | exact)
        K = self.K
        if K is not None and K.ndim == 3:
            K = (1 - w) * K[i0] + w * K[i1]
        return self.replace(positions=pos, valid=valid, fps=fps, K=K)

    # ---------------------------------------------------------------- files
    def _meta(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "frame": self.frame, "fps": self.fps,
                "embodiment": self.embodiment, "mirrored": self.mirrored}

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.npz`` or ``.h5``/``.hdf5`` (chosen by suffix), atomically."""
        path = Path(path)
        suffix = path.suffix.lower()
        arrays = {"positions": self.positions, "valid": self.valid}
        if self.K is not None:
            arrays["K"] = self.K
        with atomic_path(path) as tmp:
            if suffix == ".npz":
                meta = {k: np.asarray(v) for k, v in self._meta().items()}
                with open(tmp, "wb") as f:
                    np.savez(f, **arrays, **meta)
            elif suffix in (".h5", ".hdf5"):
                with h5_writer(tmp) as f:
                    g = f.create_group("sparse_joints")
                    for k, v in arrays.items():
                        g.create_dataset(k, data=v, compression="gzip" if v.size > 4096 else None)
                    g.attrs.update(self._meta())
            else:
                raise ValueError(f"unknown SparseJoints file type {path.suffix!r}; use .npz, .h5 or .hdf5")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SparseJoints:
        """Read a file written by :meth:`save`; other schema versions or shapes are refused with a clear error."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no SparseJoints file at {path}")
        suffix = path.suffix.lower()
        if suffix not in (".npz", ".h5", ".hdf5"):
            raise ValueError(f"{path}: unknown SparseJoints file type {path.suffix!r}; use .npz, .h5 or .hdf5")
        if path.is_dir():
            raise ValueError(f"{path} is a folder; expected a SparseJoints {suffix} file")
        try:
            data, meta = _read_arrays(path, suffix)
        except Exception as e:  # zip, npy and HDF5 readers raise assorted types on empty or truncated files
            if isinstance(e, ValueError) and str(path) in str(e):
                raise
            raise ValueError(f"{path}: not a readable SparseJoints {suffix} file ({type(e).__name__}: "
                             f"{e or 'empty or truncated'})") from None
        version = meta.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"{path}: SparseJoints schema version {version}, this dexworld reads version "
                             f"{SCHEMA_VERSION}")
        if "positions" not in data:
            raise ValueError(f"{path}: missing 'positions' (T, {NUM_SLOTS}, 3)")
        try:
            return cls(positions=data["positions"], valid=data.get("valid"), K=data.get("K"),
                       frame=str(meta.get("frame", "camera")), fps=float(meta.get("fps", 16.0)),
                       embodiment=str(meta.get("embodiment", "unknown")), mirrored=bool(meta.get("mirrored", False)))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


def _read_arrays(path: Path, suffix: str) -> tuple[dict, dict]:
    """Arrays and metadata of a SparseJoints file (``.npz`` or HDF5)."""
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
        meta = {k: data.pop(k).item() for k in list(data) if k not in ("positions", "valid", "K")}
        return data, meta
    import h5py

    with h5py.File(path, "r") as f:
        if "sparse_joints" not in f:
            raise ValueError(f"{path} has no 'sparse_joints' group; it was not written by SparseJoints.save")
        g = f["sparse_joints"]
        data = {k: g[k][()] for k in g}
        meta = {k: (v.item() if hasattr(v, "item") else v) for k, v in g.attrs.items()}
    return data, meta
