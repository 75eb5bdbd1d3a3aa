"""The built-in human hand: a 21-keypoint, 20-DoF articulated skeleton written out as a URDF.

The skeleton is generated from typical adult figures (bone lengths in metres, joint limits in radians) so that its
kinematics run through the same pinocchio path as every robot hand. It fills all 21 slots of its side, in the
MANO/OpenPose order, and is registered as ``mano_left`` / ``mano_right`` (the names say which joint layout it
speaks; the licensed MANO mesh model itself lives in :mod:`embodiments.mano`).

Hand root frame (origin at the wrist joint centre), for the **right** hand:

* ``+y`` distal: from the wrist towards the middle-finger MCP (fingers point along +y when straight),
* ``+z`` palmar: the palm normal, pointing out of the palm (flexion curls the fingers towards +z),
* ``+x`` radial: towards the thumb side (x = y × z, so the frame is right-handed).

The **left** hand is the exact mirror image across the x = 0 (sagittal) plane: its thumb lies on −x, its fingers
along +y, its palm faces +z. So ``SparseJoints.mirror`` (x → −x, swap left/right slots) maps a right-hand pose to
the left hand's pose with the same joint angles, in the hand root frame. The mirror is built into the URDF: joint
origins map (x, y, z) → (−x, y, z), origin rotations rpy (r, p, y) → (r, −p, −y) and joint axes (ax, ay, az) →
(ax, −ay, −az), which is conjugation by diag(−1, 1, 1) of every transform in the chain.

Joint angle conventions, the same on both sides: flexion > 0 curls a finger towards the palm; abduction > 0
spreads a finger away from the middle finger (the middle finger's own abduction > 0 is towards the thumb); the
thumb's CMC abduction > 0 spreads it away from the index finger.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .layout import FINGERS, SIDES
from .spec import HandSpec
from .urdf_hand import UrdfHand


@dataclasses.dataclass(frozen=True)
class FingerFigures:
    """Where a finger starts and how long its bones are (right hand, hand root frame, metres/radians).

    ``base`` is the first joint (thumb CMC or finger MCP); ``rpy`` orients the finger's rest frame there (URDF
    roll-pitch-yaw; its y axis runs along the straight finger, its z axis towards the finger's pad);
    ``bones`` are the three segment lengths from the base joint to the next joint, the next, and the tip.
    """

    base: tuple[float, float, float]
    rpy: tuple[float, float, float]
    bones: tuple[float, float, float]
    radius: float


def _rest_rpy(direction: tuple[float, float, float], pad: tuple[float, float, float]) -> tuple[float, ...]:
    """URDF rpy of a frame whose y axis is ``direction`` and whose z axis is ``pad`` made orthogonal to it."""
    from scipy.spatial.transform import Rotation

    y = np.asarray(direction, float)
    y /= np.linalg.norm(y)
    z = np.asarray(pad, float)
    z = z - (z @ y) * y
    z /= np.linalg.norm(z)
    R = np.stack([np.cross(y, z), y, z], axis=1)
    return tuple(float(a) for a in Rotation.from_matrix(R).as_euler("xyz"))  # extrinsic xyz == URDF rpy


# Typical adult figures (hand length ≈ 19 cm wrist-to-middle-tip, breadth ≈ 8 cm across the knuckles). The
# fingers splay slightly at rest (yaw about the palm normal; negative = radial for the right hand) and the
# ring/pinky knuckles sit a little palmar (the transverse palmar arch).
FIGURES: dict[str, FingerFigures] = {
    # Thumb: CMC on the radial-palmar side of the carpus; at rest the metacarpal points radially, distally and a
    # little palmar, and the thumb is pronated so that its pad faces the index finger and the palm.
    "thumb": FingerFigures(base=(0.021, 0.027, 0.010), rpy=_rest_rpy((0.62, 0.70, 0.36), (-0.75, 0.20, 0.63)),
                           bones=(0.046, 0.032, 0.029), radius=0.0105),
    "index": FingerFigures(base=(0.026, 0.090, 0.000), rpy=(0.0, 0.0, -0.10), bones=(0.041, 0.024, 0.022),
                           radius=0.0090),
    "middle": FingerFigures(base=(0.005, 0.094, 0.000), rpy=(0.0, 0.0, 0.0), bones=(0.045, 0.028, 0.024),
                            radius=0.0092),
    "ring": FingerFigures(base=(-0.014, 0.088, 0.003), rpy=(0.0, 0.0, 0.10), bones=(0.042, 0.027, 0.023),
                          radius=0.0085),
    "pinky": FingerFigures(base=(-0.031, 0.079, 0.007), rpy=(0.0, 0.0, 0.22), bones=(0.033, 0.020, 0.020),
                           radius=0.0075),
}

_DEG = math.pi / 180.0
# Joint limits (radians), from typical active ranges of motion; negative flexion = hyperextension.
LIMITS: dict[str, tuple[float, float]] = {
    "thumb_cmc_abd": (-25 * _DEG, 40 * _DEG),
    "thumb_cmc_flex": (-25 * _DEG, 60 * _DEG),
    "thumb_mcp_flex": (-10 * _DEG, 60 * _DEG),
    "thumb_ip_flex": (-15 * _DEG, 85 * _DEG),
    "index_mcp_abd": (-15 * _DEG, 25 * _DEG),
    "index_mcp_flex": (-20 * _DEG, 90 * _DEG),
    "index_pip_flex": (0.0, 110 * _DEG),
    "index_dip_flex": (-5 * _DEG, 80 * _DEG),
    "middle_mcp_abd": (-20 * _DEG, 20 * _DEG),
    "middle_mcp_flex": (-20 * _DEG, 90 * _DEG),
    "middle_pip_flex": (0.0, 110 * _DEG),
    "middle_dip_flex": (-5 * _DEG, 80 * _DEG),
    "ring_mcp_abd": (-15 * _DEG, 20 * _DEG),
    "ring_mcp_flex": (-20 * _DEG, 90 * _DEG),
    "ring_pip_flex": (0.0, 110 * _DEG),
    "ring_dip_flex": (-5 * _DEG, 80 * _DEG),
    "pinky_mcp_abd": (-15 * _DEG, 30 * _DEG),
    "pinky_mcp_flex": (-20 * _DEG, 90 * _DEG),
    "pinky_pip_flex": (0.0, 110 * _DEG),
    "pinky_dip_flex": (-5 * _DEG, 80 * _DEG),
}
JOINT_NAMES: tuple[str, ...] = tuple(LIMITS)

# Links whose origin is each keypoint (per finger: base joint, next, next, tip), in the MANO/OpenPose order.
_SEGMENTS = {
    "thumb": ("thumb_metacarpal", "thumb_proximal", "thumb_distal", "thumb_tip"),
    **{f: (f"{f}_proximal", f"{f}_middle", f"{f}_distal", f"{f}_tip") for f in FINGERS[1:]},
}
_KEYPOINTS = {
    "thumb": ("thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip"),
    **{f: (f"{f}_mcp", f"{f}_pip", f"{f}_dip", f"{f}_tip") for f in FINGERS[1:]},
}
# The first two joints of each finger share one point; this massless-looking link sits between them.
_SADDLE = {"thumb": "thumb_saddle", **{f: f"{f}_knuckle" for f in FINGERS[1:]}}
# (joint name, axis in the right hand's finger frame) for each finger's four joints, proximal to distal.
# Flexion about +x curls y towards +z (the pad side). Abduction about the finger-frame z axis, signed so that
# > 0 spreads away from the middle finger (radial for index/middle, i.e. about −z, ulnar for ring/pinky).
_AXES = {
    "thumb": (("thumb_cmc_abd", (0.0, 0.0, -1.0)), ("thumb_cmc_flex", (1.0, 0.0, 0.0)),
              ("thumb_mcp_flex", (1.0, 0.0, 0.0)), ("thumb_ip_flex", (1.0, 0.0, 0.0))),
    **{f: ((f"{f}_mcp_abd", (0.0, 0.0, -1.0 if f in ("index", "middle") else 1.0)),
           (f"{f}_mcp_flex", (1.0, 0.0, 0.0)), (f"{f}_pip_flex", (1.0, 0.0, 0.0)),
           (f"{f}_dip_flex", (1.0, 0.0, 0.0))) for f in FINGERS[1:]},
}
PALM_MASS, BONE_MASS = 0.25, 0.012  # kg, for simulators that load the URDF


def _fmt(values) -> str:
    return " ".join(repr(float(v) + 0.0) for v in values)  # repr round-trips float64 exactly; +0.0 drops -0.0


def _mirror_xyz(v, side):
    return v if side == "right" else (-v[0], v[1], v[2])


def _mirror_rpy(v, side):
    return v if side == "right" else (v[0], -v[1], -v[2])


def _mirror_axis(v, side):
    return v if side == "right" else (v[0], -v[1], -v[2])


def _inertial(mass: float, radius: float, length: float, side: str) -> str:
    ixx = mass * (3 * radius**2 + length**2) / 12  # solid cylinder along y
    iyy = mass * radius**2 / 2
    return (f'<inertial><origin xyz="{_fmt(_mirror_xyz((0.0, length / 2, 0.0), side))}" rpy="0 0 0"/>'
            f'<mass value="{mass}"/><inertia ixx="{ixx:.6g}" ixy="0" ixz="0" iyy="{iyy:.6g}" iyz="0" '
            f'izz="{ixx:.6g}"/></inertial>')


def _bone_link(name: str, radius: float, length: float, side: str) -> str:
    # A cylinder along the bone (URDF cylinders run along z; roll −90° turns z onto +y).
    geom = (f'<origin xyz="{_fmt(_mirror_xyz((0.0, length / 2, 0.0), side))}" rpy="-1.5707963267948966 0 0"/>'
            f'<geometry><cylinder radius="{radius}" length="{length}"/></geometry>')
    return (f'  <link name="{name}">{_inertial(BONE_MASS, radius, length, side)}'
            f'<visual>{geom}</visual><collision>{geom}</collision></link>\n')


def _joint(name, kind, parent, child, xyz, rpy, side, axis=None) -> str:
    out = (f'  <joint name="{name}" type="{kind}"><parent link="{parent}"/><child link="{child}"/>'
           f'<origin xyz="{_fmt(_mirror_xyz(xyz, side))}" rpy="{_fmt(_mirror_rpy(rpy, side))}"/>')
    if axis is not None:
        lo, hi = LIMITS[name]
        out += (f'<axis xyz="{_fmt(_mirror_axis(axis, side))}"/>'
                f'<limit lower="{lo!r}" upper="{hi!r}" effort="5" velocity="10"/>')
    return out + "</joint>\n"


def human_hand_urdf(side: str, figures: dict[str, FingerFigures] | None = None) -> str:
    """URDF text of the human hand skeleton of one side (root link ``wrist``, 20 revolute joints).

    ``figures`` replaces :data:`FIGURES` (per finger), e.g. for hands of other sizes and proportions.
    """
    figures = FIGURES if figures is None else {**FIGURES, **figures}
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    palm_xyz = _fmt(_mirror_xyz((-0.002, 0.048, 0.004), side))
    palm = f'<origin xyz="{palm_xyz}" rpy="0 0 0"/><geometry><box size="0.075 0.085 0.024"/></geometry>'
    parts = [f'<?xml version="1.0"?>\n<robot name="human_hand_{side}">\n',
             f'  <link name="wrist"><inertial><origin xyz="{_fmt(_mirror_xyz((0.0, 0.048, 0.0), side))}" '
             f'rpy="0 0 0"/><mass value="{PALM_MASS}"/><inertia ixx="2e-4" ixy="0" ixz="0" iyy="1.2e-4" iyz="0" '
             f'izz="3e-4"/></inertial><visual>{palm}</visual><collision>{palm}</collision></link>\n']
    for finger in FINGERS:
        fig = figures[finger]
        (j0, a0), (j1, a1), (j2, a2), (j3, a3) = _AXES[finger]
        seg = _SEGMENTS[finger]
        saddle = _SADDLE[finger]
        parts.append(f'  <link name="{saddle}"><inertial><origin xyz="0 0 0" rpy="0 0 0"/><mass value="0.001"/>'
                     f'<inertia ixx="1e-8" ixy="0" ixz="0" iyy="1e-8" iyz="0" izz="1e-8"/></inertial></link>\n')
        parts.append(_joint(j0, "revolute", "wrist", saddle, fig.base, fig.rpy, side, a0))
        for i in range(3):
            parts.append(_bone_link(seg[i], fig.radius * (1 - 0.08 * i), fig.bones[i], side))
        parts.append(_joint(j1, "revolute", saddle, seg[0], (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), side, a1))
        parts.append(_joint(j2, "revolute", seg[0], seg[1], (0.0, fig.bones[0], 0.0), (0.0, 0.0, 0.0), side, a2))
        parts.append(_joint(j3, "revolute", seg[1], seg[2], (0.0, fig.bones[1], 0.0), (0.0, 0.0, 0.0), side, a3))
        parts.append(f'  <link name="{seg[3]}"/>\n')
        parts.append(_joint(f"{finger}_tip_fixed", "fixed", seg[2], seg[3], (0.0, fig.bones[2], 0.0),
                            (0.0, 0.0, 0.0), side))
    parts.append("</robot>\n")
    return "".join(parts)


def human_slot_frames(side: str) -> dict[str, str]:
    """Slot name → URDF link of the human hand: all 21 slots of its side."""
    frames = {f"{side}_wrist": "wrist"}
    for finger in FINGERS:
        frames.update({f"{side}_{k}": link for k, link in zip(_KEYPOINTS[finger], _SEGMENTS[finger], strict=True)})
    return frames


def human_hand_spec(side: str, name: str | None = None) -> HandSpec:
    """The :class:`HandSpec` of the human hand of one side (URDF from :data:`FIGURES`), named ``name``."""
    return HandSpec(name=name or f"mano_{side}", side=side, slots=human_slot_frames(side),
                    urdf_xml=human_hand_urdf(side), root_link="wrist", joint_names=list(JOINT_NAMES),
                    description=f"Human {side} hand skeleton: 21 keypoints in the MANO/OpenPose order, 20 DoF "
                                "(thumb CMC 2, MCP, IP; finger MCP flexion + abduction, PIP, DIP).")


class HumanHand(UrdfHand):
    """The human hand skeleton of one side as an embodiment (``mano_left`` / ``mano_right``)."""

    def __init__(self, side: str = "right"):
        super().__init__(human_hand_spec(side, f"{self.name_prefix}_{side}"))

    name_prefix = "mano"

    def joint_index(self, name: str) -> int:
        """Position of a joint in ``q``; raises listing the joint names."""
        try:
            return self.joint_names.index(name)
        except ValueError:
            raise KeyError(f"{self.name} has no joint {name!r}; joints: {', '.join(self.joint_names)}") from None

    def q_from_dict(self, angles: dict[str, float], base: np.ndarray | None = None) -> np.ndarray:
        """A joint vector (dof,) from ``{joint name: angle}``; unnamed joints keep ``base`` (default zeros)."""
        q = np.zeros(self.dof) if base is None else np.array(base, dtype=np.float64)
        for name, value in angles.items():
            q[self.joint_index(name)] = value
        return q


class WebXRHand(HumanHand):
    """The human hand as recorded in the 25-joint WebXR / Vision Pro layout (``webxr_left`` / ``webxr_right``).

    Same skeleton and slots as ``mano_<side>``; raw arrays given to a retargeter from this source are (T, 25, 3)
    and are mapped onto the 21 slots by :func:`embodiments.skeletons.to_mano_order`.
    """

    name_prefix = "webxr"
    input_layout = "webxr"

    @property
    def pair_config_name(self) -> str:
        """Retargeting pair configs are shared with ``mano_<side>`` (same skeleton once mapped onto the slots)."""
        return f"mano_{self.side}"
