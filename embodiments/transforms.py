"""Pure geometry on points and rigid transforms (numpy, batched over leading dimensions).

Conventions: metres; camera frame is OpenCV (x right, y down, z forward); transforms are 4×4 homogeneous
matrices ``T_a_b`` that map points expressed in frame b into frame a.
"""

from __future__ import annotations

import numpy as np

# MuJoCo (and OpenGL) cameras look down −z with y up; OpenCV looks down +z with y down. One place converts.
GL_TO_CV = np.diag([1.0, -1.0, -1.0])


def make_transform(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Stack rotation(s) (..., 3, 3) and translation(s) (..., 3) into (..., 4, 4) transforms."""
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    T = np.zeros(np.broadcast_shapes(R.shape[:-2], t.shape[:-1]) + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid transform(s) (..., 4, 4) without a general matrix inverse."""
    T = np.asarray(T, dtype=np.float64)
    R = np.swapaxes(T[..., :3, :3], -1, -2)
    return make_transform(R, -np.einsum("...ij,...j->...i", R, T[..., :3, 3]))


def apply_transform(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points (..., N, 3) by transform(s) T (..., 4, 4) broadcast over the leading dimensions."""
    T = np.asarray(T)
    return np.einsum("...ij,...nj->...ni", T[..., :3, :3], points) + T[..., None, :3, 3]


def rotation_about(axis: np.ndarray, angle: np.ndarray | float) -> np.ndarray:
    """Rodrigues rotation matrices (..., 3, 3) for unit ``axis`` (3,) and angles of any shape."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    angle = np.asarray(angle, dtype=np.float64)[..., None, None]
    x, y, z = axis
    K = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * (K @ K)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """World-from-camera transform ``T_world_cam`` (OpenCV axes) of a camera at ``eye`` looking at ``target``."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: 'up' is parallel to the viewing direction; pass another up vector")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return make_transform(np.stack([x, y, z], axis=1), eye)


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """Pixel intrinsics matrix K (3, 3)."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def intrinsics_from_fovy(fovy_deg: float, width: int, height: int) -> np.ndarray:
    """K of a pinhole camera with vertical field of view ``fovy_deg`` and square pixels (MuJoCo's model)."""
    f = 0.5 * height / np.tan(np.deg2rad(fovy_deg) / 2)
    return intrinsics(f, f, width / 2.0, height / 2.0)


def project(points: np.ndarray, K: np.ndarray, min_depth: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Project camera-frame points (..., N, 3) with K (..., 3, 3) to (u, v, disparity) and a front mask.

    Disparity is 1/z. Points at or behind the camera (z <= ``min_depth``) get ``in_front = False`` and
    NaN coordinates, so nobody uses them by accident.
    """
    points = np.asarray(points, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    z = points[..., 2]
    in_front = z > min_depth
    safe_z = np.where(in_front, z, 1.0)
    uvw = np.einsum("...ij,...nj->...ni", K, points)
    uv = uvw[..., :2] / safe_z[..., None]
    uvd = np.concatenate([uv, (1.0 / safe_z)[..., None]], axis=-1)
    uvd[~in_front] = np.nan
    return uvd, in_front


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Pixel intrinsics after resizing an image by (sx, sy): rows 0 and 1 scale (pixel-edge convention)."""
    K = np.array(K, dtype=np.float64, copy=True)
    K[..., 0, :] *= sx
    K[..., 1, :] *= sy
    return K
