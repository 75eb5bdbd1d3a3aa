"""Frame alignment and scale between a source hand's keypoints and a target hand's root frame.

The **canonical hand frame** of any hand (human or robot) is built from three of its keypoints:

* origin at the wrist;
* ``x`` distal: from the wrist towards the midpoint of the index MCP and the *ulnar* MCP (the pinky MCP, or the
  most ulnar MCP the hand has: ring, then middle — Dex3 has no ring or pinky);
* ``z`` dorsal: normal of the palm plane through those three points, pointing out of the back of the hand
  (``ulnar × index`` for a right hand, ``index × ulnar`` for a left hand, so that mirror images agree);
* ``y = z × x`` (radial on a right hand, ulnar on a left hand): the frame is always right-handed.

A source's canonical frame is measured per frame from its keypoints, so the input may be in any frame (camera,
world, hand root). A target's canonical frame is a fixed rotation ``R_root_canon`` of its root frame, stored in
the pair config; by default it is measured once from the target's own keypoints at its neutral pose.
Source vectors map into the target's root frame by ``R_root_canon @ R_src_canon.T`` and the scale.

The scale is the ratio of summed bone lengths (target over source) along the slots both hands fill, so a
smaller robot hand gets proportionally shorter targets. Pair configs and ``Retargeter(scale=...)`` override it.
"""

from __future__ import annotations

import numpy as np

from embodiments.layout import HAND_JOINT_NAMES, HAND_PARENTS

ULNAR_MCPS = ("pinky_mcp", "ring_mcp", "middle_mcp")


def ulnar_mcp(available: set[str] | list[str]) -> str:
    """The most ulnar MCP joint among ``available`` joint names (pinky, else ring, else middle)."""
    for name in ULNAR_MCPS:
        if name in available:
            return name
    raise ValueError("frame alignment needs the wrist, index_mcp and one of pinky/ring/middle_mcp; "
                     f"the hand fills only {sorted(available)}")


def canonical_frames(wrist: np.ndarray, index_mcp: np.ndarray, ulnar: np.ndarray, side: str
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Canonical hand frames from keypoints (..., 3): rotations (..., 3, 3) (columns x, y, z) and a validity mask.

    Frames whose three points are (nearly) collinear are marked invalid (identity rotation returned there).
    """
    wrist, index_mcp, ulnar = (np.asarray(a, dtype=np.float64) for a in (wrist, index_mcp, ulnar))
    u, v = index_mcp - wrist, ulnar - wrist
    x = u + v
    z = np.cross(v, u) if side == "right" else np.cross(u, v)
    nx, nz = np.linalg.norm(x, axis=-1), np.linalg.norm(z, axis=-1)
    scale = np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1)
    ok = (nx > 1e-6) & (nz > 1e-3 * np.maximum(scale, 1e-12)) & np.isfinite(nx) & np.isfinite(nz)
    x = x / np.where(ok, nx, 1.0)[..., None]
    z = z - (z * x).sum(-1, keepdims=True) * x  # exact orthogonality (x is in the palm plane already)
    z = z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
    y = np.cross(z, x)
    R = np.stack([x, y, z], axis=-1)
    R[~ok] = np.eye(3)
    return R, ok


def rotation_from_rpy_deg(rpy: list[float] | np.ndarray) -> np.ndarray:
    """Rotation matrix of URDF-style roll-pitch-yaw in degrees (extrinsic x, then y, then z)."""
    from scipy.spatial.transform import Rotation

    rpy = np.asarray(rpy, dtype=np.float64)
    if rpy.shape != (3,) or not np.isfinite(rpy).all():
        raise ValueError(f"rotation_rpy_deg must be three finite numbers [roll, pitch, yaw], got {rpy.tolist()}")
    return Rotation.from_euler("xyz", rpy, degrees=True).as_matrix()


def rpy_deg_from_rotation(R: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rotation_from_rpy_deg`."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R).as_euler("xyz", degrees=True)


def chain_edges(slots: set[str] | list[str]) -> list[tuple[str, str]]:
    """Bones through the given joint names: each joint joined to its nearest ancestor in the set."""
    present = set(slots)
    edges = []
    for c, name in enumerate(HAND_JOINT_NAMES):
        if name not in present or HAND_PARENTS[c] < 0:
            continue
        p = HAND_PARENTS[c]
        while p >= 0 and HAND_JOINT_NAMES[p] not in present:
            p = HAND_PARENTS[p]
        if p >= 0:
            edges.append((HAND_JOINT_NAMES[p], name))
    return edges


def bone_length_sum(points: dict[str, np.ndarray], valid: dict[str, np.ndarray] | None,
                    edges: list[tuple[str, str]], percentile: float = 90.0) -> float:
    """Sum over ``edges`` of each bone's length (a high percentile over frames of points (T, 3)).

    A high percentile rather than the mean: where a chain skips a joint the distance shrinks as the finger
    flexes, and the extended hand is what the target's neutral pose is measured at.
    """
    total = 0.0
    for a, b in edges:
        d = np.linalg.norm(points[b] - points[a], axis=-1)
        if valid is not None:
            d = d[valid[a] & valid[b]]
        if d.size == 0:
            raise ValueError(f"cannot estimate the scale: bone {a}–{b} is never valid; pass scale= explicitly")
        total += float(np.percentile(d, percentile))
    return total
