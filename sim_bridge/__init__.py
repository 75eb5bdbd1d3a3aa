"""The outside world: MuJoCo scenes, rollouts and rendering, synthetic clips, LeRobot datasets, Humanoid Everyday,
Unitree teleoperation recordings.

Imported eagerly: ``sim_bridge.rollout`` must be the function, not the submodule of the same name (a lazy
``__getattr__`` would lose to the submodule once anything imported ``sim_bridge.rollout``).
"""

import os

# Headless machines render offscreen through EGL unless the user chose a MuJoCo GL backend (read at import).
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"


from .humanoid_everyday import ingest as ingest_humanoid_everyday
from .lerobot_io import Episode, export_lerobot, import_lerobot
from .motion import HandAxes, hand_axes, wrist_pose
from .render import FrameRenderer
from .rollout import SimRollout, rollout
from .scene import Scene, SceneConfig, build_scene, randomize_appearance
from .synth import SynthConfig, SynthReport, synthesize
from .xr_teleoperate import ingest as ingest_unitree

__all__ = [
    "Episode", "export_lerobot", "import_lerobot", "ingest_humanoid_everyday", "ingest_unitree",
    "FrameRenderer", "HandAxes", "Scene", "SceneConfig", "SimRollout", "SynthConfig", "SynthReport", "build_scene",
    "hand_axes", "randomize_appearance", "rollout", "synthesize", "wrist_pose",
]
