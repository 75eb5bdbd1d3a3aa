"""Batched, differentiable forward kinematics in torch, built from an embodiment's pinocchio model.

Why not pinocchio alone: pinocchio evaluates one configuration per call, while the retargeting solver needs the
positions *and* Jacobians of a whole sequence at once (T configurations, CPU or GPU, autograd-compatible). This
module reads the kinematic tree out of pinocchio (joint placements, joint types and axes, mimic multipliers and
offsets, frame placements) once, and evaluates it level by level of the tree, all frames of a sequence in one
tensor op per level. Tests check it against ``pinocchio.forwardKinematics`` to 1e-6.
"""

from __future__ import annotations

import numpy as np
import pinocchio as pin
import torch

_AXIS_TYPES = {
    "JointModelRX": ("revolute", (1.0, 0.0, 0.0)), "JointModelRY": ("revolute", (0.0, 1.0, 0.0)),
    "JointModelRZ": ("revolute", (0.0, 0.0, 1.0)), "JointModelPX": ("prismatic", (1.0, 0.0, 0.0)),
    "JointModelPY": ("prismatic", (0.0, 1.0, 0.0)), "JointModelPZ": ("prismatic", (0.0, 0.0, 1.0)),
}  # fmt: skip


def _identify_mimic(model: pin.Model, jid: int, scaling: float, offset: float) -> tuple[str, np.ndarray]:
    """Type and axis of a mimic joint, read off its motion.

    pinocchio's Python bindings do not expose the joint model a ``JointModelMimic`` wraps, so we evaluate the
    joint-local motion at two values of the mimicked coordinate and take the log of their difference.
    """
    if abs(scaling) < 1e-12:
        raise ValueError(f"mimic joint {model.names[jid]!r} has multiplier 0; it cannot be represented")
    data = model.createData()
    motions = []
    for value in (0.0, 0.5):
        q = pin.neutral(model)
        q[model.joints[jid].idx_q] = value
        pin.forwardKinematics(model, data, q)
        motions.append(model.jointPlacements[jid].actInv(data.liMi[jid]))
    nu = pin.log6(motions[0].actInv(motions[1]))
    w, v = np.asarray(nu.angular), np.asarray(nu.linear)
    step = 0.5 * scaling
    if np.linalg.norm(w) > 1e-9:
        return "revolute", w / step
    return "prismatic", v / step


class TorchFK:
    """Forward kinematics of a hand for batches of actuated joint vectors q (..., dof) in ``joint_names`` order.

    Args:
        model: pinocchio model built with ``mimic=True`` (e.g. ``embodiment.kinematics.model``).
        joint_names: order of the actuated coordinates in q (default: pinocchio's order).
        frames: names of the model frames to evaluate (positions (..., F, 3) in the root frame).
        dtype, device: of all tensors produced.
    """

    def __init__(self, model: pin.Model, joint_names: list[str] | tuple[str, ...] | None, frames: list[str],
                 dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"):
        self.dtype, self.device = dtype, torch.device(device)
        actuated = [(j.idx_q, model.names[i]) for i, j in enumerate(model.joints)
                    if i > 0 and j.nq == 1 and j.shortname() != "JointModelMimic"]
        pin_order = [n for _, n in sorted(actuated)]
        names = list(joint_names) if joint_names is not None else pin_order
        if sorted(names) != sorted(pin_order):
            raise ValueError(f"joint_names must list the actuated joints {pin_order}, got {names}")
        self.joint_names = tuple(names)
        q_index_of_idx_q = {model.joints[model.getJointId(n)].idx_q: k for k, n in enumerate(names)}

        nj = model.njoints
        kind = np.zeros(nj, np.int64)  # 0 fixed (universe), 1 revolute, 2 prismatic
        axis = np.zeros((nj, 3))
        source = np.zeros(nj, np.int64)
        mult = np.zeros(nj)
        offs = np.zeros(nj)
        for i in range(1, nj):
            jm = model.joints[i]
            short = jm.shortname()
            if short == "JointModelMimic":
                ex = jm.extract()
                scaling, offset = float(ex.scaling), float(ex.offset)
                jtype, ax = _identify_mimic(model, i, scaling, offset)
            elif short in _AXIS_TYPES:
                jtype, ax = _AXIS_TYPES[short]
                scaling, offset = 1.0, 0.0
            elif short in ("JointModelRevoluteUnaligned", "JointModelPrismaticUnaligned"):
                jtype = "revolute" if "Revolute" in short else "prismatic"
                ax = np.asarray(jm.extract().axis)
                scaling, offset = 1.0, 0.0
            else:
                raise ValueError(f"joint {model.names[i]!r} of type {short} is not supported by TorchFK "
                                 "(revolute, prismatic and mimic joints are)")
            kind[i] = 1 if jtype == "revolute" else 2
            axis[i] = np.asarray(ax, dtype=np.float64) / np.linalg.norm(ax)
            source[i] = q_index_of_idx_q[jm.idx_q]
            mult[i], offs[i] = scaling, offset

        parents = np.asarray(model.parents, dtype=np.int64)
        depth = np.zeros(nj, np.int64)
        for i in range(1, nj):
            depth[i] = depth[parents[i]] + 1
        # Joints are evaluated in "level order" (grouped by depth in the tree): a level's parents all lie in
        # the level before it, so each level is one batched composition with a gather from the previous one.
        order = np.argsort(depth, kind="stable")  # level order -> joint id (universe first)
        pos_of = np.empty(nj, np.int64)
        pos_of[order] = np.arange(nj)
        self._level_slices = []
        self._level_parent = []  # per level: parent's index within the previous level
        for d in range(1, int(depth.max()) + 1 if nj > 1 else 1):
            members = order[depth[order] == d]
            prev = order[depth[order] == d - 1]
            start = int(pos_of[members[0]])
            self._level_slices.append(slice(start, start + len(members)))
            self._level_parent.append(torch.as_tensor([int(np.flatnonzero(prev == parents[m])[0]) for m in members],
                                                      device=self.device))
        o = order[1:]  # movable joints in level order (the universe is the identity)
        placements = np.stack([model.jointPlacements[int(i)].homogeneous for i in o]) if len(o) else np.zeros((0, 4, 4))
        self._pl_R = self._t(placements[:, :3, :3])
        self._pl_p = self._t(placements[:, :3, 3])
        self._axis = self._t(axis[o])
        # Rodrigues, R_pj(θ) = P (I + sin θ K + (1 - cos θ) K²) with P the placement rotation: precompute P, P K and
        # P K² so that a configuration costs three scaled sums instead of two 3×3 products per joint.
        K = np.zeros((len(o), 3, 3))
        ax = axis[o]
        K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -ax[:, 2], ax[:, 1], -ax[:, 0]
        K = K - np.swapaxes(K, 1, 2)
        P = placements[:, :3, :3]
        self._PK = self._t(P @ K)
        self._PK2 = self._t(P @ K @ K)
        self._P_axis = self._t((P @ ax[..., None])[..., 0])
        self._rev_mask = self._t((kind[o] == 1).astype(float))
        self._pri_mask = self._t((kind[o] == 2).astype(float))
        self._source = torch.as_tensor(source[o], device=self.device)
        self._mult = self._t(mult[o])
        self._offs = self._t(offs[o])
        self.num_joints = nj
        self.dof = len(names)

        # Frames: parent joint (as a level-order position, 0 = universe) and placement in it.
        missing = [f for f in frames if not model.existFrame(f)]
        if missing:
            raise KeyError(f"frames {missing} not in the model; frames: {[f.name for f in model.frames]}")
        fids = [model.getFrameId(f) for f in frames]
        self.frames = tuple(frames)
        self._f_joint = torch.as_tensor([int(pos_of[model.frames[f].parentJoint]) for f in fids],
                                        dtype=torch.long, device=self.device)
        fpl = np.stack([model.frames[f].placement.homogeneous for f in fids]) if fids else np.zeros((0, 4, 4))
        self._f_R = self._t(fpl[:, :3, :3])
        self._f_p = self._t(fpl[:, :3, 3])
        # Jacobian: only (frame, joint) pairs where the joint moves the frame (its support path) contribute.
        pf, pj = [], []
        for k, f in enumerate(fids):
            j = model.frames[f].parentJoint
            while j > 0:
                pf.append(k)
                pj.append(j)
                j = parents[j]
        pf, pj = np.asarray(pf, np.int64), np.asarray(pj, np.int64)
        self._pair_f = torch.as_tensor(pf, device=self.device)
        self._pair_j = torch.as_tensor(pos_of[pj], device=self.device)  # level-order position (>= 1)
        self._pair_rev = torch.as_tensor(kind[pj] == 1, device=self.device)[:, None]
        self._any_prismatic = bool((kind[pj] == 2).any())
        self._pair_mult = self._t(mult[pj])[:, None]
        self._pair_col = torch.as_tensor(pf * self.dof + source[pj], device=self.device)
        #: (dof,) bool: the actuated joints that move at least one of the frames.
        self.moving_joints = np.zeros(self.dof, bool)
        self.moving_joints[source[pj]] = True

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=self.dtype, device=self.device)

    def joint_values(self, q: torch.Tensor) -> torch.Tensor:
        """Coordinate of every movable joint (..., J-1) in level order: ``multiplier * q + offset`` (1, 0 when
        actuated)."""
        return q[..., self._source] * self._mult + self._offs

    def joint_transforms(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Root-from-joint rotations (..., J, 3, 3) and origins (..., J, 3) in level order (index 0: universe)."""
        q = torch.as_tensor(q, dtype=self.dtype, device=self.device)
        if q.shape[-1] != self.dof:
            raise ValueError(f"q must end in dimension {self.dof} ({', '.join(self.joint_names)}), "
                             f"got {tuple(q.shape)}")
        theta = self.joint_values(q)
        batch = q.shape[:-1]
        ang = (theta * self._rev_mask)[..., None, None]
        R_pj = self._pl_R + torch.sin(ang) * self._PK + (1 - torch.cos(ang)) * self._PK2  # parent ← joint
        p_pj = self._pl_p + (theta * self._pri_mask)[..., None] * self._P_axis  # prismatic: along the axis
        eye = torch.eye(3, dtype=self.dtype, device=self.device)
        Rs = [eye.expand(*batch, 1, 3, 3)]
        ps = [torch.zeros(*batch, 1, 3, dtype=self.dtype, device=self.device)]
        for sl, par in zip(self._level_slices, self._level_parent, strict=True):
            Rp, pp = Rs[-1][..., par, :, :], ps[-1][..., par, :]
            loc = slice(sl.start - 1, sl.stop - 1)  # R_pj/p_pj have no universe row
            Rs.append(Rp @ R_pj[..., loc, :, :])
            ps.append(pp + (Rp @ p_pj[..., loc, :, None])[..., 0])
        return torch.cat(Rs, dim=-3), torch.cat(ps, dim=-2)

    def frame_positions(self, q: torch.Tensor) -> torch.Tensor:
        """Positions (..., F, 3) of the frames in the root frame."""
        return self.forward(q)[0]

    def forward(self, q: torch.Tensor, jacobian: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frame positions (..., F, 3) and, if asked, their analytic Jacobian (..., F, 3, dof)."""
        R_all, p_all = self.joint_transforms(q)
        Rj = R_all[..., self._f_joint, :, :]
        pos = p_all[..., self._f_joint, :] + (Rj @ self._f_p[..., None])[..., 0]
        if not jacobian:
            return pos, None
        # d p_f / d theta_j = a_j x (p_f - o_j) (revolute) or a_j (prismatic), root frame, for supporting pairs.
        j = self._pair_j
        a_world = (R_all[..., j, :, :] @ self._axis[j - 1, :, None])[..., 0]  # (..., P, 3)
        col = torch.linalg.cross(a_world, pos[..., self._pair_f, :] - p_all[..., j, :])
        if self._any_prismatic:
            col = torch.where(self._pair_rev, col, a_world)
        col = col * self._pair_mult
        F = len(self.frames)
        jac = torch.zeros(*col.shape[:-2], F * self.dof, 3, dtype=self.dtype, device=self.device)
        jac = jac.index_add(-2, self._pair_col, col)  # mimic joints add into their source's column
        return pos, jac.view(*col.shape[:-2], F, self.dof, 3).transpose(-1, -2)
