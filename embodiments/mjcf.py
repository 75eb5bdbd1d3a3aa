"""MuJoCo model of a hand from its URDF: MuJoCo's own URDF import plus the mimic couplings it drops."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import mujoco

MIMIC_SOLREF = (0.005, 1.0)  # time constant (s, needs timestep <= 2.5 ms), damping ratio
MIMIC_SOLIMP = (0.95, 0.99, 0.001, 0.5, 2.0)


def mimic_joints(urdf_xml: str) -> dict[str, tuple[str, float, float]]:
    """URDF ``<mimic>`` couplings: mimic joint → (mimicked joint, multiplier, offset)."""
    root = _parse(urdf_xml)
    out = {}
    for joint in root.iter("joint"):
        mimic = joint.find("mimic")
        if mimic is None:
            continue
        if mimic.get("joint") is None:
            raise ValueError(f"URDF joint {joint.get('name')!r}: <mimic> needs a joint= attribute")
        out[joint.get("name")] = (mimic.get("joint"), float(mimic.get("multiplier", 1.0)),
                                  float(mimic.get("offset", 0.0)))
    return out


def urdf_to_mjcf(urdf_xml: str, meshdir: str | Path | None = None) -> str:
    """MJCF text of the hand in ``urdf_xml``: a body tree rooted at the hand's base link, fixed to the world.

    Link, joint and fingertip names are kept: fixed links stay separate bodies (``fusestatic="false"``),
    visual geometry is kept beside collision geometry (``discardvisual="false"``; MuJoCo puts visuals in geom
    group 1 without contacts), and every ``<mimic>`` joint becomes a joint equality constraint
    ``q_mimic = offset + multiplier * q_mimicked``, named ``mimic_<joint>`` (MuJoCo < 4 ignores ``<mimic>``).
    ``meshdir`` is where relative mesh paths resolve (primitive-only URDFs need none).
    """
    root = _parse(urdf_xml)
    mimics = mimic_joints(urdf_xml)
    urdf_joints = {j.get("name") for j in root.iter("joint")}
    for name, (master, _, _) in mimics.items():
        if master not in urdf_joints:  # checked before MuJoCo sees it (it would only log a warning)
            raise ValueError(f"URDF mimic joint {name!r}: no joint named {master!r} in the model")
    for old in root.findall("mujoco"):
        root.remove(old)
    compiler = ET.Element("compiler", discardvisual="false", fusestatic="false", strippath="false")
    if meshdir is not None:
        compiler.set("meshdir", str(meshdir))
    block = ET.Element("mujoco")
    block.append(compiler)
    root.insert(0, block)
    try:
        spec = mujoco.MjSpec.from_string(ET.tostring(root, encoding="unicode"))
    except Exception as e:  # mujoco raises ValueError with the parser's message
        raise ValueError(f"MuJoCo could not read the URDF: {e}") from None
    joints = {j.name for j in spec.joints}
    # MuJoCo 4's URDF import already turns <mimic> into joint equalities (older versions drop them): name the
    # ones it made, check their coefficients, and add whatever is missing, so each coupling exists exactly once.
    imported = {e.name1: e for e in spec.equalities if e.type == mujoco.mjtEq.mjEQ_JOINT}
    for name, (master, multiplier, offset) in mimics.items():
        missing = [n for n in (name, master) if n not in joints]
        if missing:
            raise ValueError(f"URDF mimic joint {name!r}: MuJoCo's model has no joint {missing[0]!r}")
        eq = imported.get(name)
        if eq is None or eq.name2 != master:
            eq = spec.add_equality()
            eq.type = mujoco.mjtEq.mjEQ_JOINT
        eq.name = f"mimic_{name}"
        eq.objtype = mujoco.mjtObj.mjOBJ_JOINT
        eq.name1, eq.name2 = name, master
        eq.data[:5] = [offset, multiplier, 0.0, 0.0, 0.0]  # polycoef: q1 = a0 + a1 q2 (+ higher terms, unused)
        # A mimic joint is a rigid linkage: stiffer than MuJoCo's default (solref 0.02), which lets a light
        # 2.4x thumb coupling sag by ~0.08 rad under gravity; this holds it within ~0.004 rad at dt = 2 ms.
        eq.solref[:] = MIMIC_SOLREF
        eq.solimp[:] = MIMIC_SOLIMP
    try:
        spec.compile()
    except Exception as e:
        raise ValueError(f"MuJoCo could not compile the hand: {e}") from None
    return spec.to_xml()


def _parse(urdf_xml: str) -> ET.Element:
    try:
        root = ET.fromstring(urdf_xml)
    except ET.ParseError as e:
        raise ValueError(f"URDF is not well-formed XML: {e}") from None
    if root.tag != "robot":
        raise ValueError(f"URDF root element must be <robot>, got <{root.tag}>")
    return root
