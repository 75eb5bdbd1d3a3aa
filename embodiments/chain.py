"""A hand's kinematic tree read once out of a pinocchio model into plain arrays: the one place that reads it.

The batched evaluators (``HandKinematics`` in numpy, ``retarget.TorchFK`` in torch) evaluate exactly what pinocchio
parsed, mimic couplings included. Every movable joint is 1-DoF: ``parent ← joint = placement · exp(θ ξ)``, ξ the unit
axis as a rotation (revolute) or translation (prismatic), ``θ = scale · q[source] + offset`` (1, 0 unless mimic).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pinocchio as pin

REVOLUTE, PRISMATIC = 1, 2


@dataclasses.dataclass(frozen=True)
class KinematicChain:
    """Per joint (J,), pinocchio's order (0: the fixed root; parents first): ``parent``, placement ``rotation``
    (J, 3, 3) / ``translation`` (J, 3) in the parent, ``kind`` (REVOLUTE, PRISMATIC; 0 for the root), unit ``axis``,
    ``source`` (index into q in ``joint_names`` order; -1 for the root), ``scale``, ``offset``. Per coordinate
    (dof,): ``q_index`` in pinocchio's q. Per frame (F,): parent ``frame_joint`` and placement in it.
    """

    joint_names: tuple[str, ...]
    q_index: np.ndarray
    parent: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    kind: np.ndarray
    axis: np.ndarray
    source: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    frame_names: tuple[str, ...]
    frame_joint: np.ndarray
    frame_rotation: np.ndarray
    frame_translation: np.ndarray

    def rodrigues_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``P K``, ``P K²`` (J, 3, 3) and ``P a`` (J, 3), with P the placement rotation and K = [a]× the axis.

        Rodrigues gives parent ← joint rotation ``P + sin θ PK + (1 − cos θ) PK²`` (revolute) and translation
        ``t + θ P a`` (prismatic): precomputed, a configuration costs scaled sums instead of 3×3 products.
        """
        a = self.axis
        k = np.zeros((len(a), 3, 3))
        k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -a[:, 2], a[:, 1], -a[:, 0]
        k = k - np.swapaxes(k, 1, 2)
        pk = self.rotation @ k
        return pk, pk @ k, (self.rotation @ a[..., None])[..., 0]


def actuated_joints(model: pin.Model, joint_names: Sequence[str] | None = None) -> tuple[tuple[str, ...], np.ndarray]:
    """Actuated joint names (``joint_names`` checked, default pinocchio's order) and their indices in pin's q."""
    # The universe (index 0) reports nq == 1 and idx_q == -1; mimic joints have nq == 0.
    pin_q = {name: j.idx_q for j, name in zip(model.joints, model.names, strict=True)
             if j.idx_q >= 0 and j.nq == 1 and j.shortname() != "JointModelMimic"}
    pin_order = sorted(pin_q, key=pin_q.get)
    if len(pin_order) != model.nq:
        raise ValueError("only revolute/prismatic (and mimic) joints are supported in a hand model")
    names = tuple(joint_names) if joint_names is not None else tuple(pin_order)
    if sorted(names) != sorted(pin_order):
        raise ValueError(f"joint_names must list each actuated joint once: {pin_order}, got {list(names)}")
    return names, np.array([pin_q[n] for n in names], dtype=np.int64)


def read_chain(model: pin.Model, joint_names: Sequence[str] | None = None,
               frames: Sequence[str] | None = None) -> KinematicChain:
    """The tree of ``model`` (built with ``mimic=True``) for q in ``joint_names`` order and ``frames`` (default all).

    Raises ValueError for bad ``joint_names`` or a joint that is not revolute/prismatic (or a nonzero mimic of
    one), KeyError for an unknown frame.
    """
    names, q_index = actuated_joints(model, joint_names)
    coord = {int(iq): k for k, iq in enumerate(q_index)}
    nj = model.njoints
    kind, source = np.zeros(nj, np.int64), np.full(nj, -1, np.int64)
    axis, scale, offset = np.zeros((nj, 3)), np.zeros(nj), np.zeros(nj)
    zero = np.zeros(model.nq)
    for i in range(1, nj):
        jm, ex = model.joints[i], model.joints[i].extract()
        s, o = (float(ex.scaling), float(ex.offset)) if jm.shortname() == "JointModelMimic" else (1.0, 0.0)
        # The motion subspace S = s · [v; ω] is pinocchio's own reading of the joint's type and axis (the Python
        # bindings do not expose the joint a mimic wraps, so it is also the only way to a mimic's axis).
        jd = jm.createData()
        jm.calc(jd, zero)
        lin, ang = np.split(np.asarray(jd.S, dtype=np.float64).reshape(6), 2)  # every joint is 1-DoF here
        if np.abs(lin).max() < 1e-12 < np.abs(ang).max():
            kind[i], vec = REVOLUTE, ang
        elif np.abs(ang).max() < 1e-12 < np.abs(lin).max():
            kind[i], vec = PRISMATIC, lin
        else:
            raise ValueError(f"joint {model.names[i]!r} of type {jm.shortname()} is not supported (revolute, "
                             "prismatic and mimic joints with a nonzero multiplier are)")
        axis[i] = np.sign(s) * vec / np.linalg.norm(vec)  # vec = s · axis
        source[i], scale[i], offset[i] = coord[jm.idx_q], s, o

    frame_names = tuple(f.name for f in model.frames) if frames is None else tuple(frames)
    if missing := [f for f in frame_names if not model.existFrame(f)]:
        raise KeyError(f"frames {missing} not in the model; frames: {[f.name for f in model.frames]}")
    fr = [model.frames[model.getFrameId(f)] for f in frame_names]
    jp = list(model.jointPlacements)
    return KinematicChain(  # contiguous arrays: the evaluators' products and einsums run faster on them
        joint_names=names, q_index=q_index, parent=np.asarray(model.parents, dtype=np.int64),
        rotation=np.array([m.rotation for m in jp]), translation=np.array([m.translation for m in jp]),
        kind=kind, axis=axis, source=source, scale=scale, offset=offset, frame_names=frame_names,
        frame_joint=np.array([f.parentJoint for f in fr], dtype=np.int64),
        frame_rotation=np.array([f.placement.rotation for f in fr]).reshape(-1, 3, 3),
        frame_translation=np.array([f.placement.translation for f in fr]).reshape(-1, 3))
