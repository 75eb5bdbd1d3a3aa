"""Independent numpy forward kinematics of the Unitree G1 right arm, from the numbers of Unitree's URDFs
(g1_body29_hand14.urdf for the Dex3 palm, unitree_ros g1_29dof_rev_1_0_with_inspire_hand_DFQ.urdf for the Inspire
base, g1_29dof_rev_1_0.urdf's d435_joint for the head camera)."""

from __future__ import annotations

import numpy as np

from embodiments.transforms import invert_transform, make_transform, rotation_about


def rpy(r, p, y):
    return rotation_about([0, 0, 1], y) @ rotation_about([0, 1, 0], p) @ rotation_about([1, 0, 0], r)


def joint(xyz, r=(0, 0, 0), axis=None, q=0.0):
    """URDF joint transform: origin (xyz, rpy) then rotation about the axis."""
    T = make_transform(rpy(*r), xyz)
    return T @ make_transform(rotation_about(axis, q), np.zeros(3)) if axis is not None else T


MOUNTS = {"dex3": joint([0.0415, -0.003, 0]), "inspire": joint([0.0415, 0, 0], (np.pi, 0, -np.pi / 2))}


def g1_right_hand_in_camera(arm, hand: str = "dex3"):
    """Camera-from-right-hand-root (4, 4) for 14 arm joints (Unitree order); ``hand`` "dex3" or "inspire"."""
    a = np.asarray(arm, np.float64)[7:]
    T = (joint([0.0039563, -0.10021, 0.23778], (-0.27931, 5.4949e-05, 0.00019159), [0, 1, 0], a[0])
         @ joint([0, -0.038, -0.013831], (0.27925, 0, 0), [1, 0, 0], a[1])
         @ joint([0, -0.00624, -0.1032], axis=[0, 0, 1], q=a[2])
         @ joint([0.015783, 0, -0.080518], axis=[0, 1, 0], q=a[3])
         @ joint([0.100, -0.00188791, -0.010], axis=[1, 0, 0], q=a[4])
         @ joint([0.038, 0, 0], axis=[0, 1, 0], q=a[5])
         @ joint([0.046, 0, 0], axis=[0, 0, 1], q=a[6])
         @ MOUNTS[hand])
    cam = joint([0.0576235, 0.01753, 0.42987], (0, 0.8307767239493009, 0))
    # optical frame: x right = -y_body, y down = -z_body, z forward = x_body
    cam = cam @ make_transform(np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float), np.zeros(3))
    return invert_transform(cam) @ T
