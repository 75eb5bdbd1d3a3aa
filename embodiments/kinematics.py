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
        self._chain = self._build_chain()
        if self._chain is not None:
            self._check_chain()

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
        if self._chain is None:
            out = self._frames_loop(flat, ids)[..., :3, 3]
        else:
            out = np.concatenate([self._frames_batched(flat[i:i + _CHUNK], ids, rotations=False)[1]
                                  for i in range(0, len(flat), _CHUNK)] or [np.empty((0, len(ids), 3))])
        return out.reshape(q.shape[:-1] + (len(ids), 3))

    def frame_transforms(self, q: np.ndarray, frames: list[str]) -> np.ndarray:
        """Root-from-frame transforms (..., F, 4, 4)."""
        q = np.asarray(q, dtype=np.float64)
        ids = [self.frame_id(f) for f in frames]
        flat = q.reshape(-1, q.shape[-1])[:, self._perm]
        if self._chain is None:
            out = self._frames_loop(flat, ids)
        else:
            out = np.zeros((flat.shape[0], len(ids), 4, 4))
            out[..., 3, 3] = 1.0
            for i in range(0, len(flat), _CHUNK):
                rot, pos = self._frames_batched(flat[i:i + _CHUNK], ids, rotations=True)
                out[i:i + _CHUNK, :, :3, :3], out[i:i + _CHUNK, :, :3, 3] = rot, pos
        return out.reshape(q.shape[:-1] + (len(ids), 4, 4))

    # -- evaluation -------------------------------------------------------------------------------------------
    def _frames_loop(self, flat: np.ndarray, ids: list[int]) -> np.ndarray:
        """Reference path: pinocchio per configuration, (N, F, 4, 4). Used for joint types the batch lacks."""
        out = np.empty((flat.shape[0], len(ids), 4, 4))
        model, data = self.model, self.data
        for i, qi in enumerate(flat):
            pin.forwardKinematics(model, data, qi)
            for k, fid in enumerate(ids):
                out[i, k] = pin.updateFramePlacement(model, data, fid).homogeneous
        return out

    def _build_chain(self) -> list[tuple] | None:
        """Per joint (parent, A_R, A_t, q index, unit axis, scale, kind) from pinocchio's model, or None.

        Pinocchio evaluates one configuration per call, and for 10^4 frames the Python loop around it dominates.
        Every joint of a hand is 1-DoF (revolute, prismatic, or a mimic of one), so its placement is
        ``jointPlacement · M(0) · exp(S q)`` with pinocchio's own motion subspace S (mimic scaling included);
        evaluating that over all frames at once with numpy is the same computation, vectorised. The batch is
        checked against pinocchio at construction and is not used when they disagree.
        """
        model = self.model
        chain = []
        zero = np.zeros(model.nq)
        for i in range(1, model.njoints):
            jm = model.joints[i]
            jd = jm.createData()
            jm.calc(jd, zero)
            motion = np.asarray(jd.S, dtype=np.float64).reshape(-1)
            if motion.shape != (6,):
                return None
            lin, ang = motion[:3], motion[3:]
            if np.abs(lin).max() < 1e-12 < np.abs(ang).max():
                kind, vec = "R", ang
            elif np.abs(ang).max() < 1e-12 < np.abs(lin).max():
                kind, vec = "P", lin
            else:
                return None
            placement = model.jointPlacements[i] * jd.M
            scale = float(np.linalg.norm(vec))
            chain.append((model.parents[i], placement.rotation.copy(), placement.translation.copy(), jm.idx_q,
                          vec / scale, scale, kind))
        return chain

    def _joint_placements(self, flat: np.ndarray, upto: int) -> tuple[list, list]:
        """Root-from-joint rotations (3, 3, N) and translations (3, N) of joints 0..upto, batched over N.

        Components come first so every operation runs over contiguous length-N vectors (about 5x faster
        than stacks of small (N, 3, 3) matrices).
        """
        n = flat.shape[0]
        rots: list = [np.broadcast_to(np.eye(3)[:, :, None], (3, 3, n))]
        trans: list = [np.zeros((3, n))]
        for parent, a_r, a_t, iq, axis, scale, kind in self._chain[:upto]:
            theta = flat[:, iq] * scale
            if kind == "R":
                k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
                a_k, a_kk = a_r @ k, a_r @ (k @ k)  # A_R · Rodrigues(axis, θ) = A_R + sinθ A_R K + (1-cosθ) A_R K²
                local = (a_r[:, :, None] + a_k[:, :, None] * np.sin(theta)
                         + a_kk[:, :, None] * (1.0 - np.cos(theta)))
                off = np.broadcast_to(a_t[:, None], (3, n))
            else:
                local = np.broadcast_to(a_r[:, :, None], (3, 3, n))
                off = a_t[:, None] + (a_r @ axis)[:, None] * theta
            if parent == 0:
                rots.append(local)
                trans.append(off + 0.0)
            else:
                r_p = rots[parent]
                rots.append((r_p[:, :, None, :] * local[None, :, :, :]).sum(1))
                trans.append((r_p * off[None]).sum(1) + trans[parent])
        return rots, trans

    def _frames_batched(self, flat: np.ndarray, ids: list[int], rotations: bool):
        """Rotations (N, F, 3, 3) (or None) and positions (N, F, 3) of frames ``ids``."""
        n = flat.shape[0]
        frames = [self.model.frames[f] for f in ids]
        upto = max([f.parentJoint for f in frames], default=0)
        rots, trans = self._joint_placements(flat, upto)
        pos = np.empty((n, len(frames), 3))
        rot = np.empty((n, len(frames), 3, 3)) if rotations else None
        for k, f in enumerate(frames):
            r_j = rots[f.parentJoint]
            pos[:, k] = ((r_j * f.placement.translation[None, :, None]).sum(1) + trans[f.parentJoint]).T
            if rotations:
                rot[:, k] = np.einsum("ijn,jk->nik", r_j, f.placement.rotation)
        return rot, pos

    def _check_chain(self) -> None:
        """Drop the batched path unless it reproduces pinocchio on random configurations."""
        rng = np.random.default_rng(0)
        lo = np.where(np.isfinite(self.model.lowerPositionLimit), self.model.lowerPositionLimit, -np.pi)
        hi = np.where(np.isfinite(self.model.upperPositionLimit), self.model.upperPositionLimit, np.pi)
        flat = rng.uniform(lo, hi, size=(4, self.model.nq))
        ids = list(range(len(self.model.frames)))
        ref = self._frames_loop(flat, ids)
        rot, pos = self._frames_batched(flat, ids, rotations=True)
        if not (np.allclose(rot, ref[..., :3, :3], atol=1e-9) and np.allclose(pos, ref[..., :3, 3], atol=1e-9)):
            self._chain = None


_CHUNK = 1 << 15  # frames per batch: bounds the temporaries to a few tens of MB
