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
    root = ET.fromstring(urdf_xml)
    links = [link.get("name") for link in root.iter("link")]
    children = {j.find("child").get("link") for j in root.iter("joint")}
    roots = [name for name in links if name not in children]
    if len(roots) != 1:
        raise ValueError(f"URDF must have exactly one root link, found {roots}")
    return roots[0]


class UrdfHand(Embodiment):
    """A hand from a :class:`HandSpec`; every frame the spec names is checked to exist."""

    def __init__(self, spec: HandSpec):
        self.spec = spec
        self.name = spec.name
        self.side = spec.side
        self.description = spec.description
        self._urdf_xml = spec.urdf_xml if spec.urdf_xml is not None else spec.urdf.read_text()
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
