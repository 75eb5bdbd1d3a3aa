"""Hands in a camera: compose hand forward kinematics with per-frame camera←hand-root transforms, and recover
those transforms from joints (Kabsch) when only camera-frame joints are known.
"""

from __future__ import annotations

import numpy as np

from embodiments import registry
from embodiments.layout import NUM_SLOTS
from embodiments.sparse import SparseJoints
from embodiments.transforms import apply_transform, make_transform


def join_names(hands: list[str] | tuple[str, ...]) -> str:
    """The ``SparseJoints.embodiment`` string of several hands: ``"dex3_left+dex3_right"``."""
    return "+".join(hands)


def split_names(embodiment: str) -> list[str]:
    """Inverse of :func:`join_names`."""
    return [h for h in embodiment.split("+") if h]


def hands_in_camera(q: dict[str, np.ndarray], T_cam_root: dict[str, np.ndarray], K: np.ndarray, fps: float,
                    strict: bool = False) -> SparseJoints:
    """Camera-frame joints of one or two hands.

    Args:
        q: hand name → joint vectors (T, dof) in that hand's ``joint_names`` order.
        T_cam_root: hand name → camera-from-hand-root transforms (T, 4, 4) or (4, 4).
        K: intrinsics (3, 3) or (T, 3, 3).
        fps: frames per second.
        strict: refuse joint angles outside the limits instead of clipping them with a warning.
    Returns:
        SparseJoints (T, 42, 3) in frame ``"camera"``; slots of absent hands are invalid.
    """
    if not q:
        raise ValueError("hands_in_camera needs at least one hand")
    hands = list(q)
    sides = [registry.get(h).side for h in hands]
    if len(set(sides)) != len(sides):
        raise ValueError(f"two hands on the {max(set(sides), key=sides.count)} side: {hands}")
    T = None
    pos = valid = None
    for name in hands:
        emb = registry.get(name)
        qi = np.asarray(q[name], dtype=np.float64)
        if qi.ndim != 2:
            raise ValueError(f"{name}: joint vectors must have shape (T, {emb.dof}), got {qi.shape}")
        if T is None:
            T = qi.shape[0]
            pos = np.zeros((T, NUM_SLOTS, 3))
            valid = np.zeros((T, NUM_SLOTS), bool)
        elif qi.shape[0] != T:
            raise ValueError(f"{name}: {qi.shape[0]} frames of joint vectors, other hands have {T}")
        if name not in T_cam_root:
            raise ValueError(f"no camera-from-root transform given for hand {name!r}")
        Tc = np.broadcast_to(np.asarray(T_cam_root[name], dtype=np.float64), (T, 4, 4))
        local, mask = emb.sparse_joints(qi, strict=strict)  # (T, 42, 3) hand root frame
        cam = apply_transform(Tc, local)
        pos[:, mask] = cam[:, mask]
        valid[:, mask] = True
    return SparseJoints(pos, valid, frame="camera", fps=fps, embodiment=join_names(hands), K=K)


def kabsch(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Rigid transforms (..., 4, 4) that best map points ``src`` (..., N, 3) onto ``dst`` (..., N, 3).

    Weighted least squares (Kabsch/Umeyama without scale); ``weights`` (..., N) drop points with 0.
    Written here because it is six lines of SVD on batched arrays; scipy's ``Rotation.align_vectors`` handles one
    problem per call and only rotations.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    w = np.ones(src.shape[:-1]) if weights is None else np.asarray(weights, dtype=np.float64)
    wsum = w.sum(-1, keepdims=True)
    if np.any(wsum < 1e-12):
        raise ValueError("kabsch: a problem has no point with positive weight")
    cs = (w[..., None] * src).sum(-2) / wsum
    cd = (w[..., None] * dst).sum(-2) / wsum
    H = np.einsum("...n,...ni,...nj->...ij", w, src - cs[..., None, :], dst - cd[..., None, :])
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(np.swapaxes(Vt, -1, -2) @ np.swapaxes(U, -1, -2)))
    D = np.zeros(H.shape)
    D[..., 0, 0] = 1.0
    D[..., 1, 1] = 1.0
    D[..., 2, 2] = d
    R = np.swapaxes(Vt, -1, -2) @ D @ np.swapaxes(U, -1, -2)
    t = cd - np.einsum("...ij,...j->...i", R, cs)
    return make_transform(R, t)


def fit_root_pose(hand: str, q: np.ndarray, joints: SparseJoints) -> tuple[np.ndarray, np.ndarray]:
    """Camera-from-root transforms (T, 4, 4) of ``hand`` that map its FK joints onto ``joints``, and the
    per-frame RMS residual (T,) in metres. Needs ≥ 3 valid non-collinear slots of that hand per frame.
    """
    emb = registry.get(hand)
    local, mask = emb.sparse_joints(np.asarray(q, dtype=np.float64))
    w = (joints.valid & mask[None]).astype(np.float64)
    few = w.sum(-1) < 3
    if few.any():
        raise ValueError(f"{hand}: frame {int(np.argmax(few))} has fewer than 3 valid joints of this hand; "
                         "cannot recover the hand's pose in the camera")
    Tf = kabsch(local, joints.positions.astype(np.float64), w)
    err = np.linalg.norm(apply_transform(Tf, local) - joints.positions, axis=-1)
    rms = np.sqrt((w * err**2).sum(-1) / w.sum(-1))
    return Tf, rms
