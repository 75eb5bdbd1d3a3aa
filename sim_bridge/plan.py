"""Plan → physics: joints of a robot hand (for example edited ones) → retargeted joint angles → MuJoCo rollout.

So that an imagined video and the simulated one of the same joints can be shown side by side.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from embodiments.layout import SIDES, hand_slots
from embodiments.sparse import SparseJoints

SIM_MODES = ("kinematic", "physics")


@dataclasses.dataclass
class SimResult:
    frames: np.ndarray  # (T, H, W, 3) uint8
    joints: SparseJoints  # the robot's joints as rolled out, in the (simulated) camera frame
    robot: str
    source: str
    fit_rms: float  # metres: how far the rigidly placed robot keypoints are from the edited joints (max over frames)
    issues: list[str]


def _registered() -> list[str]:
    import embodiments

    return embodiments.names()


def simulation_pair(joints: SparseJoints, robot: str | None = None) -> tuple[str, str]:
    """(source, target) hands for simulating ``joints``.

    The target is ``robot``, else the joints' own robot hand, else Inspire on the side with the most valid joints.
    The source is the joints' own hand on the target's side if it is a registered hand, else the human hand.
    """
    names = _registered()
    own = [h for h in joints.embodiment.split("+") if h in names]
    if robot is None:
        robots = [h for h in own if not h.startswith("mano_")]
        if robots:
            robot = robots[0]
        else:
            counts = {s: joints.valid[:, hand_slots(s).start:hand_slots(s).stop].sum() for s in SIDES}
            robot = f"inspire_{max(counts, key=counts.get)}"
    if robot not in names or robot.startswith("mano_"):
        raise ValueError(f"simulate needs a robot hand; choose one of "
                         f"{', '.join(n for n in names if not n.startswith('mano_'))}, got {robot!r}")
    side = "left" if robot.endswith("_left") else "right"
    s = hand_slots(side)
    if not joints.valid[:, s.start:s.stop].any():
        raise ValueError(f"{robot} is a {side} hand but the joints have no valid {side}-hand joints; pick a robot "
                         f"for the other side")
    same_side = [h for h in own if h.endswith(f"_{side}")]
    source = same_side[0] if same_side else f"mano_{side}"
    return source, robot


def simulate(joints: SparseJoints, image_size: tuple[int, int], robot: str | None = None, mode: str = "kinematic",
             height: int = 192, seed: int = 0) -> SimResult:
    """Retarget ``joints`` (camera frame, with K) to ``robot`` and roll it out in MuJoCo.

    The robot's root pose per frame is the rigid fit of its forward kinematics to the edited joints in the camera;
    the scene's head camera gets the reference camera's vertical field of view (from K and ``image_size`` (H, W))
    and the hand is placed relative to it as in the reference camera. Rendered at ``height`` rows, same aspect.
    """
    import mujoco

    from retarget import Retargeter
    from sim_bridge.camera import cv_from_mujoco_cam
    from sim_bridge.hand_pose import fit_root_pose
    from sim_bridge.rollout import rollout
    from sim_bridge.scene import SceneConfig, build_scene

    if mode not in SIM_MODES:
        raise ValueError(f"simulation mode must be one of {SIM_MODES}, got {mode!r}")
    source, robot = simulation_pair(joints, robot)
    q = Retargeter(source, robot).retarget(joints)
    T_cam_root, rms = fit_root_pose(robot, q, joints)
    H0, W0 = image_size
    fy = joints.frame_K()[0, 1, 1]
    fovy = float(np.degrees(2 * np.arctan(H0 / (2 * fy))))
    scene = build_scene(robot, SceneConfig(randomize=False, fovy_deg=(fovy, fovy)), seed=seed)
    data = mujoco.MjData(scene.model)
    mujoco.mj_forward(scene.model, data)
    cam = scene.camera_id("ego")
    T_world_cam = cv_from_mujoco_cam(data.cam_xpos[cam], data.cam_xmat[cam])
    H = int(height)
    W = max(2, int(round(H * W0 / H0 / 2)) * 2)
    roll = rollout(robot, q, T_world_cam @ T_cam_root, camera="ego", mode=mode, size=(H, W), scene=scene,
                   fps=joints.fps)
    return SimResult(frames=roll.frames, joints=roll.joints, robot=robot, source=source, fit_rms=float(np.max(rms)),
                     issues=list(roll.issues))
