"""``UrdfHand``: an embodiment defined by a URDF (kinematics through pinocchio) and a slot → frame map."""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET

import numpy as np

from .base import Embodiment
from .kinematics import HandKinematics
from .spec import HandSpec


def urdf_root_link(urdf_xml: str) -> str:
    """The one link of a URDF that is nobody's child."""
    return check_urdf_tree(urdf_xml)


def check_urdf_tree(urdf_xml: str, name: str = "URDF") -> str:
    """Check that the URDF's joints form one tree with consistent limits; return its root link.

    One-line ValueErrors name ``name`` and the offending joint or link: unparsable XML, a joint whose parent or child
    is not a link, a link that is the child of two joints or a joint cycle, several roots, limits with lower > upper.
    """
    try:
        root = ET.fromstring(urdf_xml)
    except ET.ParseError as e:
        raise ValueError(f"{name}: could not parse URDF: {e}") from None
    links = [link.get("name") for link in root.iter("link")]
    parent_of: dict[str, str] = {}
    for joint in root.iter("joint"):
        jname = joint.get("name")
        parent, child = joint.find("parent"), joint.find("child")
        if parent is None or child is None or parent.get("link") not in links or child.get("link") not in links:
            raise ValueError(f"{name}: joint {jname!r} must name a parent and a child link defined in the URDF")
        child_link = child.get("link")
        if child_link in parent_of:
            raise ValueError(f"{name}: link {child_link!r} is the child of two joints ({parent_of[child_link]!r} and "
                             f"{jname!r}); the joints must form a tree (no cycle)")
        parent_of[child_link] = jname
        limit = joint.find("limit")
        if limit is not None and joint.get("type") in ("revolute", "prismatic"):
            try:
                lower, upper = float(limit.get("lower", 0)), float(limit.get("upper", 0))
            except ValueError:
                raise ValueError(f"{name}: joint {jname!r} has non-numeric limits") from None
            if lower > upper:
                raise ValueError(f"{name}: joint {jname!r} has limits lower={lower:g} > upper={upper:g}; expected "
                                 "lower <= upper")
    roots = [link for link in links if link not in parent_of]
    if len(roots) != 1:
        hint = " (the joints form a cycle)" if not roots else ""
        raise ValueError(f"{name}: URDF must have exactly one root link, found {roots}{hint}")
    return roots[0]


class UrdfHand(Embodiment):
    """A hand from a :class:`HandSpec`; every frame the spec names is checked to exist."""

    def __init__(self, spec: HandSpec):
        self.spec = spec
        self.name = spec.name
        self.side = spec.side
        self.description = spec.description
        self._urdf_xml = spec.urdf_xml if spec.urdf_xml is not None else spec.urdf.read_text()
        check_urdf_tree(self._urdf_xml, f"{spec.name} ({spec.urdf})" if spec.urdf is not None else spec.name)
        self.kinematics = HandKinematics(self._urdf_xml, spec.joint_names)
        root = urdf_root_link(self._urdf_xml)
        if spec.root_link is not None and spec.root_link != root:
            raise ValueError(f"{spec.name}: spec says root_link {spec.root_link!r}, the URDF's root is {root!r}")
        self.root_link = root
        missing = [f for f in spec.slots.values() if not self.kinematics.model.existFrame(f)]
        if missing:
            raise ValueError(f"{spec.name}: the URDF has no frame named {', '.join(map(repr, missing))} "
                             f"(named in the spec's slots)")
        self.joint_names = tuple(self.kinematics.joint_names)
        self.lower = self.kinematics.lower
        self.upper = self.kinematics.upper
        self.slot_frames = dict(spec.slots)
        if spec.mjcf_joints is not None:
            urdf_joints = {j.get("name") for j in ET.fromstring(self._urdf_xml).iter("joint")}
            unknown = sorted(set(spec.mjcf_joints) - urdf_joints)
            if unknown:
                raise ValueError(f"{spec.name}: mjcf_joints maps {', '.join(map(repr, unknown))}, which the URDF "
                                 f"does not have")
            _ = self.mjcf_xml  # renamed now, so a bad map fails at registration

    @property
    def urdf_xml(self) -> str:
        return self._urdf_xml

    @functools.cached_property
    def mjcf_xml(self) -> str:
        if self.spec.mjcf is not None and self.spec.mjcf_joints:
            from .mjcf_rename import renamed_mjcf

            return renamed_mjcf(self.spec.mjcf, self.spec.mjcf_joints, self.spec.name)
        if self.spec.mjcf is not None:
            return self.spec.mjcf.read_text()
        from .mjcf import urdf_to_mjcf

        return urdf_to_mjcf(self._urdf_xml, meshdir=self.spec.urdf.parent if self.spec.urdf is not None else None)

    def frame_positions(self, q: np.ndarray, frames: list[str]) -> np.ndarray:
        return self.kinematics.frame_positions(q, frames)

    def frame_transforms(self, q: np.ndarray, frames: list[str]) -> np.ndarray:
        """Root-from-frame transforms (..., F, 4, 4) of named frames."""
        return self.kinematics.frame_transforms(self.check_q(q), frames)
