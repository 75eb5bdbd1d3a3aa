"""How a hand looks in the scene: ``"simple"`` (the URDF's primitives: a palm box and one cylinder per link) or
``"detailed"`` (per-link geometry written here from published facts, so fingers can be told apart at 128²).

Detailed geometry, per link of the hand's MJCF body tree:

* each phalanx is its own capsule from its joint to the next joint (or fingertip frame), its real length, with the
  finger's width, a darker knuckle drum on the joint axis, and a dark pad over the last third of the distal link
  (the tactile fingertip of both hands);
* the palm is a rounded slab with the real hand's outline and thickness, a wrist flange and a palm pad.

Lengths come from the kinematics (the joint origins Unitree publishes, already in the MJCF); widths, thickness and
colours are from the hands' published dimensions and product photos: Dex3-1 is dark grey/black anodised with
black tactile pads (fingers ≈ 19 mm wide, 57 mm apart, palm ≈ 89 × 76 × 30 mm); Inspire RH56 has a light
aluminium-grey palm and fingers (≈ 15 mm wide, 19 mm apart, palm ≈ 135 × 74 × 30 mm), dark joints and black
fingertip pads. Collision keeps to the phalanx capsules and the palm slab; drums, pads and flange are visual only.
Link masses and inertias stay the URDF's, so physics is unchanged apart from contact shapes.
"""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

# "auto": detailed for the hands that have a look (the built-in Dex3-1 and Inspire), simple for every other hand
HAND_STYLES = ("simple", "detailed", "auto")
_CAPSULE, _BOX, _CYLINDER = mujoco.mjtGeom.mjGEOM_CAPSULE, mujoco.mjtGeom.mjGEOM_BOX, mujoco.mjtGeom.mjGEOM_CYLINDER


@dataclasses.dataclass(frozen=True)
class Look:
    """Geometry and colours of one hand model (metres, root-link frame; RGBA)."""

    finger_radius: float  # half the finger width
    link_radius: dict[str, float]  # link-name substring → radius, for links wider or narrower than a finger
    palm: tuple[tuple, ...]  # (kind, centre, half sizes or (radius, half length), axis, colour, collide)
    shell: tuple[float, float, float, float]  # phalanx colour
    joint: tuple[float, float, float, float]  # knuckle drums
    pad: tuple[float, float, float, float]  # fingertip pads


_DEX3_GREY, _DEX3_JOINT, _BLACK = (0.17, 0.17, 0.19, 1.0), (0.3, 0.3, 0.32, 1.0), (0.04, 0.04, 0.045, 1.0)
_ALU, _ALU_JOINT = (0.78, 0.79, 0.81, 1.0), (0.22, 0.22, 0.24, 1.0)


def _dex3(side: str) -> Look:
    """Dex3-1: palm link x from the wrist (0) to the knuckles (0.078), z across (index/middle at ±0.0285), the palm
    face on the thumb's side of y (−y on the left hand, +y on the right)."""
    palm_y = -1.0 if side == "left" else 1.0
    return Look(
        finger_radius=0.0095, link_radius={"thumb_0": 0.011},
        palm=(("box", (0.037, 0.0, 0.0), (0.037, 0.015, 0.038), None, _DEX3_GREY, True),
              ("capsule", (0.074, 0.0, 0.0), (0.015, 0.032), (0, 0, 1), _DEX3_GREY, True),  # rounded knuckle edge
              ("cylinder", (-0.004, 0.0, 0.0), (0.024, 0.005), (1, 0, 0), _BLACK, False),  # wrist flange
              ("box", (0.04, palm_y * 0.0155, 0.0), (0.028, 0.0012, 0.03), None, _BLACK, False)),  # palm pad
        shell=_DEX3_GREY, joint=_DEX3_JOINT, pad=_BLACK)


def _inspire(side: str) -> Look:
    """Inspire RH56 (Unitree's base link): fingers along −y from knuckles at y ≈ −0.137, z across (index ...
    pinky from +0.032 to −0.026 on the left hand, mirrored on the right), the palm face towards −x (thumb side)."""
    return Look(
        finger_radius=0.0075, link_radius={"thumb_proximal": 0.0085, "intermediate": 0.007},
        palm=(("box", (-0.002, -0.066, 0.0), (0.015, 0.06, 0.037), None, _ALU, True),
              ("capsule", (-0.002, -0.126, 0.0), (0.015, 0.031), (0, 0, 1), _ALU, True),  # rounded knuckle edge
              ("cylinder", (-0.002, 0.0, 0.0), (0.026, 0.006), (0, 1, 0), _ALU_JOINT, False),  # wrist flange
              ("box", (-0.0175, -0.08, 0.0), (0.0012, 0.035, 0.031), None, _ALU_JOINT, False)),  # palm pad
        shell=_ALU, joint=_ALU_JOINT, pad=_BLACK)


LOOKS = {"dex3": _dex3, "inspire": _inspire}


def look_for(name: str, side: str) -> Look | None:
    """The detailed look of a registered hand (by name prefix), or None for hands without one."""
    kind = next((k for k in LOOKS if name.startswith(k + "_")), None)
    return LOOKS[kind](side) if kind else None


def _quat_z_to(axis) -> list[float]:
    """Quaternion (wxyz) turning z onto ``axis``."""
    a = np.asarray(axis, np.float64)
    a = a / np.linalg.norm(a)
    q = np.empty(4)
    mujoco.mju_quatZ2Vec(q, a)
    return q.tolist()


def _add(body, kind: str, pos, size, axis, rgba, collide: bool, name: str) -> None:
    g = body.add_geom(name=name, type={"box": _BOX, "capsule": _CAPSULE, "cylinder": _CYLINDER}[kind],
                      pos=list(pos), size=[*size, 0.0][:3] if kind != "box" else list(size), rgba=list(rgba))
    if axis is not None:
        g.quat = _quat_z_to(axis)
    if not collide:
        g.contype = g.conaffinity = 0
        g.group = 1


def apply_detailed(hand: mujoco.MjSpec, name: str, side: str) -> None:
    """Replace every geom of a hand's MJCF spec (root body first, as :func:`sim_bridge.scene._hand_spec` gives it)
    with the detailed look of hand ``name``; raises ValueError for hands without one."""
    look = look_for(name, side)
    if look is None:
        raise ValueError(f"hand_style='detailed' knows {', '.join(k + '_*' for k in LOOKS)}; {name} has no "
                         "detailed look, use hand_style='simple'")
    root = hand.worldbody.first_body()
    bodies = [root, *root.find_all(mujoco.mjtObj.mjOBJ_BODY)]
    geoms = {b.name: len(b.geoms) for b in bodies}
    for b in bodies:
        for g in list(b.geoms):
            hand.delete(g)
    for k, (kind, pos, size, axis, rgba, collide) in enumerate(look.palm):
        _add(root, kind, pos, size, axis, rgba, collide, f"{root.name}_detail{k}")
    for b in bodies[1:]:
        if not geoms[b.name]:  # fingertip frames and other geometry-less frames stay bare
            continue
        ends = [np.asarray(c.pos, np.float64) for c in b.bodies]
        if not ends:
            continue
        end = max(ends, key=np.linalg.norm)  # the next joint, or the fingertip
        r = next((v for k, v in look.link_radius.items() if k in b.name), look.finger_radius)
        length = float(np.linalg.norm(end))
        g = b.add_geom(name=f"{b.name}_phalanx", type=_CAPSULE, size=[r, 0, 0], rgba=list(look.shell))
        g.fromto = [0.0, 0.0, 0.0, *end]
        if b.joints:  # knuckle drum on the joint axis
            _add(b, "cylinder", (0, 0, 0), (1.18 * r, 1.05 * r), b.joints[0].axis, look.joint, False,
                 f"{b.name}_knuckle")
        bare_children = [c for c in b.bodies if not geoms[c.name] and not c.joints and not c.bodies]
        if bare_children and length > 0:  # distal link: a pad over its last third, rounded like the tip
            pad = b.add_geom(name=f"{b.name}_pad", type=_CAPSULE, size=[1.06 * r, 0, 0], rgba=list(look.pad),
                             contype=0, conaffinity=0, group=1)
            pad.fromto = [*(end * 0.67), *end]
