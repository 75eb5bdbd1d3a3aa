"""One check of (reference image size, intrinsics K, camera-frame joints), shared by every entry point.

A K made for another image size, a tiny image, a negative focal length or joints far outside any scene do not
fail in the maths: they silently make a different control signal. :func:`check_view` turns each into an error;
joints behind the camera (whose depth the control module clamps) become a :class:`ViewWarning`.
"""

from __future__ import annotations

import warnings

import numpy as np

from .layout import SLOT_NAMES
from .sparse import SparseJoints

MIN_IMAGE_SIDE = 16
MAX_IMAGE_SIDE = 4096
MAX_JOINT_DISTANCE_M = 100.0  # hands are within arm's reach of the camera; beyond this the units are wrong
PRINCIPAL_POINT_TOLERANCE = 0.2  # (cx, cy) within 20 % of the image size of its centre


class ViewWarning(UserWarning):
    """Joints that still make a control signal, but not the one the user probably meant."""


def check_image_size(height: int, width: int, name: str = "image") -> None:
    """Both sides in [MIN_IMAGE_SIDE, MAX_IMAGE_SIDE] pixels."""
    if min(height, width) < MIN_IMAGE_SIDE or max(height, width) > MAX_IMAGE_SIDE:
        raise ValueError(f"{name}: image is {width}x{height} pixels; both sides must be between {MIN_IMAGE_SIDE} "
                         f"and {MAX_IMAGE_SIDE}")


def check_intrinsics(K: np.ndarray, height: int, width: int, name: str = "image") -> None:
    """K (3, 3) or (T, 3, 3) must be finite with positive focal lengths and belong to an image of this size."""
    K = np.asarray(K, dtype=np.float64).reshape(-1, 3, 3)
    if not np.isfinite(K).all():
        raise ValueError(f"{name}: the intrinsics K are not finite")
    fx, fy = K[:, 0, 0], K[:, 1, 1]
    if (fx <= 0).any() or (fy <= 0).any():
        t = int(np.argmax((fx <= 0) | (fy <= 0)))
        raise ValueError(f"{name}: the intrinsics K have a non-positive focal length (fx={fx[t]:g}, fy={fy[t]:g} "
                         f"in frame {t}); expected fx, fy > 0 pixels")
    cx, cy = K[:, 0, 2], K[:, 1, 2]
    far = (np.abs(cx - width / 2) > PRINCIPAL_POINT_TOLERANCE * width) | (
        np.abs(cy - height / 2) > PRINCIPAL_POINT_TOLERANCE * height)
    if far.any():
        t = int(np.argmax(far))
        raise ValueError(f"{name}: image is {width}x{height} pixels but the joints' intrinsics K have their principal "
                         f"point at ({cx[t]:.0f}, {cy[t]:.0f}), which belongs to an image of about "
                         f"{2 * cx[t]:.0f}x{2 * cy[t]:.0f}; use the reference image the joints' K was made for "
                         "(or pass K in this image's pixels)")


def check_joint_depths(joints: SparseJoints, name: str = "joints") -> None:
    """Valid joints within MAX_JOINT_DISTANCE_M of the camera (error) and in front of it (else a ViewWarning)."""
    pos, valid = joints.positions, joints.valid
    if not valid.any():
        return
    dist = np.linalg.norm(pos.astype(np.float64), axis=-1)
    too_far = valid & ~(dist <= MAX_JOINT_DISTANCE_M)
    if too_far.any():
        t, s = np.argwhere(too_far)[0]
        raise ValueError(f"{name}: joint {SLOT_NAMES[s]} in frame {t} is {dist[t, s]:.3g} m from the camera; "
                         f"expected camera-frame positions in metres (within {MAX_JOINT_DISTANCE_M:g} m)")
    behind = valid & (pos[..., 2] <= 0)
    if behind.any():
        frames = np.flatnonzero(behind.any(-1))
        warnings.warn(f"{name}: {int(behind.sum())} of {int(valid.sum())} valid joints (in {len(frames)} frame(s), "
                      f"first frame {frames[0]}) lie behind the camera (z <= 0); they cannot be seen in the image and "
                      "the control signal treats them as just in front of it", ViewWarning, stacklevel=3)


def check_view(image_hw: tuple[int, int], joints: SparseJoints, K: np.ndarray | None = None,
               name: str = "image") -> None:
    """Check that ``joints`` (camera frame) with intrinsics ``K`` (default ``joints.K``) fit an image of
    ``image_hw`` = (height, width) pixels; ValueError (naming ``name``) or a ViewWarning otherwise."""
    height, width = (int(x) for x in image_hw)
    check_image_size(height, width, name)
    K = joints.K if K is None else K
    if K is not None:
        check_intrinsics(K, height, width, name)
    check_joint_depths(joints)
