"""Hands in one shared sparse-joint space: slot layout, registry, kinematics, the human hand, camera maths."""

from .base import Embodiment, JointLimitWarning
from .layout import HAND_JOINT_NAMES, NUM_HAND_JOINTS, NUM_SLOTS, SLOT_NAMES, hand_slots, slot_index
from .motions import human_motion, human_motion_angles
from .registry import get, mirror_twin, names, register
from .sparse import SparseJoints
from .spec import HandSpec, load_spec

__all__ = [
    "Embodiment", "HandSpec", "JointLimitWarning", "SparseJoints", "HAND_JOINT_NAMES", "NUM_HAND_JOINTS",
    "NUM_SLOTS", "SLOT_NAMES", "get", "hand_slots", "human_motion", "human_motion_angles", "load_spec",
    "mirror_twin", "names", "register", "slot_index",
]
