"""Batched, differentiable forward kinematics in torch, built from an embodiment's pinocchio model.

Why not pinocchio alone: pinocchio evaluates one configuration per call, while the retargeting solver needs the
positions *and* Jacobians of a whole sequence at once (T configurations, CPU or GPU, autograd-compatible). This
module evaluates the tree that :func:`embodiments.chain.read_chain` reads out of pinocchio (placements, joint types
and axes, mimic multipliers and offsets, frames) level by level, all frames of a sequence in one tensor op per
level. Tests check it against ``pinocchio.forwardKinematics`` to 1e-6.
"""

from __future__ import annotations

import numpy as np
import pinocchio as pin
import torch

from embodiments.chain import PRISMATIC, REVOLUTE, read_chain


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
        chain = read_chain(model, joint_names, frames)
        self.joint_names, self.frames = chain.joint_names, chain.frame_names
        kind, source, parents = chain.kind, chain.source, chain.parent
        nj = len(parents)
        depth = np.zeros(nj, np.int64)
        for i in range(1, nj):
            depth[i] = depth[parents[i]] + 1
        # Joints are evaluated in "level order" (grouped by depth in the tree): a level's parents all lie in
        # the level before it, so each level is one batched composition with a gather from the previous one.
        order = np.argsort(depth, kind="stable")  # level order -> joint id (universe first)
        pos_of = np.empty(nj, np.int64)
        pos_of[order] = np.arange(nj)
        starts = np.searchsorted(depth[order], np.arange(depth.max() + 2))  # level d: starts[d]:starts[d + 1]
        self._level_slices = [slice(int(a), int(b)) for a, b in zip(starts[1:-1], starts[2:], strict=True)]
        # per level: parent's index within the previous level
        self._level_parent = [torch.as_tensor(pos_of[parents[order[sl]]] - starts[d], device=self.device)
                              for d, sl in enumerate(self._level_slices)]
        o = order[1:]  # movable joints in level order (the universe is the identity)
        PK, PK2, P_axis = chain.rodrigues_terms()  # R_pj(θ) = P + sin θ PK + (1 - cos θ) PK²
        self._pl_R, self._pl_p = self._t(chain.rotation[o]), self._t(chain.translation[o])
        self._axis = self._t(chain.axis[o])
        self._PK, self._PK2, self._P_axis = self._t(PK[o]), self._t(PK2[o]), self._t(P_axis[o])
        self._rev_mask = self._t((kind[o] == REVOLUTE).astype(float))
        self._pri_mask = self._t((kind[o] == PRISMATIC).astype(float))
        self._source = torch.as_tensor(source[o], device=self.device)
        self._mult, self._offs = self._t(chain.scale[o]), self._t(chain.offset[o])
        self.num_joints = nj
        self.dof = len(self.joint_names)

        # Frames: parent joint (as a level-order position, 0 = universe) and placement in it.
        self._f_joint = torch.as_tensor(pos_of[chain.frame_joint], dtype=torch.long, device=self.device)
        self._f_R, self._f_p = self._t(chain.frame_rotation), self._t(chain.frame_translation)
        # Jacobian: only (frame, joint) pairs where the joint moves the frame (its support path) contribute.
        pf, pj = [], []
        for k, j in enumerate(chain.frame_joint):
            while j > 0:
                pf.append(k)
                pj.append(j)
                j = parents[j]
        pf, pj = np.asarray(pf, np.int64), np.asarray(pj, np.int64)
        self._pair_f = torch.as_tensor(pf, device=self.device)
        self._pair_j = torch.as_tensor(pos_of[pj], device=self.device)  # level-order position (>= 1)
        self._pair_rev = torch.as_tensor(kind[pj] == REVOLUTE, device=self.device)[:, None]
        self._any_prismatic = bool((kind[pj] == PRISMATIC).any())
        self._pair_mult = self._t(chain.scale[pj])[:, None]
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
