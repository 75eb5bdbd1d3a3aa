"""Retargeting: hand motion (human or robot keypoints) → robot joint angles, batched over whole sequences.

``Retargeter(source, target, method).retarget(motion)`` solves a whole sequence at once with a box-constrained
Levenberg–Marquardt over a differentiable torch forward kinematics; ``to_sparse_joints`` maps robot joint angles
back into the shared 42-slot space. See docs/retargeting.md.
"""

from .alignment import canonical_frames
from .config import METHODS, available_pairs, default_pair_config, load_pair_config
from .retargeter import HeldFramesWarning, Retargeter, RetargetResult
from .solver import SolverOptions, lowpass, solve_sequence
from .to_shared import to_sparse_joints
from .torch_fk import TorchFK

__all__ = [
    "METHODS", "HeldFramesWarning", "RetargetResult", "Retargeter", "SolverOptions", "TorchFK",
    "available_pairs", "canonical_frames", "default_pair_config", "load_pair_config", "lowpass",
    "solve_sequence", "to_sparse_joints",
]
