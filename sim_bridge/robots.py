"""Unitree humanoids (G1 + Dex3-1, H1-2 + Inspire): which hands they carry, their head camera, and arm forward
kinematics that place each hand's root link in the head-camera frame.

The arm chains are our own minimal URDFs in ``sim_bridge/assets/`` (torso → 7-DoF arms → hand mount, plus the head
camera's OpenCV optical frame), written from Unitree's published joint origins and axes; pinocchio evaluates them.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pinocchio as pin

from embodiments.transforms import intrinsics, invert_transform

from .unitree import arm_feature_names

ASSETS = Path(__file__).parent / "assets"

# The only intrinsics Humanoid Everyday publishes (its loader's depth back-projection, 640×480 RealSense, the same
# for both robots, with a TODO to add per-robot colour intrinsics). Used as the default colour K; override with a
# calibrated one when known.
HE_PUBLISHED_K = intrinsics(389.07278, 389.07278, 321.61887, 238.43630)


@dataclasses.dataclass(frozen=True)
class RobotSpec:
    """A humanoid with two hands and a head camera.

    Attributes:
        name: ``"g1"`` or ``"h1_2"``.
        urdf: upper-body URDF (torso_link root).
        hands: side → registered hand name.
        mounts: side → URDF link the hand's root link coincides with.
        camera_frame: optical frame of the head camera (OpenCV axes).
        K: default colour intrinsics for ``image_size``.
        image_size: (height, width) of the colour stream.
        camera_mount_verified: False when the camera mount is an assumption (see the URDF header).
    """

    name: str
    urdf: Path
    hands: dict[str, str]
    mounts: dict[str, str]
    camera_frame: str
    K: np.ndarray
    image_size: tuple[int, int] = (480, 640)
    camera_mount_verified: bool = True


ROBOTS: dict[str, RobotSpec] = {
    "g1": RobotSpec("g1", ASSETS / "g1_upper_body.urdf", {"left": "dex3_left", "right": "dex3_right"},
                    {"left": "left_hand_palm_link", "right": "right_hand_palm_link"}, "head_camera_optical",
                    HE_PUBLISHED_K),
    # G1 with Inspire DFQ hands (unitree_IL_lerobot "Unitree_G1_Inspire"): same arms and head camera as the G1
    "g1_inspire": RobotSpec("g1_inspire", ASSETS / "g1_upper_body.urdf",
                            {"left": "inspire_left", "right": "inspire_right"},
                            {"left": "L_hand_base_link", "right": "R_hand_base_link"}, "head_camera_optical",
                            HE_PUBLISHED_K),
    "h1_2": RobotSpec("h1_2", ASSETS / "h1_2_upper_body.urdf", {"left": "inspire_left", "right": "inspire_right"},
                      {"left": "L_hand_base_link", "right": "R_hand_base_link"}, "head_camera_optical",
                      HE_PUBLISHED_K, camera_mount_verified=False),
}
ROBOT_ALIASES = {"g1": "g1", "g1_dex3": "g1", "g1_inspire": "g1_inspire", "g1+inspire": "g1_inspire",
                 "h1_2": "h1_2", "h1-2": "h1_2", "h12": "h1_2", "h1": "h1_2"}


def robot_spec(name: str) -> RobotSpec:
    """The robot called ``name`` (``g1``, ``g1_inspire``, ``h1_2``; ``h1``/``h1-2`` mean the H1-2 of Humanoid
    Everyday)."""
    key = ROBOT_ALIASES.get(str(name).lower())
    if key is None:
        raise ValueError(f"unknown robot {name!r}; known robots: {', '.join(sorted(ROBOTS))}")
    return ROBOTS[key]


def robot_with_hands(robot: str, hands: list[str] | tuple[str, ...]) -> str:
    """The robot spec name for ``robot`` carrying ``hands``: ``("g1", ["inspire_left", …])`` → ``"g1_inspire"``.

    Raises when no spec of that robot body carries those hands.
    """
    base = robot_spec(robot)
    body = base.urdf
    for name, spec in ROBOTS.items():
        if spec.urdf == body and set(hands) <= set(spec.hands.values()):
            return name
    raise ValueError(f"robot {robot!r} has no model with hands {list(hands)}; known: "
                     + ", ".join(f"{n} ({'+'.join(s.hands.values())})" for n, s in ROBOTS.items()))


class ArmKinematics:
    """Forward kinematics of a robot's upper body: hand roots and head camera in the torso frame.

    Arm vectors (T, 14) follow Unitree's order (:func:`sim_bridge.unitree.arm_feature_names`: left shoulder
    pitch/roll/yaw, elbow, wrist roll/pitch/yaw, then right).
    """

    def __init__(self, robot: str | RobotSpec):
        self.spec = robot if isinstance(robot, RobotSpec) else robot_spec(robot)
        self.model = pin.buildModelFromXML(self.spec.urdf.read_text())
        self.data = self.model.createData()
        joints = [f"{s}_{p}_joint" for s in ("left", "right")
                  for p in ("shoulder_pitch", "shoulder_roll", "shoulder_yaw", "elbow", "wrist_roll",
                            "wrist_pitch", "wrist_yaw")]
        self.arm_names = arm_feature_names()
        # position in pinocchio's q of each Unitree arm slot
        self._q_index = np.array([self.model.joints[self.model.getJointId(j)].idx_q for j in joints])
        self._frames = {side: self.model.getFrameId(link) for side, link in self.spec.mounts.items()}
        self._cam = self.model.getFrameId(self.spec.camera_frame)

    def torso_transforms(self, arm_q: np.ndarray) -> dict[str, np.ndarray]:
        """Torso-from-frame transforms (T, 4, 4) of ``"left"``, ``"right"`` hand roots and ``"camera"``."""
        arm_q = np.asarray(arm_q, dtype=np.float64)
        if arm_q.ndim != 2 or arm_q.shape[1] != 14:
            raise ValueError(f"arm joint vectors must have shape (T, 14) ({', '.join(self.arm_names)}), "
                             f"got {arm_q.shape}")
        if not np.isfinite(arm_q).all():
            raise ValueError("arm joint vectors contain NaN or inf")
        out = {k: np.empty((len(arm_q), 4, 4)) for k in ("left", "right", "camera")}
        q = np.zeros(self.model.nq)
        ids = {**self._frames, "camera": self._cam}
        # pinocchio evaluates one configuration per call; the loop only dispatches.
        for t, qa in enumerate(arm_q):
            q[self._q_index] = qa
            pin.forwardKinematics(self.model, self.data, q)
            for key, fid in ids.items():
                out[key][t] = pin.updateFramePlacement(self.model, self.data, fid).homogeneous
        return out

    def camera_from_roots(self, arm_q: np.ndarray, T_torso_cam: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Camera-from-hand-root transforms (T, 4, 4) per hand name.

        ``T_torso_cam`` (4, 4) overrides the URDF's head-camera mount with a calibrated camera-to-torso transform
        (OpenCV camera axes).
        """
        tf = self.torso_transforms(arm_q)
        if T_torso_cam is not None:
            T_torso_cam = np.asarray(T_torso_cam, dtype=np.float64)
            if T_torso_cam.shape != (4, 4):
                raise ValueError(f"T_torso_cam must be a (4, 4) transform, got shape {T_torso_cam.shape}")
            cam = np.broadcast_to(T_torso_cam, tf["camera"].shape)
        else:
            cam = tf["camera"]
        T_cam_torso = invert_transform(cam)
        return {self.spec.hands[s]: T_cam_torso @ tf[s] for s in ("left", "right")}


@functools.lru_cache(maxsize=4)
def arm_kinematics(robot: str) -> ArmKinematics:
    """Cached :class:`ArmKinematics` of a robot name."""
    return ArmKinematics(robot_spec(robot))
