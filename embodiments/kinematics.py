"""Forward kinematics of a hand URDF through pinocchio, batched over leading dimensions of q.

Mimic joints are parsed by pinocchio (``mimic=True``), so a configuration holds the actuated joints only.
"""

from __future__ import annotations

import numpy as np
import pinocchio as pin


class HandKinematics:
    """Pinocchio model of one hand; ``q`` vectors are ordered as ``joint_names`` (actuated joints)."""

    def __init__(self, urdf_xml: str, joint_names: list[str] | None = None):
        try:
            self.model = pin.buildModelFromXML(urdf_xml, mimic=True)
        except Exception as e:  # pinocchio raises plain RuntimeError/ValueError with C++ messages
            raise ValueError(f"could not parse URDF: {e}") from None
        self.data = self.model.createData()
        # Actuated joints in pinocchio's q order: one configuration entry each (mimic joints have nq == 0).
        pin_joints = [(j.idx_q, name) for j, name in zip(self.model.joints, self.model.names, strict=True)
                      if j.idx_q >= 0 and j.nq == 1 and j.shortname() != "JointModelMimic"]
        self.pin_joint_names = [name for _, name in sorted(pin_joints)]
        if len(self.pin_joint_names) != self.model.nq:
            raise ValueError("only revolute/prismatic (and mimic) joints are supported in a hand URDF")
        names = list(joint_names) if joint_names is not None else self.pin_joint_names
        missing = [n for n in names if n not in self.pin_joint_names]
        if missing or len(names) != len(self.pin_joint_names):
            raise ValueError(f"joint_names must list each actuated URDF joint once; URDF has "
                             f"{self.pin_joint_names}, got {names}")
        self.joint_names = names
        self._perm = np.array([names.index(n) for n in self.pin_joint_names])
        ordered = {n: i for i, n in enumerate(self.pin_joint_names)}
        idx = [ordered[n] for n in names]
        self.lower = np.asarray(self.model.lowerPositionLimit)[idx].copy()
        self.upper = np.asarray(self.model.upperPositionLimit)[idx].copy()

    @property
    def frame_names(self) -> list[str]:
        return [f.name for f in self.model.frames]

    def frame_id(self, name: str) -> int:
        if not self.model.existFrame(name):
            raise KeyError(f"frame {name!r} not in the hand model; frames: {', '.join(self.frame_names[1:])}")
        return self.model.getFrameId(name)

    def frame_positions(self, q: np.ndarray, frames: list[str]) -> np.ndarray:
        """Positions (..., F, 3) of ``frames`` in the root frame for configurations q (..., dof)."""
        q = np.asarray(q, dtype=np.float64)
        ids = [self.frame_id(f) for f in frames]
        flat = q.reshape(-1, q.shape[-1])[:, self._perm]
        out = np.empty((flat.shape[0], len(ids), 3))
        model, data = self.model, self.data
        # pinocchio evaluates one configuration per call; the loop stays in C++ for everything but dispatch.
        for i, qi in enumerate(flat):
            pin.forwardKinematics(model, data, qi)
            for k, fid in enumerate(ids):
                out[i, k] = pin.updateFramePlacement(model, data, fid).translation
        return out.reshape(q.shape[:-1] + (len(ids), 3))

    def frame_transforms(self, q: np.ndarray, frames: list[str]) -> np.ndarray:
        """Root-from-frame transforms (..., F, 4, 4)."""
        q = np.asarray(q, dtype=np.float64)
        ids = [self.frame_id(f) for f in frames]
        flat = q.reshape(-1, q.shape[-1])[:, self._perm]
        out = np.empty((flat.shape[0], len(ids), 4, 4))
        for i, qi in enumerate(flat):
            pin.forwardKinematics(self.model, self.data, qi)
            for k, fid in enumerate(ids):
                out[i, k] = pin.updateFramePlacement(self.model, self.data, fid).homogeneous
        return out.reshape(q.shape[:-1] + (len(ids), 4, 4))
