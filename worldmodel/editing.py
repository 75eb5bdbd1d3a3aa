"""Interactive joint editing: move joints at keyframes with a smooth temporal falloff (pure functions).

The edited ``SparseJoints`` feed the same ``HandControlPipeline`` as recorded ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from embodiments.layout import NUM_SLOTS, SIDES, hand_slots, slot_index
from embodiments.sparse import SparseJoints

FALLOFFS = ("cosine", "linear", "none")


def resolve_joint_ids(joint_ids) -> np.ndarray:
    """Slots from an int, a slot name (``"right_index_tip"``), ``"left"``/``"right"`` (whole hand), ``"all"``,
    or a sequence of ints/names. Order is kept (the first one is the anchor for ``target`` and ``rotation``)."""
    if isinstance(joint_ids, (str, int, np.integer)):
        joint_ids = [joint_ids]
    out: list[int] = []
    for j in joint_ids:
        if isinstance(j, str):
            if j in SIDES:
                out += list(hand_slots(j))
            elif j == "all":
                out += list(range(NUM_SLOTS))
            else:
                out.append(slot_index(j))
        elif isinstance(j, (int, np.integer)):
            if not 0 <= int(j) < NUM_SLOTS:
                raise ValueError(f"joint id {j} out of range 0..{NUM_SLOTS - 1}")
            out.append(int(j))
        else:
            raise ValueError(f"joint ids must be ints or slot names, got {j!r}")
    if not out:
        raise ValueError("joint_ids is empty")
    return np.array(list(dict.fromkeys(out)), dtype=int)


def falloff_weight(distance: np.ndarray, width: float, kind: str = "cosine") -> np.ndarray:
    """Weight of an edit at ``distance`` frames from its keyframe: 1 at 0, 0 from ``width`` on.

    ``cosine``: raised-cosine window 0.5·(1 + cos(π·d/width)) (C¹, no jerk at either end); ``linear``: tent;
    ``none``: only the keyframe itself.
    """
    d = np.abs(np.asarray(distance, dtype=np.float64))
    if kind == "none" or width <= 0:
        return (d == 0).astype(np.float64)
    x = np.clip(d / width, 0.0, 1.0)
    if kind == "cosine":
        return 0.5 * (1.0 + np.cos(np.pi * x))
    if kind == "linear":
        return 1.0 - x
    raise ValueError(f"falloff must be one of {FALLOFFS}, got {kind!r}")


def keyframe_profile(num_frames: int, keyframes: np.ndarray, values: np.ndarray, width: float,
                     kind: str = "cosine") -> np.ndarray:
    """Per-frame edit (T, D) that equals ``values[k]`` at keyframe k and fades to zero ``width`` frames away.

    Between two keyframes closer than 2·width the edit eases from one value to the next (same window shape), so
    it never dips back to zero in between; farther apart, each keyframe fades in and out on its own.
    """
    order = np.argsort(keyframes)
    keys, vals = keyframes[order].astype(np.float64), values[order]
    t = np.arange(num_frames, dtype=np.float64)
    out = np.zeros((num_frames, vals.shape[1]))
    for i, (k, v) in enumerate(zip(keys, vals, strict=True)):
        ease = kind != "none"
        left = ease and i > 0 and k - keys[i - 1] < 2 * width
        right = ease and i + 1 < len(keys) and keys[i + 1] - k < 2 * width
        before = (t < k) & (t > (keys[i - 1] if left else -np.inf))
        after = (t > k) & (t < (keys[i + 1] if right else np.inf))
        w = np.zeros(num_frames)
        w[t == k] = 1.0
        if left:  # ease from the previous keyframe: weights of the two sum to 1 on the span
            w[before] = 1.0 - falloff_weight(t[before] - keys[i - 1], k - keys[i - 1], kind)
        else:
            w[before] = falloff_weight(k - t[before], width, kind)
        if right:
            w[after] = falloff_weight(t[after] - k, keys[i + 1] - k, kind)
        else:
            w[after] = falloff_weight(t[after] - k, width, kind)
        out += w[:, None] * v[None]
    return out


def edit_joints(joints: SparseJoints, joint_ids, offset=None, target=None, frames: int | Sequence[int] = 0,
                falloff: str = "cosine", width: float = 4.0, rotation=None) -> SparseJoints:
    """Move joints at keyframes with a smooth temporal falloff; returns new SparseJoints (input untouched).

    Args:
        joints: (T, 42, 3) joints in any frame (usually the camera frame).
        joint_ids: one joint, a subset, ``"left"``/``"right"`` (the whole hand) or ``"all"`` (see
            :func:`resolve_joint_ids`). The selection moves as a rigid body (same translation/rotation).
        offset: translation in metres, (3,) for every keyframe or (K, 3) per keyframe.
        target: instead of ``offset``, where the first selected joint should be at each keyframe: (3,) or (K, 3).
        frames: keyframe index or indices (negative indices count from the end).
        falloff: ``"cosine"`` (raised-cosine window), ``"linear"`` or ``"none"``; ``width`` its half-width in
            frames: frames ``width`` or more from every keyframe are untouched.
        rotation: optional rotation vector(s) (3,) or (K, 3), radians, about the first selected joint (applied
            before the translation); the angle follows the same falloff, so the selection stays rigid.
    """
    if not isinstance(joints, SparseJoints):
        raise ValueError(f"joints must be a SparseJoints, got {type(joints).__name__}")
    if offset is not None and target is not None:
        raise ValueError("pass offset= or target=, not both")
    if offset is None and target is None and rotation is None:
        raise ValueError("pass exactly one of offset= or target= (or a rotation=)")
    if falloff not in FALLOFFS:
        raise ValueError(f"falloff must be one of {FALLOFFS}, got {falloff!r}")
    T = len(joints)
    ids = resolve_joint_ids(joint_ids)
    keys = np.atleast_1d(np.asarray(frames, dtype=int))
    if keys.ndim != 1 or keys.size == 0:
        raise ValueError(f"frames must be a keyframe index or a list of them, got {frames!r}")
    if np.any((keys < -T) | (keys >= T)):
        raise ValueError(f"keyframes {keys.tolist()} out of range for {T} frames")
    keys = np.where(keys < 0, keys + T, keys)
    if len(np.unique(keys)) != len(keys):
        raise ValueError(f"keyframes must be distinct, got {keys.tolist()}")

    def per_key(x, name):
        x = np.asarray(x, dtype=np.float64)
        if x.shape == (3,):
            x = np.broadcast_to(x, (len(keys), 3))
        if x.shape != (len(keys), 3):
            raise ValueError(f"{name} must have shape (3,) or ({len(keys)}, 3) (one per keyframe), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"{name} must be finite")
        return x

    pos = joints.positions.astype(np.float64)
    anchor = ids[0]
    rotvecs = per_key(rotation, "rotation") if rotation is not None else np.zeros((len(keys), 3))
    if target is not None:
        tgt = per_key(target, "target")
        if not joints.valid[keys, anchor].all():
            raise ValueError(f"target= needs joint {anchor} (the first selected) valid at every keyframe")
        offsets = tgt - pos[keys, anchor]
    elif offset is not None:
        offsets = per_key(offset, "offset")
    else:
        offsets = np.zeros((len(keys), 3))

    profile = keyframe_profile(T, keys, np.concatenate([offsets, rotvecs], axis=1), width, falloff)
    shift, rot = profile[:, :3], profile[:, 3:]
    sel = pos[:, ids]  # (T, S, 3)
    if rotation is not None:
        pivot = sel[:, :1]
        R = Rotation.from_rotvec(rot).as_matrix()  # (T, 3, 3)
        sel = pivot + np.einsum("tij,tsj->tsi", R, sel - pivot)
    new = pos.copy()
    new[:, ids] = sel + shift[:, None]
    # Invalid slots carry no meaning and stay as they were.
    new = np.where(joints.valid[..., None], new, pos)
    return joints.replace(positions=new.astype(np.float32), valid=joints.valid)
