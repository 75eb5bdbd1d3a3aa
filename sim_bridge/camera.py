"""MuJoCo camera ↔ OpenCV camera: the ONE place where MuJoCo's −z-looking, y-up camera axes are converted.

A MuJoCo camera frame has x right, y up and looks down −z (OpenGL); dexworld's camera frame is OpenCV (x right,
y down, z forward). ``R_world_cv = R_world_gl @ GL_TO_CV`` and, since ``GL_TO_CV`` is its own inverse,
``R_world_gl = R_world_cv @ GL_TO_CV``.
"""

from __future__ import annotations

import mujoco
import numpy as np

from embodiments.transforms import GL_TO_CV, intrinsics_from_fovy, make_transform


def mujoco_cam_from_cv(T_world_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MuJoCo camera ``(pos (3,), quat (4,) wxyz)`` of an OpenCV world-from-camera pose (4, 4)."""
    T_world_cam = np.asarray(T_world_cam, dtype=np.float64)
    if T_world_cam.shape != (4, 4):
        raise ValueError(f"T_world_cam must be a (4, 4) transform, got shape {T_world_cam.shape}")
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, (T_world_cam[:3, :3] @ GL_TO_CV).reshape(-1))
    return T_world_cam[:3, 3].copy(), quat


def cv_from_mujoco_cam(cam_xpos: np.ndarray, cam_xmat: np.ndarray) -> np.ndarray:
    """OpenCV world-from-camera pose(s) (..., 4, 4) from MuJoCo ``cam_xpos`` (..., 3) and ``cam_xmat`` (..., 9)."""
    R_gl = np.asarray(cam_xmat, dtype=np.float64).reshape(np.shape(cam_xmat)[:-1] + (3, 3))
    return make_transform(R_gl @ GL_TO_CV, cam_xpos)


def camera_intrinsics(model: mujoco.MjModel, cam_id: int, height: int, width: int) -> np.ndarray:
    """Pixel intrinsics K (3, 3) of a perspective MuJoCo camera rendered at ``height × width``.

    MuJoCo's ``fovy`` is the vertical field of view with square pixels and the principal point at the image
    centre, which is exactly :func:`embodiments.transforms.intrinsics_from_fovy`.
    """
    if model.cam_projection[cam_id] != mujoco.mjtProjection.mjPROJ_PERSPECTIVE:
        raise ValueError("only perspective cameras have pinhole intrinsics")
    if np.any(model.cam_intrinsic[cam_id] != 0) and np.any(model.cam_sensorsize[cam_id] != 0):
        raise ValueError("cameras defined by sensorsize/focal length are not supported; give the camera a fovy")
    return intrinsics_from_fovy(float(model.cam_fovy[cam_id]), width, height)
