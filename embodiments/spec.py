"""YAML hand specs: how a user adds a hand from their own URDF (or MJCF) without writing code.

A spec names the model file, the root link, the actuated joints (optional) and, for each shared slot, the frame
of the model that fills it::

    name: my_hand_right
    side: right
    urdf: my_hand.urdf          # relative to the YAML file
    mjcf: my_hand.xml           # optional; otherwise built from the URDF
    root_link: base_link        # optional check that the URDF's root is this link
    joint_names: [j1, j2, ...]  # optional; default: the URDF's actuated joints
    mjcf_joints:                # optional, with mjcf: URDF joint -> the MJCF's name for it, when they differ
      j1: finger1_joint         # (a third-party model, e.g. MuJoCo Menagerie's); URDF mimic couplings the MJCF
                                # lacks are added when the hand is simulated
    slots:
      wrist: base_link          # '<joint>' (the spec's side is implied) or '<side>_<joint>'
      index_tip: index_tip_link

The URDF gives the kinematics (pinocchio); the MJCF, when given, is what MuJoCo simulates and renders.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .io_utils import read_yaml
from .layout import HAND_JOINT_NAMES, SIDES, SLOT_NAMES


@dataclasses.dataclass
class HandSpec:
    """A hand described by files: what the YAML spec holds, with paths resolved."""

    name: str
    side: str
    slots: dict[str, str]
    urdf: Path | None = None
    urdf_xml: str | None = None
    mjcf: Path | None = None
    root_link: str | None = None
    joint_names: list[str] | None = None
    mjcf_joints: dict[str, str] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"hand spec {self.name!r}: 'side' must be 'left' or 'right', got {self.side!r}")
        if self.urdf is None and self.urdf_xml is None:
            raise ValueError(f"hand spec {self.name!r}: needs 'urdf' (a path)")
        slots = {}
        for key, frame in self.slots.items():
            slot = key if key in SLOT_NAMES else f"{self.side}_{key}"
            if slot not in SLOT_NAMES or not slot.startswith(self.side):
                raise ValueError(f"hand spec {self.name!r}: unknown slot {key!r}; slots are "
                                 f"{', '.join(HAND_JOINT_NAMES)} (optionally prefixed with '{self.side}_')")
            if not isinstance(frame, str):
                raise ValueError(f"hand spec {self.name!r}: slot {key!r} must name a frame (a string)")
            slots[slot] = frame
        self.slots = slots
        if self.mjcf_joints is not None:
            if self.mjcf is None:
                raise ValueError(f"hand spec {self.name!r}: 'mjcf_joints' needs 'mjcf' (the model it renames)")
            if not isinstance(self.mjcf_joints, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in self.mjcf_joints.items()):
                raise ValueError(f"hand spec {self.name!r}: 'mjcf_joints' must map URDF joint names to MJCF joint "
                                 "names (strings)")
            if len(set(self.mjcf_joints.values())) != len(self.mjcf_joints):
                raise ValueError(f"hand spec {self.name!r}: 'mjcf_joints' maps two URDF joints to one MJCF joint")


def load_spec(path: str | Path) -> HandSpec:
    """Read a YAML hand spec; malformed files raise ValueError naming the file and the field."""
    path = Path(path)
    raw = read_yaml(path, "hand spec")
    if not isinstance(raw, dict):
        raise ValueError(f"hand spec {path} must be a mapping with keys name, side, urdf, slots")
    missing = [k for k in ("name", "side", "urdf", "slots") if k not in raw]
    if missing:
        raise ValueError(f"hand spec {path} is missing {', '.join(missing)}")
    if not isinstance(raw["slots"], dict) or not raw["slots"]:
        raise ValueError(f"hand spec {path}: 'slots' must map slot names to frame names")
    unknown = set(raw) - {f.name for f in dataclasses.fields(HandSpec)}
    if unknown:
        raise ValueError(f"hand spec {path}: unknown keys {sorted(unknown)}")
    base = path.parent
    for key in ("urdf", "mjcf"):
        if raw.get(key) is not None:
            raw[key] = (base / raw[key]).resolve()
            if not raw[key].exists():
                raise FileNotFoundError(f"hand spec {path}: {key} file {raw[key]} does not exist")
    try:
        return HandSpec(**raw)
    except TypeError as e:
        raise ValueError(f"hand spec {path}: {e}") from None
