"""The shared sparse-joint space: 42 slots, left hand 0–20, right hand 21–41.

Each hand uses the MANO/OpenPose order: wrist; thumb CMC, MCP, IP, tip; index MCP, PIP, DIP, tip; middle …;
ring …; pinky …. Every package addresses joints through these names, never through bare indices.
"""

from __future__ import annotations

NUM_HAND_JOINTS = 21
NUM_SLOTS = 2 * NUM_HAND_JOINTS
SIDES = ("left", "right")

FINGERS = ("thumb", "index", "middle", "ring", "pinky")
HAND_JOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip",
)  # fmt: skip
SLOT_NAMES: tuple[str, ...] = tuple(f"{side}_{j}" for side in SIDES for j in HAND_JOINT_NAMES)

# Parent of each joint within one hand (wrist is the root): the skeleton drawn in plots and used for bones.
HAND_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)
FINGERTIPS: tuple[int, ...] = (4, 8, 12, 16, 20)
WRIST, INDEX_MCP, MIDDLE_MCP, PINKY_MCP = 0, 5, 9, 17


def side_offset(side: str) -> int:
    """First slot of a hand: 0 for the left, 21 for the right."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    return 0 if side == "left" else NUM_HAND_JOINTS


def slot_index(name: str) -> int:
    """Slot of a name such as ``"right_index_tip"``; raises with the valid names listed."""
    try:
        return SLOT_NAMES.index(name)
    except ValueError:
        raise KeyError(f"unknown slot {name!r}; slots are '<left|right>_<joint>' with joint in "
                       f"{', '.join(HAND_JOINT_NAMES)}") from None


def hand_slots(side: str) -> range:
    """The 21 slots of one hand."""
    start = side_offset(side)
    return range(start, start + NUM_HAND_JOINTS)


def skeleton_edges(side: str | None = None) -> list[tuple[int, int]]:
    """(parent, child) slot pairs of the bones of one hand or of both."""
    sides = SIDES if side is None else (side,)
    edges = []
    for s in sides:
        o = side_offset(s)
        edges += [(o + p, o + c) for c, p in enumerate(HAND_PARENTS) if p >= 0]
    return edges
