"""Write the built-in robot-hand URDFs (Unitree Dex3-1 and Inspire RH56, left and right) from kinematic tables.

The URDF files next to this script are committed data; this script is how they were made and documents where
each number comes from. Run ``python embodiments/assets/make_robot_urdfs.py`` to regenerate them.

Facts (joint names, origins, axes, limits, effort/velocity ratings, mimic multipliers, fingertip offsets) are
read from the kinematic descriptions Unitree publishes:

* Dex3-1: ``unitree_ros/robots/dex3_1_description`` / ``unitree_dex3_{left,right}.urdf`` (BSD-3-Clause).
* Inspire RH56 as Unitree mounts it on G1/H1: ``inspire_hand_{left,right}.urdf`` of Unitree's
  ``xr_teleoperate`` / ``unitree_ros`` assets (BSD-3-Clause).

Everything else is ours: geometry is simple primitives (boxes, cylinders, spheres) sized from the link offsets,
masses are plausible figures (tens of grams per finger link), and inertias follow from those primitives. No
meshes and no inertial data are taken from the sources.

Roots. The Dex3 files publish an extra ``base_link`` (a teleoperation helper rotated -90° about z) above the
palm; Unitree's humanoid URDFs (G1 ``*_with_hand``) attach ``<side>_hand_palm_link`` to the wrist, so that link is
our root and the helper links are dropped. The Inspire root is ``<L|R>_hand_base_link``, as on the humanoids.
Fingertip frames: ``<side>_hand_<finger>_tip`` (Dex3, called ``thumb_tip`` etc. in the source) and
``<L|R>_<finger>_tip`` (Inspire, same as the source).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class J:
    """One joint: ``name`` connects ``parent`` → ``child`` at ``xyz``/``rpy``; fixed when ``axis`` is None."""

    name: str
    parent: str
    child: str
    xyz: tuple[float, float, float]
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    axis: tuple[float, float, float] | None = None
    limit: tuple[float, float] = (0.0, 0.0)
    effort: float = 1.0
    velocity: float = 1.0
    mimic: tuple[str, float, float] | None = None  # (mimicked joint, multiplier, offset)


@dataclasses.dataclass(frozen=True)
class Hand:
    name: str
    root: str
    joints: list[J]
    palm_box: tuple[tuple[float, float, float], tuple[float, float, float]]  # (centre, size)
    palm_mass: float
    link_mass: dict[str, float]  # moving link → mass (kg)
    radius: float  # finger cylinder radius (m)
    source: str


# ---------------------------------------------------------------------------------------------- Unitree Dex3-1
_D3_THUMB0 = dict(effort=2.45, velocity=6.857)
_D3 = dict(effort=1.4, velocity=12.0)
_D3_LIM = {  # side → joint → (lower, upper), from the official files
    "left": {"thumb_0": (-1.04719755, 1.04719755), "thumb_1": (-0.72431163, 0.920), "thumb_2": (0.0, 1.74532925),
             "middle_0": (-1.57079632, 0.0), "middle_1": (-1.74532925, 0.0),
             "index_0": (-1.57079632, 0.0), "index_1": (-1.74532925, 0.0)},
    "right": {"thumb_0": (-1.04719755, 1.04719755), "thumb_1": (-0.920, 0.72431163), "thumb_2": (-1.74532925, 0.0),
              "middle_0": (0.0, 1.57079632), "middle_1": (0.0, 1.74532925),
              "index_0": (0.0, 1.57079632), "index_1": (0.0, 1.74532925)},
}  # fmt: skip


def dex3(side: str) -> Hand:
    """Dex3-1: thumb 3 DoF, index and middle 2 DoF each. The right hand mirrors the left across the palm's y."""
    s = 1.0 if side == "left" else -1.0  # the thumb side of the palm (-y on the left hand, +y on the right)
    p = f"{side}_hand"
    lim = _D3_LIM[side]
    joints = [
        J(f"{p}_thumb_0_joint", f"{p}_palm_link", f"{p}_thumb_0_link", (0.0255, 0.0, 0.0), axis=(0, 1, 0),
          limit=lim["thumb_0"], **_D3_THUMB0),
        J(f"{p}_thumb_1_joint", f"{p}_thumb_0_link", f"{p}_thumb_1_link", (-0.0025, -s * 0.0193, 0.0),
          axis=(0, 0, 1), limit=lim["thumb_1"], **_D3),
        J(f"{p}_thumb_2_joint", f"{p}_thumb_1_link", f"{p}_thumb_2_link", (0.0, -s * 0.0458, 0.0), axis=(0, 0, 1),
          limit=lim["thumb_2"], **_D3),
        J(f"{p}_middle_0_joint", f"{p}_palm_link", f"{p}_middle_0_link", (0.0777, s * 0.0016, -0.0285),
          axis=(0, 0, 1), limit=lim["middle_0"], **_D3),
        J(f"{p}_middle_1_joint", f"{p}_middle_0_link", f"{p}_middle_1_link", (0.0458, 0.0, 0.0), axis=(0, 0, 1),
          limit=lim["middle_1"], **_D3),
        J(f"{p}_index_0_joint", f"{p}_palm_link", f"{p}_index_0_link", (0.0777, s * 0.0016, 0.0285),
          axis=(0, 0, 1), limit=lim["index_0"], **_D3),
        J(f"{p}_index_1_joint", f"{p}_index_0_link", f"{p}_index_1_link", (0.0458, 0.0, 0.0), axis=(0, 0, 1),
          limit=lim["index_1"], **_D3),
        # Fingertip frames: 5 cm along each distal link (the source's thumb_tip / index_tip / middle_tip).
        J(f"{p}_thumb_tip_joint", f"{p}_thumb_2_link", f"{p}_thumb_tip", (0.0, -s * 0.05, 0.0)),
        J(f"{p}_middle_tip_joint", f"{p}_middle_1_link", f"{p}_middle_tip", (0.05, 0.0, 0.0)),
        J(f"{p}_index_tip_joint", f"{p}_index_1_link", f"{p}_index_tip", (0.05, 0.0, 0.0)),
    ]
    masses = {"thumb_0": 0.035, "thumb_1": 0.055, "thumb_2": 0.040, "middle_0": 0.055, "middle_1": 0.040,
              "index_0": 0.055, "index_1": 0.040}
    return Hand(
        name=f"dex3_{side}", root=f"{p}_palm_link", joints=joints,
        palm_box=((0.042, 0.0, 0.0), (0.085, 0.032, 0.084)), palm_mass=0.30,
        link_mass={f"{p}_{k}_link": v for k, v in masses.items()}, radius=0.009,
        source=f"Unitree Dex3-1 unitree_dex3_{side}.urdf (unitree_ros, BSD-3-Clause)",
    )


# ---------------------------------------------------------------------------------------- Inspire RH56 (Unitree)
_INSP = dict(effort=1.0, velocity=0.5)
_FINGERS = ("index", "middle", "ring", "pinky")
# Per side: proximal-joint origin (xyz, rpy) on the base, intermediate-joint offset, fingertip offset.
_INSP_FINGERS = {
    "left": {
        "index": ((0.00028533, -0.13653, 0.032268), (-0.034907, 0, 0), (-0.0024229, -0.032041, -0.001),
                  (-0.005, -0.04, -0.004)),
        "middle": ((0.00028533, -0.1371, 0.01295), (0, 0, 0), (-0.0024229, -0.032041, -0.001),
                   (-0.005, -0.045, -0.004)),
        "ring": ((0.00028533, -0.13691, -0.0062872), (0.05236, 0, 0), (-0.0024229, -0.032041, -0.001),
                 (-0.002, -0.04, -0.004)),
        "pinky": ((0.00028533, -0.13571, -0.025488), (0.10472, 0, 0), (-0.0024229, -0.032041, -0.001),
                  (-0.002, -0.032, -0.004)),
    },
    "right": {
        "index": ((0.00028533, -0.13653, -0.032268), (-3.1067, 0, 0), (-0.0026138, 0.032026, -0.001),
                  (-0.005, 0.04, -0.004)),
        "middle": ((0.00028533, -0.1371, -0.01295), (-3.1416, 0, 0), (-0.0024229, 0.032041, -0.001),
                   (-0.005, 0.045, -0.004)),
        "ring": ((0.00028533, -0.13691, 0.0062872), (3.0892, 0, 0), (-0.0024229, 0.032041, -0.001),
                 (-0.002, 0.04, -0.004)),
        "pinky": ((0.00028533, -0.13571, 0.025488), (3.0369, 0, 0), (-0.0024229, 0.032041, -0.001),
                  (-0.002, 0.032, -0.004)),
    },
}
# Per side: thumb yaw origin (xyz, rpy, axis), pitch origin (xyz, rpy), intermediate, distal and tip offsets,
# and the flexion axis of pitch/intermediate/distal.
_INSP_THUMB = {
    "left": dict(yaw=((-0.01696, -0.0691, 0.02045), (1.5708, -1.5708, 0), (0, 0, 1)),
                 pitch=((0.0099867, 0.0098242, -0.0089), (-1.5708, 0, 0.16939)),
                 inter=(0.04407, -0.034553, -0.0008), distal=(0.020248, -0.010156, -0.0012),
                 tip=(0.015, -0.013, -0.004), flex=(0, 0, -1), finger_flex=(0, 0, -1)),
    "right": dict(yaw=((-0.01696, -0.0691, -0.02045), (1.5708, -1.5708, 0), (0, 0, -1)),
                  pitch=((-0.0088099, 0.010892, -0.00925), (1.5708, 0, 2.8587)),
                  inter=(0.04407, 0.034553, -0.0008), distal=(0.020248, 0.010156, -0.0012),
                  tip=(0.015, 0.013, -0.004), flex=(0, 0, 1), finger_flex=(0, 0, 1)),
}


def inspire(side: str) -> Hand:
    """Inspire RH56 (Unitree's G1/H1 variant): 6 actuated joints, 12 revolute joints, 6 of them mimic."""
    L = "L" if side == "left" else "R"
    t = _INSP_THUMB[side]
    base = f"{L}_hand_base_link"
    joints = [
        J(f"{L}_thumb_proximal_yaw_joint", base, f"{L}_thumb_proximal_base", t["yaw"][0], t["yaw"][1],
          t["yaw"][2], (-0.1, 1.3), **_INSP),
        J(f"{L}_thumb_proximal_pitch_joint", f"{L}_thumb_proximal_base", f"{L}_thumb_proximal", t["pitch"][0],
          t["pitch"][1], t["flex"], (0.0, 0.5), **_INSP),
        J(f"{L}_thumb_intermediate_joint", f"{L}_thumb_proximal", f"{L}_thumb_intermediate", t["inter"],
          axis=t["flex"], limit=(0.0, 0.8), mimic=(f"{L}_thumb_proximal_pitch_joint", 1.6, 0.0), **_INSP),
        J(f"{L}_thumb_distal_joint", f"{L}_thumb_intermediate", f"{L}_thumb_distal", t["distal"],
          axis=t["flex"], limit=(0.0, 1.2), mimic=(f"{L}_thumb_proximal_pitch_joint", 2.4, 0.0), **_INSP),
        J(f"{L}_thumb_tip_joint", f"{L}_thumb_distal", f"{L}_thumb_tip", t["tip"]),
    ]
    masses = {f"{L}_thumb_proximal_base": 0.010, f"{L}_thumb_proximal": 0.030, f"{L}_thumb_intermediate": 0.012,
              f"{L}_thumb_distal": 0.010}
    for f in _FINGERS:
        xyz, rpy, inter, tip = _INSP_FINGERS[side][f]
        joints += [
            J(f"{L}_{f}_proximal_joint", base, f"{L}_{f}_proximal", xyz, rpy, t["finger_flex"], (0.0, 1.7),
              **_INSP),
            J(f"{L}_{f}_intermediate_joint", f"{L}_{f}_proximal", f"{L}_{f}_intermediate", inter,
              axis=t["finger_flex"], limit=(0.0, 1.7), mimic=(f"{L}_{f}_proximal_joint", 1.0, 0.0), **_INSP),
            J(f"{L}_{f}_tip_joint", f"{L}_{f}_intermediate", f"{L}_{f}_tip", tip),
        ]
        masses[f"{L}_{f}_proximal"] = 0.015
        masses[f"{L}_{f}_intermediate"] = 0.012
    return Hand(
        name=f"inspire_{side}", root=base, joints=joints,
        palm_box=((-0.003, -0.068, 0.0), (0.034, 0.125, 0.082)), palm_mass=0.20, link_mass=masses, radius=0.007,
        source=f"Inspire RH56 inspire_hand_{side}.urdf as shipped by Unitree (BSD-3-Clause)",
    )


# -------------------------------------------------------------------------------------------------- URDF text
def _f(x: float) -> str:
    return f"{x:.9g}" if abs(x) > 1e-15 else "0"


def _v(v) -> str:
    return " ".join(_f(float(x)) for x in v)


def _cylinder_rpy(d: np.ndarray) -> tuple[float, float, float]:
    """rpy that turns a URDF cylinder's z axis onto direction d: R = Rz(yaw) Ry(pitch)."""
    return 0.0, math.atan2(math.hypot(d[0], d[1]), d[2]), math.atan2(d[1], d[0])


def _segment_inertia(a: np.ndarray, b: np.ndarray, r: float, m: float) -> tuple[np.ndarray, np.ndarray]:
    """COM and inertia (about the COM, link axes) of a solid cylinder of mass m from a to b, radius r."""
    d = b - a
    length = float(np.linalg.norm(d))
    u = d / length
    i_axis, i_perp = 0.5 * m * r * r, m * (3 * r * r + length * length) / 12.0
    inertia = i_perp * np.eye(3) + (i_axis - i_perp) * np.outer(u, u)
    return (a + b) / 2, inertia


def _inertial(com, inertia, m) -> str:
    i = inertia
    return (f'    <inertial>\n      <origin xyz="{_v(com)}" rpy="0 0 0"/>\n      <mass value="{_f(m)}"/>\n'
            f'      <inertia ixx="{i[0, 0]:.4e}" ixy="{i[0, 1]:.4e}" ixz="{i[0, 2]:.4e}" iyy="{i[1, 1]:.4e}" '
            f'iyz="{i[1, 2]:.4e}" izz="{i[2, 2]:.4e}"/>\n    </inertial>\n')


def _geom(kind: str, xyz, rpy, shape: str) -> str:
    return (f'    <{kind}>\n      <origin xyz="{_v(xyz)}" rpy="{_v(rpy)}"/>\n      <geometry>{shape}</geometry>\n'
            + ('      <material name="grey"/>\n' if kind == "visual" else "") + f"    </{kind}>\n")


def _link(name: str, body: str = "") -> str:
    return f'  <link name="{name}">\n{body}  </link>\n' if body else f'  <link name="{name}"/>\n'


def urdf_text(hand: Hand) -> str:
    """The URDF of ``hand``: palm box, one cylinder per finger link (to its child joint or tip), tip spheres."""
    children = {}
    for j in hand.joints:
        children.setdefault(j.parent, []).append(j)
    out = [f'<?xml version="1.0"?>\n<!-- {hand.name}: written by embodiments/assets/make_robot_urdfs.py.\n'
           f'     Kinematic facts (joint origins, axes, limits, mimic couplings, tip offsets) from {hand.source};\n'
           f'     geometry, masses and inertias are our own primitives. Root link: {hand.root}. -->\n'
           f'<robot name="{hand.name}">\n'
           f'  <material name="grey"><color rgba="0.75 0.75 0.78 1"/></material>\n']
    c, size = np.array(hand.palm_box[0]), np.array(hand.palm_box[1])
    m = hand.palm_mass
    box_inertia = np.diag([m * (size[1] ** 2 + size[2] ** 2), m * (size[0] ** 2 + size[2] ** 2),
                           m * (size[0] ** 2 + size[1] ** 2)]) / 12.0
    shape = f'<box size="{_v(size)}"/>'
    out.append(_link(hand.root, _inertial(c, box_inertia, m) + _geom("visual", c, (0, 0, 0), shape)
                     + _geom("collision", c, (0, 0, 0), shape)))
    r = hand.radius
    for j in hand.joints:
        if j.axis is None:  # fingertip frame: a massless link without geometry
            out.append(_link(j.child))
            continue
        ends = [np.array(k.xyz) for k in children.get(j.child, [])]
        # The segment runs from the joint to the farthest child origin (next joint or fingertip).
        b = max(ends, key=np.linalg.norm)
        a = np.zeros(3)
        com, inertia = _segment_inertia(a, b, r, hand.link_mass[j.child])
        cyl = f'<cylinder radius="{_f(r)}" length="{_f(float(np.linalg.norm(b - a)))}"/>'
        rpy = _cylinder_rpy(b - a)
        body = _inertial(com, inertia, hand.link_mass[j.child])
        body += _geom("visual", com, rpy, cyl) + _geom("collision", com, rpy, cyl)
        if any(k.axis is None for k in children.get(j.child, [])):  # distal link: round the fingertip off
            tip = next(np.array(k.xyz) for k in children[j.child] if k.axis is None)
            sph = f'<sphere radius="{_f(r)}"/>'
            body += _geom("visual", tip, (0, 0, 0), sph) + _geom("collision", tip, (0, 0, 0), sph)
        out.append(_link(j.child, body))
    for j in hand.joints:
        kind = "fixed" if j.axis is None else "revolute"
        s = (f'  <joint name="{j.name}" type="{kind}">\n    <origin xyz="{_v(j.xyz)}" rpy="{_v(j.rpy)}"/>\n'
             f'    <parent link="{j.parent}"/>\n    <child link="{j.child}"/>\n')
        if j.axis is not None:
            s += (f'    <axis xyz="{_v(j.axis)}"/>\n    <limit lower="{_f(j.limit[0])}" upper="{_f(j.limit[1])}" '
                  f'effort="{_f(j.effort)}" velocity="{_f(j.velocity)}"/>\n')
        if j.mimic is not None:
            s += f'    <mimic joint="{j.mimic[0]}" multiplier="{_f(j.mimic[1])}" offset="{_f(j.mimic[2])}"/>\n'
        out.append(s + "  </joint>\n")
    out.append("</robot>\n")
    return "".join(out)


HANDS = {f"{kind.__name__}_{side}": (kind, side) for kind in (dex3, inspire) for side in ("left", "right")}


def main(out_dir: Path = HERE) -> None:
    sys.path.insert(0, str(HERE.parents[1]))
    from embodiments.io_utils import atomic_path

    for name, (kind, side) in HANDS.items():
        with atomic_path(out_dir / f"{name}.urdf") as tmp:
            tmp.write_text(urdf_text(kind(side)))
        print(f"wrote {out_dir / name}.urdf")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
