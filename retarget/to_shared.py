"""Robot joint angles → the shared sparse-joint space, placed by a wrist pose in a camera or world frame."""

from __future__ import annotations

import numpy as np

import embodiments
from embodiments import SparseJoints
from embodiments.transforms import apply_transform


def to_sparse_joints(embodiment: str | embodiments.Embodiment, q: np.ndarray, wrist_pose: np.ndarray | None = None,
                     frame: str = "camera", K: np.ndarray | None = None, fps: float = 30.0) -> SparseJoints:
    """SparseJoints (T, 42, 3) of configurations q (T, dof) or (dof,) of a registered hand.

    Args:
        embodiment: registry name or Embodiment.
        q: joint angles in the embodiment's ``joint_names`` order (checked, clipped into limits with a warning).
        wrist_pose: ``T_frame_root`` (4, 4) or per frame (T, 4, 4): the pose of the hand's root link in
            ``frame``. None: positions stay in the hand root frame and ``frame`` becomes ``"hand_root"``.
        frame: name of the frame the wrist pose maps into (``"camera"`` — OpenCV axes — or ``"world"``).
        K: pixel intrinsics (3, 3) or (T, 3, 3) when ``frame`` is a camera.
    """
    hand = embodiments.get(embodiment)
    q = np.asarray(q, dtype=np.float64)
    if q.ndim == 1:
        q = q[None]
    if q.ndim != 2:
        raise ValueError(f"q must have shape (T, {hand.dof}) or ({hand.dof},), got {q.shape}")
    pos, valid = hand.sparse_joints(q)
    if wrist_pose is None:
        frame = "hand_root"
    else:
        pose = np.asarray(wrist_pose, dtype=np.float64)
        if pose.shape not in ((4, 4), (len(q), 4, 4)):
            raise ValueError(f"wrist_pose must have shape (4, 4) or (T, 4, 4) with T={len(q)}, got {pose.shape}")
        if not np.isfinite(pose).all():
            raise ValueError("wrist_pose contains NaN or inf")
        R = pose[..., :3, :3]
        if not np.allclose(R @ np.swapaxes(R, -1, -2), np.eye(3), atol=1e-5):
            raise ValueError("wrist_pose must be a rigid transform (orthonormal rotation block)")
        pos = apply_transform(pose, pos)
    valid = np.broadcast_to(valid, pos.shape[:2]).copy()
    return SparseJoints(pos, valid, frame=frame, fps=fps, embodiment=hand.name, K=K)
