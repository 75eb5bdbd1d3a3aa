"""The ``Embodiment`` interface every hand in the registry implements."""

from __future__ import annotations

import abc
import warnings

import numpy as np

from .layout import NUM_SLOTS, SLOT_NAMES

# Joint angles this far outside a limit are clipped without a warning: float32 storage of an angle at its limit
# (e.g. a trajectory file, or a retargeted solution exactly at a bound) rounds it by up to ~1e-7 rad.
LIMIT_TOLERANCE = 1e-5


class JointLimitWarning(UserWarning):
    """Joint angles outside the embodiment's limits were clipped."""


class Embodiment(abc.ABC):
    """A hand that maps its joint angles into the shared 42-slot sparse-joint space.

    Attributes:
        name: registry name, e.g. ``"dex3_right"``.
        side: ``"left"`` or ``"right"``.
        joint_names: actuated joints, in the order of every joint vector ``q`` this embodiment takes.
        lower, upper: joint limits (dof,) in radians.
        slot_frames: shared slot name (``"right_index_tip"``) → frame name in the hand's model.
        input_layout: joint layout of raw one-hand arrays of this hand's motion: ``"mano"`` (21 joints, the slot
            order) or ``"webxr"`` (25 joints).
    """

    name: str
    side: str
    joint_names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    slot_frames: dict[str, str]
    # Joint layout of raw (T, J, 3) arrays of one hand given as this hand's motion (embodiments.skeletons.LAYOUTS).
    input_layout: str = "mano"

    @property
    def dof(self) -> int:
        return len(self.joint_names)

    @property
    def slot_mask(self) -> np.ndarray:
        """(42,) bool: the slots this hand fills."""
        mask = np.zeros(NUM_SLOTS, bool)
        mask[[SLOT_NAMES.index(s) for s in self.slot_frames]] = True
        return mask

    @property
    @abc.abstractmethod
    def urdf_xml(self) -> str:
        """URDF text of the hand, root link = the hand's base link."""

    @property
    @abc.abstractmethod
    def mjcf_xml(self) -> str:
        """MJCF text of the same hand (mimic couplings as equality constraints)."""

    @abc.abstractmethod
    def frame_positions(self, q: np.ndarray, frames: list[str]) -> np.ndarray:
        """Positions (..., len(frames), 3) of named model frames in the hand root frame, for checked q (..., dof)."""

    def neutral(self) -> np.ndarray:
        """A joint vector inside the limits: zero where allowed, else the nearest limit."""
        return np.clip(np.zeros(self.dof), self.lower, self.upper)

    def check_q(self, q: np.ndarray, strict: bool = False) -> np.ndarray:
        """Validate a joint vector (..., dof): shape, finiteness, limits (clipped with a warning unless strict)."""
        q = np.asarray(q, dtype=np.float64)
        if q.ndim == 0 or q.shape[-1] != self.dof:
            raise ValueError(f"{self.name}: joint vector must end in dimension {self.dof} "
                             f"({', '.join(self.joint_names)}), got shape {q.shape}")
        if not np.isfinite(q).all():
            raise ValueError(f"{self.name}: joint vector contains NaN or inf")
        out = (q < self.lower - LIMIT_TOLERANCE) | (q > self.upper + LIMIT_TOLERANCE)
        if out.any():
            idx = np.unique(np.nonzero(out)[-1])
            names = ", ".join(self.joint_names[i] for i in idx)
            if strict:
                raise ValueError(f"{self.name}: joint angles outside limits for {names}")
            warnings.warn(f"{self.name}: clipped joint angles outside limits for {names}", JointLimitWarning,
                          stacklevel=3)
            q = np.clip(q, self.lower, self.upper)
        return q

    def sparse_joints(self, q: np.ndarray, strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Shared-space joints of configuration(s) q (..., dof).

        Returns positions (..., 42, 3) in the hand root frame (zeros in slots the hand lacks) and validity (42,).
        """
        q = self.check_q(q, strict=strict)
        slots = [SLOT_NAMES.index(s) for s in self.slot_frames]
        pos = np.zeros(q.shape[:-1] + (NUM_SLOTS, 3))
        pos[..., slots, :] = self.frame_positions(q, list(self.slot_frames.values()))
        return pos, self.slot_mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dof={self.dof}, slots={int(self.slot_mask.sum())})"
