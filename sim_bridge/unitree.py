"""Unitree's joint layouts for the Dex3-1 and Inspire hands ↔ dexworld's ``joint_names`` order.

Unitree tools (unitree_sdk2 DDS messages, xr_teleoperate / avp_teleoperate recordings, unitree_lerobot datasets,
Humanoid Everyday) store each hand as a short vector with Unitree's own order and names. This module maps those
vectors to and from the joint vectors of our registered hands (``dex3_left`` … ``inspire_right``), by joint name.

Facts and their sources (see docs/data.md for the full table):

* Dex3-1, 7 motors per hand. Motor (array) order of ``HandState_``/``HandCmd_`` is thumb_0, thumb_1, thumb_2,
  middle_0, middle_1, index_0, index_1 on *both* hands: xr_teleoperate ``teleop/robot_control/hand_retargeting.py``
  (``left/right_dex3_api_joint_names``, citing Unitree's "Sort by message structure" table of the G1 dexterous-hand
  page) and the Humanoid Everyday README (``hand_state`` indices 0–13: thumb rotation, thumb lower/upper, middle
  lower/upper, index lower/upper, left then right).
* Unitree's *names* for those 7 slots differ between the hands: left ``kLeftHandThumb0..2, kLeftHandMiddle0/1,
  kLeftHandIndex0/1``; right ``kRightHandThumb0..2, kRightHandIndex0/1, kRightHandMiddle0/1``
  (xr_teleoperate ``Dex3_1_Left_JointIndex`` / ``Dex3_1_Right_JointIndex`` enums; the same lists are the
  ``observation.state`` names of unitree_lerobot's G1 Dex3 datasets). The sources disagree on whether right-hand slots
  3–6 hold index or middle: the enum labels say index first, the retargeting table and Humanoid Everyday say middle
  first. ``convention="motor"`` (default) trusts the slot position (physical motor order, what recorded data hold);
  ``convention="label"`` trusts the label.
* Inspire (RH56DFX as Unitree ships it), 6 values per hand, normalised with 1 = open, 0 = closed, order pinky, ring,
  middle, index, thumb bend (``thumb_proximal_pitch``), thumb rotation (``thumb_proximal_yaw``) (xr_teleoperate
  ``left/right_inspire_api_joint_names``, citing Unitree's "Joint Motor Sequence" table). Normalisation
  ``(max - q) / (max - min)`` with ranges fingers 0–1.7 rad, thumb bend 0–0.5 rad, thumb rotation −0.1–1.3 rad
  (xr_teleoperate ``robot_hand_inspire.py``). Names ``kLeftHandPinky … kLeftHandThumbBend, kLeftHandThumbRotation``
  (unitree_lerobot robot configs).
"""

from __future__ import annotations

import dataclasses
import functools
import re

import numpy as np

from embodiments import registry
from embodiments.base import Embodiment
from embodiments.mjcf import mimic_joints

SIDES = ("left", "right")
_CAP = {"left": "Left", "right": "Right"}

# ---------------------------------------------------------------------------------------------------- Dex3-1
_DEX3_MOTOR_PARTS = ("thumb_0", "thumb_1", "thumb_2", "middle_0", "middle_1", "index_0", "index_1")
_DEX3_LABEL_PARTS = {
    "left": ("Thumb0", "Thumb1", "Thumb2", "Middle0", "Middle1", "Index0", "Index1"),
    "right": ("Thumb0", "Thumb1", "Thumb2", "Index0", "Index1", "Middle0", "Middle1"),
}
DEX3_CONVENTIONS = ("motor", "label")


def dex3_feature_names(side: str) -> tuple[str, ...]:
    """Unitree's names of the 7 Dex3 slots, in slot order (``kLeftHandThumb0`` …)."""
    _check_side(side)
    return tuple(f"k{_CAP[side]}Hand{p}" for p in _DEX3_LABEL_PARTS[side])


def dex3_slot_joints(side: str, convention: str = "motor") -> tuple[str, ...]:
    """URDF joint held by each of the 7 Dex3 slots (``left_hand_thumb_0_joint`` …) under a convention."""
    _check_side(side)
    if convention == "motor":
        return tuple(f"{side}_hand_{p}_joint" for p in _DEX3_MOTOR_PARTS)
    if convention == "label":
        return tuple(f"{side}_hand_{_label_to_part(p)}_joint" for p in _DEX3_LABEL_PARTS[side])
    raise ValueError(f"Dex3 convention must be one of {DEX3_CONVENTIONS}, got {convention!r}")


def _label_to_part(label: str) -> str:
    m = re.fullmatch(r"(Thumb|Index|Middle)(\d)", label)
    return f"{m.group(1).lower()}_{m.group(2)}"


# ---------------------------------------------------------------------------------------------------- Inspire
_INSPIRE_PARTS = ("pinky_proximal", "ring_proximal", "middle_proximal", "index_proximal",
                  "thumb_proximal_pitch", "thumb_proximal_yaw")
_INSPIRE_LABELS = ("Pinky", "Ring", "Middle", "Index", "ThumbBend", "ThumbRotation")
# (min, max) radians of each command slot; command = (max - q) / (max - min), so 1 = open (q = min).
INSPIRE_RANGES = np.array([[0.0, 1.7], [0.0, 1.7], [0.0, 1.7], [0.0, 1.7], [0.0, 0.5], [-0.1, 1.3]])


def inspire_feature_names(side: str) -> tuple[str, ...]:
    """Unitree's names of the 6 Inspire command slots (``kLeftHandPinky`` … ``kLeftHandThumbRotation``)."""
    _check_side(side)
    return tuple(f"k{_CAP[side]}Hand{p}" for p in _INSPIRE_LABELS)


def inspire_slot_joints(side: str) -> tuple[str, ...]:
    """URDF joint driven by each of the 6 Inspire command slots (``L_pinky_proximal_joint`` …)."""
    _check_side(side)
    return tuple(f"{side[0].upper()}_{p}_joint" for p in _INSPIRE_PARTS)


def inspire_to_command(q_slots: np.ndarray, clip: bool = True) -> np.ndarray:
    """Joint angles (..., 6) in command-slot order → normalised command (..., 6), 1 = open."""
    q_slots = _last_dim(q_slots, 6, "Inspire joint angles")
    lo, hi = INSPIRE_RANGES[:, 0], INSPIRE_RANGES[:, 1]
    cmd = (hi - q_slots) / (hi - lo)
    return np.clip(cmd, 0.0, 1.0) if clip else cmd


def inspire_from_command(cmd: np.ndarray) -> np.ndarray:
    """Normalised command (..., 6), 1 = open → joint angles (..., 6) in command-slot order (radians)."""
    cmd = _last_dim(cmd, 6, "Inspire command")
    if np.any((cmd < -1e-6) | (cmd > 1 + 1e-6)):
        raise ValueError("Inspire command values must lie in [0, 1] (1 = open); got values outside "
                         f"[{cmd.min():.3f}, {cmd.max():.3f}] — are these radians rather than a normalised command?")
    lo, hi = INSPIRE_RANGES[:, 0], INSPIRE_RANGES[:, 1]
    return hi - np.clip(cmd, 0.0, 1.0) * (hi - lo)


# ---------------------------------------------------------------------------------------------------- layouts
@dataclasses.dataclass(frozen=True)
class HandLayout:
    """How one registered hand appears in Unitree's vectors.

    Attributes:
        hand: registry name (``"dex3_left"``).
        names: Unitree feature names, in Unitree's slot order.
        slot_joints: URDF joint of each slot.
        normalised: True for Inspire (slots hold the 1 = open command), False for Dex3 (radians).
    """

    hand: str
    names: tuple[str, ...]
    slot_joints: tuple[str, ...]
    normalised: bool

    @functools.cached_property
    def _perm(self) -> np.ndarray:
        """Index into the hand's ``joint_names`` for each slot."""
        emb = registry.get(self.hand)
        missing = [j for j in self.slot_joints if j not in emb.joint_names]
        if missing or len(self.slot_joints) != emb.dof:
            raise ValueError(f"{self.hand}: Unitree layout names joints {list(self.slot_joints)}, the hand has "
                             f"{list(emb.joint_names)}")
        return np.array([emb.joint_names.index(j) for j in self.slot_joints])

    def to_unitree(self, q: np.ndarray) -> np.ndarray:
        """Joint vector(s) (..., dof) in the hand's ``joint_names`` order → Unitree vector(s) (..., n)."""
        q = _last_dim(q, len(self.slot_joints), f"{self.hand} joint vector")
        slots = q[..., self._perm]
        return inspire_to_command(slots) if self.normalised else slots

    def from_unitree(self, v: np.ndarray) -> np.ndarray:
        """Unitree vector(s) (..., n) → joint vector(s) (..., dof) in the hand's ``joint_names`` order."""
        v = _last_dim(v, len(self.names), f"{self.hand} Unitree vector ({', '.join(self.names)})")
        slots = inspire_from_command(v) if self.normalised else v
        q = np.empty_like(slots)
        q[..., self._perm] = slots
        return q


def unitree_layout(hand: str | Embodiment, convention: str = "motor") -> HandLayout | None:
    """Unitree layout of a registered hand (Dex3 / Inspire, either side), or None for other hands."""
    name = hand.name if isinstance(hand, Embodiment) else str(hand)
    m = re.fullmatch(r"(dex3|inspire)_(left|right)", name)
    if m is None:
        return None
    kind, side = m.groups()
    if kind == "dex3":
        return HandLayout(name, dex3_feature_names(side), dex3_slot_joints(side, convention), normalised=False)
    return HandLayout(name, inspire_feature_names(side), inspire_slot_joints(side), normalised=True)


# ---------------------------------------------------------------------------------------------------- mimic
def expand_mimic(hand: str | Embodiment, q: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """All revolute joint angles of a hand with mimic couplings: names and values (..., n_all).

    For the Inspire hands: 6 actuated → 12 joints (finger intermediates ×1.0, thumb intermediate ×1.6 and distal
    ×2.4 of the thumb pitch), read from the URDF's ``<mimic>`` tags.
    """
    emb = registry.get(hand)
    q = _last_dim(q, emb.dof, f"{emb.name} joint vector")
    table = mimic_joints(emb.urdf_xml)
    names = list(emb.joint_names) + sorted(table)
    cols = [q[..., i] for i in range(emb.dof)]
    for name in sorted(table):
        driver, mult, off = table[name]
        cols.append(mult * q[..., emb.joint_names.index(driver)] + off)
    return tuple(names), np.stack(cols, axis=-1)


# ---------------------------------------------------------------------------------------------------- arms
def arm_feature_names() -> tuple[str, ...]:
    """Unitree's 14 arm joint names (left then right: shoulder pitch/roll/yaw, elbow, wrist roll/pitch/yaw).

    Same order as Humanoid Everyday's ``arm_state`` and unitree_lerobot's ``observation.state`` prefix.
    """
    parts = ("ShoulderPitch", "ShoulderRoll", "ShoulderYaw", "Elbow", "WristRoll", "WristPitch", "WristYaw")
    return tuple(f"k{_CAP[s]}{p}" for s in SIDES for p in parts)


# ---------------------------------------------------------------------------------------------------- helpers
def _check_side(side: str) -> None:
    if side not in SIDES:
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")


def _last_dim(x: np.ndarray, n: int, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] != n:
        raise ValueError(f"{what} must end in dimension {n}, got shape {x.shape}")
    return x


# ---------------------------------------------------------------------------------------------------- detection
def detect_hands(names: list[str] | tuple[str, ...], what: str = "observation.state") -> list[str]:
    """Registered hands whose complete Unitree name set appears in ``names`` (left first), e.g. the 28 columns of a
    unitree_IL_lerobot G1 Dex3 dataset → ``["dex3_left", "dex3_right"]``; empty when no hand's names are there.
    A hand whose names are only partly there raises, naming the missing columns.
    """
    present = set(names)
    found = []
    for side in SIDES:
        fits = []
        for kind, want in (("dex3", dex3_feature_names(side)), ("inspire", inspire_feature_names(side))):
            have = [n for n in want if n in present]
            if len(have) == len(want):
                fits.append(f"{kind}_{side}")
            elif kind == "inspire" and any(n.endswith(("ThumbBend", "ThumbRotation", "Pinky")) for n in have):
                raise ValueError(f"{what}: Inspire {side} hand columns incomplete; missing "
                                 f"{[n for n in want if n not in present]}")
            elif kind == "dex3" and any(re.search(r"Thumb\d$", n) for n in have):
                raise ValueError(f"{what}: Dex3 {side} hand columns incomplete; missing "
                                 f"{[n for n in want if n not in present]}")
        if len(fits) > 1:
            raise ValueError(f"{what}: the {side} hand's columns fit both {fits}; pass the hands explicitly")
        found += fits
    return found


def robot_from_type(robot_type: str | None) -> str | None:
    """Our robot name for a LeRobot ``robot_type`` as unitree_IL_lerobot writes it (``Unitree_G1_Dex3`` → ``g1``,
    ``Unitree_G1_Inspire`` → ``g1_inspire``, ``…H1…`` → ``h1_2``), or None when it names no Unitree humanoid."""
    if not robot_type:
        return None
    t = str(robot_type).lower()
    if "g1" in t:
        return "g1_inspire" if "inspire" in t else "g1"
    if "h1" in t:
        return "h1_2"
    return None
