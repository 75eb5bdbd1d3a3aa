"""Plausible hand motions for any embodiment: its canonical axes, grasp directions and smooth wrist paths.

Everything is derived from the embodiment's own FK, so a new hand needs no hand-written poses: "forward" is
from the wrist to the open fingertips, "palm normal" is the way the fingertips move when the hand closes, and each
joint's closing direction is the limit that brings the fingertips towards the palm.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from embodiments import Embodiment
from embodiments.layout import FINGERTIPS, WRIST, side_offset
from embodiments.transforms import make_transform


@dataclasses.dataclass(frozen=True)
class HandAxes:
    """Canonical geometry of a hand in its root frame.

    R_root_canon: (3, 3) columns = canonical x (lateral), y (forward, wrist → fingers), z (back of the hand,
        opposite the palm normal); a wrist pose ``R_world_root = R_world_canon @ R_root_canon.T``.
    palm_center: (3,) between wrist and open fingertips, in the root frame.
    open_q, closed_q: (dof,) an open hand and a closed fist within the limits.
    """

    R_root_canon: np.ndarray
    palm_center: np.ndarray
    open_q: np.ndarray
    closed_q: np.ndarray
    length: float  # wrist → open middle fingertip distance (m)


def hand_axes(emb: Embodiment) -> HandAxes:
    """Work out a hand's canonical axes and grasp directions from FK (2·dof + 2 FK evaluations)."""
    o = side_offset(emb.side)
    pos, mask = emb.sparse_joints(emb.neutral())
    tips = [o + i for i in FINGERTIPS[1:] if mask[o + i]] or [o + i for i in FINGERTIPS if mask[o + i]]
    if not tips:
        raise ValueError(f"{emb.name}: hand_axes needs at least one fingertip slot")
    wrist = pos[o + WRIST] if mask[o + WRIST] else np.zeros(3)
    tip_open = pos[tips].mean(0)
    palm = wrist + 0.5 * (tip_open - wrist)
    heel = wrist + 0.25 * (tip_open - wrist)
    all_tips = [o + i for i in FINGERTIPS if mask[o + i]]

    def spread(q: np.ndarray) -> np.ndarray:
        p, _ = emb.sparse_joints(q)
        return np.linalg.norm(p[..., all_tips, :] - heel, axis=-1).sum(-1)

    # Per joint: which limit pulls the fingertips towards the heel of the palm (flexion shortens the hand).
    n = emb.dof
    trial = np.repeat(emb.neutral()[None], 2 * n, 0)
    trial[np.arange(n), np.arange(n)] = emb.lower
    trial[n + np.arange(n), np.arange(n)] = emb.upper
    d = spread(trial)
    closed = np.where(d[n:] <= d[:n], emb.upper, emb.lower)
    opened = np.where(d[n:] <= d[:n], emb.lower, emb.upper)
    opened = np.clip(np.zeros(n), np.minimum(opened, 0), np.maximum(opened, 0))  # straight where possible

    forward = tip_open - wrist
    length = float(np.linalg.norm(forward))
    forward /= length
    p_closed, _ = emb.sparse_joints(closed)
    normal = p_closed[tips].mean(0) - tip_open
    normal -= normal.dot(forward) * forward
    if np.linalg.norm(normal) < 1e-6:
        raise ValueError(f"{emb.name}: closing the hand does not move its fingertips; cannot find the palm side")
    normal /= np.linalg.norm(normal)
    back = -normal
    R = np.stack([np.cross(forward, back), forward, back], axis=1)
    return HandAxes(R_root_canon=R, palm_center=palm, open_q=opened, closed_q=closed, length=length)


def wrist_pose(axes: HandAxes, palm_world: np.ndarray, yaw: float = 0.0, pitch: float = 0.0,
               roll: float = 0.0) -> np.ndarray:
    """World pose (4, 4) of the hand root that puts the palm centre at ``palm_world`` with the palm facing down,
    fingers along +y, then rotated by yaw (about z), pitch (about x, fingers up) and roll (about y)."""
    R_world_canon = Rotation.from_euler("zxy", [yaw, pitch, roll]).as_matrix()
    R = R_world_canon @ axes.R_root_canon.T
    return make_transform(R, np.asarray(palm_world) - R @ axes.palm_center)


def min_jerk(s: np.ndarray) -> np.ndarray:
    """Minimum-jerk time scaling of s ∈ [0, 1] (zero velocity and acceleration at both ends)."""
    s = np.clip(s, 0.0, 1.0)
    return s ** 3 * (10 - 15 * s + 6 * s * s)


def interpolate_poses(keys: np.ndarray, key_times: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Poses (T, 4, 4) through key poses (K, 4, 4) at ``key_times``: min-jerk per segment, slerp rotations."""
    keys = np.asarray(keys, dtype=np.float64)
    key_times = np.asarray(key_times, dtype=np.float64)
    seg = np.clip(np.searchsorted(key_times, times, side="right") - 1, 0, len(key_times) - 2)
    s = min_jerk((times - key_times[seg]) / (key_times[seg + 1] - key_times[seg]))
    eased = key_times[seg] + s * (key_times[seg + 1] - key_times[seg])  # eased time for slerp
    rot = Slerp(key_times, Rotation.from_matrix(keys[:, :3, :3]))(np.clip(eased, key_times[0], key_times[-1]))
    pos = keys[seg, :3, 3] + s[:, None] * (keys[seg + 1, :3, 3] - keys[seg, :3, 3])
    return make_transform(rot.as_matrix(), pos)


def smooth_random_q(emb: Embodiment, T: int, rng: np.random.Generator, knots: int = 4,
                    start: np.ndarray | None = None) -> np.ndarray:
    """A smooth random joint trajectory (T, dof) within the limits: min-jerk between random knots."""
    lo, hi = emb.lower, emb.upper
    pts = rng.uniform(lo, hi, size=(knots, emb.dof))
    if start is not None:
        pts[0] = start
    kt = np.linspace(0, T - 1, knots)
    t = np.arange(T)
    seg = np.clip(np.searchsorted(kt, t, side="right") - 1, 0, knots - 2)
    s = min_jerk((t - kt[seg]) / (kt[seg + 1] - kt[seg]))[:, None]
    return np.clip(pts[seg] + s * (pts[seg + 1] - pts[seg]), lo, hi)
