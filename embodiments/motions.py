"""Synthetic human hand motions for demos and tests: joint-angle keyframes of the human skeleton, eased smoothly.

``human_motion("pinch")`` gives :class:`SparseJoints` in the hand root frame of ``mano_<side>``;
``human_motion_angles`` gives the joint angles (T, 20) behind it, ordered as the skeleton's ``joint_names``.
Motions are the same joint angles on both sides, so the left motion is the mirror image of the right one.

* ``open``: relaxed hand → fingers straight and spread.
* ``power_grasp`` (alias ``grasp``): open hand → wrap around a ~4 cm handle, thumb over the fingers.
* ``pinch``: open hand → thumb tip meets index tip (precision pinch, within a few millimetres).
* ``point``: relaxed hand → index extended, the other fingers curled, thumb over the middle finger.
* ``wave``: a finger wave — each finger flexes and extends in turn, index to pinky, at 1 Hz.
* ``random``: smooth random motion inside the joint limits (seeded): random poses every 0.5 s joined by easing.
"""

from __future__ import annotations

import numpy as np

from .human import JOINT_NAMES, LIMITS
from .layout import SIDES
from .sparse import SparseJoints

MOTIONS = ("open", "power_grasp", "pinch", "point", "wave", "random")
ALIASES = {"grasp": "power_grasp", "fist": "power_grasp"}
_FINGERS4 = ("index", "middle", "ring", "pinky")


def _pose(**angles: float) -> np.ndarray:
    q = np.zeros(len(JOINT_NAMES))
    for name, value in angles.items():
        q[JOINT_NAMES.index(name)] = value
    return q


def _fingers(mcp, pip, dip, abd=(0.0, 0.0, 0.0, 0.0), only=_FINGERS4) -> dict[str, float]:
    out = {}
    for i, f in enumerate(_FINGERS4):
        if f in only:
            out.update({f"{f}_mcp_flex": mcp, f"{f}_pip_flex": pip, f"{f}_dip_flex": dip, f"{f}_mcp_abd": abd[i]})
    return out


# Key poses (joint angles in radians; unnamed joints are 0). All lie inside embodiments.human.LIMITS.
POSES: dict[str, np.ndarray] = {
    "relaxed": _pose(**_fingers(0.25, 0.35, 0.2), thumb_cmc_flex=0.15, thumb_mcp_flex=0.15, thumb_ip_flex=0.15),
    "open": _pose(**_fingers(0.0, 0.02, 0.0, abd=(0.2, 0.0, 0.15, 0.35)), thumb_cmc_abd=0.35,
                  thumb_cmc_flex=-0.1),
    "power_grasp": _pose(**_fingers(1.15, 1.35, 0.75, abd=(-0.05, 0.0, 0.0, 0.05)), thumb_cmc_abd=-0.2,
                         thumb_cmc_flex=0.75, thumb_mcp_flex=0.45, thumb_ip_flex=0.55),
    # Thumb and index angles solved once (least squares, scipy) to bring the two tips together.
    "pinch": _pose(**_fingers(0.55, 0.75, 0.45, only=("middle", "ring", "pinky")), index_mcp_flex=0.769,
                   index_pip_flex=0.786, index_dip_flex=0.435, thumb_cmc_abd=-0.141, thumb_cmc_flex=0.401,
                   thumb_mcp_flex=0.232, thumb_ip_flex=0.264),
    "point": _pose(**_fingers(1.45, 1.75, 1.0, only=("middle", "ring", "pinky")), index_mcp_flex=0.0,
                   index_pip_flex=0.05, thumb_cmc_abd=-0.25, thumb_cmc_flex=0.8, thumb_mcp_flex=0.5,
                   thumb_ip_flex=0.35),
}
_KEYED = {"open": ("relaxed", "open"), "power_grasp": ("open", "power_grasp"), "pinch": ("open", "pinch"),
          "point": ("relaxed", "point")}


def smootherstep(s: np.ndarray) -> np.ndarray:
    """Quintic easing 6s⁵ − 15s⁴ + 10s³ on [0, 1]: zero velocity and acceleration at both ends."""
    s = np.clip(s, 0.0, 1.0)
    return s * s * s * (s * (6.0 * s - 15.0) + 10.0)


def _ease_between(keys: np.ndarray, key_times: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Joint angles (T, D) at times t, easing from keyframe to keyframe (K, D) at increasing key_times (K,)."""
    seg = np.clip(np.searchsorted(key_times, t, side="right") - 1, 0, len(key_times) - 2)
    span = key_times[seg + 1] - key_times[seg]
    w = smootherstep((t - key_times[seg]) / span)[:, None]
    return (1.0 - w) * keys[seg] + w * keys[seg + 1]


def _check(name: str, side: str, fps: float, frames: int) -> str:
    name = ALIASES.get(name, name)
    if name not in MOTIONS:
        raise ValueError(f"unknown human motion {name!r}; motions: {', '.join(MOTIONS)} "
                         f"(aliases: {', '.join(ALIASES)})")
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if int(frames) != frames or frames < 1:
        raise ValueError(f"frames must be a positive integer, got {frames}")
    return name


def human_motion_angles(name: str, side: str = "right", fps: float = 16.0, frames: int = 17,
                        seed: int = 0) -> np.ndarray:
    """Joint angles (frames, 20) of a named motion, ordered as ``embodiments.human.JOINT_NAMES``.

    ``side`` is checked but does not change the angles: the left skeleton mirrors the right for equal angles.
    """
    name = _check(name, side, fps, frames)
    frames = int(frames)
    t = np.arange(frames) / fps
    duration = (frames - 1) / fps
    if name in _KEYED:
        start, goal = (POSES[k] for k in _KEYED[name])
        # Reach the goal at 80 % of the clip and hold it, so the last frames show the finished pose.
        s = t / (0.8 * duration) if duration > 0 else np.ones(frames)
        w = smootherstep(s)[:, None]
        return (1.0 - w) * start + w * goal
    if name == "wave":
        q = np.repeat(POSES["open"][None], frames, axis=0)
        for k, f in enumerate(_FINGERS4):
            # One flexion pulse per second per finger, each finger 0.15 s behind the previous one.
            phase = 2 * np.pi * 1.0 * (t - 0.15 * k)
            pulse = 0.5 - 0.5 * np.cos(phase)
            for joint, amp in (("mcp_flex", 1.0), ("pip_flex", 0.9), ("dip_flex", 0.5)):
                q[:, JOINT_NAMES.index(f"{f}_{joint}")] += amp * pulse
        return q
    # random: uniform poses within the limits (10 % margin) every 0.5 s, joined by quintic easing.
    rng = np.random.default_rng(seed)
    lo, hi = (np.array([LIMITS[n][i] for n in JOINT_NAMES]) for i in (0, 1))
    margin = 0.1 * (hi - lo)
    n_keys = max(int(np.ceil(duration / 0.5)), 1) + 1
    keys = rng.uniform(lo + margin, hi - margin, size=(n_keys, len(JOINT_NAMES)))
    key_times = np.linspace(0.0, max(duration, 1e-9), n_keys)
    return _ease_between(keys, key_times, t)


def human_motion(name: str, side: str = "right", fps: float = 16.0, frames: int = 17,
                 seed: int = 0) -> SparseJoints:
    """A named human hand motion as :class:`SparseJoints` (frames, 42, 3) in the hand root frame of mano_<side>."""
    from .registry import get

    q = human_motion_angles(name, side=side, fps=fps, frames=frames, seed=seed)
    hand = get(f"mano_{side}")
    pos, valid = hand.sparse_joints(q, strict=True)
    return SparseJoints(pos, np.broadcast_to(valid, pos.shape[:2]), frame="hand_root", fps=fps,
                        embodiment=hand.name)
