"""A third-party MJCF with its own joint names, renamed to the URDF's so the simulator can drive it by them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import mujoco

# Attributes through which MJCF elements name a joint (actuators, equalities, tendons, sensors).
_JOINT_REFS = ("joint", "joint1", "joint2", "jointinparent")


def renamed_mjcf(path: Path, names: dict[str, str], where: str) -> str:
    """MJCF text of the model at ``path`` (includes resolved, mesh and texture folders made absolute) with each
    joint ``names[urdf] = mjcf`` renamed ``urdf`` everywhere it is named. Raises naming the joints it lacks."""
    try:
        spec = mujoco.MjSpec.from_file(str(path))
    except ValueError as e:
        raise ValueError(f"{where}: MuJoCo could not read the MJCF {path}: {e}") from None
    joints = {j.name for j in spec.joints}
    missing = sorted(v for v in names.values() if v not in joints)
    if missing:
        raise ValueError(f"{where}: mjcf_joints names {', '.join(map(repr, missing))}, which {path.name} does not "
                         f"have; its joints are {', '.join(sorted(n for n in joints if n))}")
    clash = sorted(k for k, v in names.items() if k in joints and k != v and k not in names.values())
    if clash:
        raise ValueError(f"{where}: {path.name} already has joints named {', '.join(map(repr, clash))}; "
                         "map them too or rename differently")
    for attr in ("meshdir", "texturedir"):
        folder = getattr(spec, attr)
        if folder and not Path(folder).is_absolute():
            setattr(spec, attr, str((path.parent / folder).resolve()))
        elif not folder:
            setattr(spec, attr, str(path.parent.resolve()))
    try:
        spec.compile()
    except ValueError as e:
        raise ValueError(f"{where}: MuJoCo could not compile the MJCF {path}: {e}") from None
    root = ET.fromstring(spec.to_xml())
    back = {v: k for k, v in names.items()}
    defined = {id(j) for body in root.iter("body") for j in body.findall("joint")}
    for el in root.iter():
        if id(el) in defined and el.get("name") in back:
            el.set("name", back[el.get("name")])
        for attr in _JOINT_REFS:
            if el.get(attr) in back:
                el.set(attr, back[el.get(attr)])
    return ET.tostring(root, encoding="unicode")

