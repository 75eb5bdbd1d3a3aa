"""Human hand skeleton layouts that trackers record, and their mapping onto the 21 shared slots of one hand.

* ``mano`` (21 joints): MANO/OpenPose order — wrist; thumb CMC, MCP, IP, tip; per finger MCP, PIP, DIP, tip. MediaPipe
  hand landmarks use exactly this order (``WRIST``, ``THUMB_CMC`` … ``PINKY_TIP``).
* ``webxr`` (25 joints): the WebXR Hand Input skeleton, which Apple Vision Pro hand tracking also yields (ARKit's
  ``HandSkeleton`` without its two forearm joints; Unitree's teleoperation streams this layout) — wrist; thumb
  metacarpal, phalanx-proximal, phalanx-distal, tip; per finger metacarpal, phalanx-proximal, -intermediate,
  -distal, tip. Fingertips sit at 4, 9, 14, 19, 24. A joint's position is the base of its bone, so the thumb's
  metacarpal joint is the CMC and a finger's phalanx-proximal joint is its MCP knuckle; the four finger metacarpal
  joints (bases of the metacarpals, inside the palm) have no MANO slot and are dropped.
"""

from __future__ import annotations

import numpy as np

from .layout import FINGERS, HAND_JOINT_NAMES, NUM_HAND_JOINTS

WEBXR_JOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "thumb-metacarpal", "thumb-phalanx-proximal", "thumb-phalanx-distal", "thumb-tip",
    *(f"{f}-{part}" for f in ("index-finger", "middle-finger", "ring-finger", "pinky-finger")
      for part in ("metacarpal", "phalanx-proximal", "phalanx-intermediate", "phalanx-distal", "tip")),
)  # fmt: skip
NUM_WEBXR_JOINTS = len(WEBXR_JOINT_NAMES)
# For each of the 21 MANO-order joints, its index in the WebXR skeleton.
WEBXR_TO_MANO: tuple[int, ...] = (0, 1, 2, 3, 4, *(i for k in range(4) for i in range(6 + 5 * k, 10 + 5 * k)))
WEBXR_FINGERTIPS: tuple[int, ...] = (4, 9, 14, 19, 24)

LAYOUTS: dict[str, tuple[str, ...]] = {"mano": HAND_JOINT_NAMES, "webxr": WEBXR_JOINT_NAMES}
LAYOUT_TITLES = {"mano": f"the {NUM_HAND_JOINTS}-joint MANO/OpenPose/MediaPipe layout (mano_left/mano_right)",
                 "webxr": f"the {NUM_WEBXR_JOINTS}-joint WebXR / Vision Pro layout (webxr_left/webxr_right)"}


def layout_of_count(n: int) -> str | None:
    """The layout whose joint count is ``n`` (None if no layout has it)."""
    return next((name for name, joints in LAYOUTS.items() if len(joints) == n), None)


def to_mano_order(joints: np.ndarray, layout: str, where: str = "motion") -> np.ndarray:
    """One hand's joints (T, J, 3) in ``layout`` → (T, 21, 3) in the MANO/OpenPose order.

    A joint count that belongs to another layout is refused with a message naming both layouts.
    """
    arr = np.asarray(joints, dtype=np.float64)
    expected = len(LAYOUTS[layout])
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{where} must be an array (T, {expected}, 3) of one hand in {LAYOUT_TITLES[layout]}, "
                         f"got shape {arr.shape}")
    if arr.shape[1] != expected:
        other = layout_of_count(arr.shape[1])
        hint = f"; that is {LAYOUT_TITLES[other]}" if other else ""
        raise ValueError(f"{where} has {arr.shape[1]} joints per hand{hint}, but the source expects (T, {expected}, "
                         f"3): {LAYOUT_TITLES[layout]}")
    return arr if layout == "mano" else arr[:, list(WEBXR_TO_MANO)]


def webxr_from_mano(joints: np.ndarray, metacarpal_fraction: float = 0.3) -> np.ndarray:
    """(T, 21, 3) MANO-order joints → (T, 25, 3) WebXR joints; each finger metacarpal base is placed at
    ``metacarpal_fraction`` of the way from the wrist to that finger's MCP (for writing test data)."""
    arr = np.asarray(joints, dtype=np.float64)
    out = np.empty(arr.shape[:-2] + (NUM_WEBXR_JOINTS, 3))
    out[..., list(WEBXR_TO_MANO), :] = arr
    wrist = arr[..., 0, :]
    for k, f in enumerate(FINGERS[1:]):
        mcp = arr[..., HAND_JOINT_NAMES.index(f"{f}_mcp"), :]
        out[..., 5 + 5 * k, :] = wrist + metacarpal_fraction * (mcp - wrist)
    return out
