"""Tracked-like human hand motion: a stand-in for recorded hand tracking when no recording can be had offline.

Not a recording. Each *subject* is a human hand of another size and proportions than the built-in skeleton (overall
scale, per-finger bone lengths and knuckle positions drawn at random), driven by the built-in motions (finger wave,
pinch, power grasp, point, random poses, blended) with per-subject timing, the wrist moving and turning in a head
camera's frame, and tracker noise on top: white noise per joint and coordinate, a slowly drifting correlated error
per joint (fingertips noisier), dropped fingertips and dropped frames (NaN). Figures are typical of headset and
monocular hand trackers (a few millimetres); they are assumptions, not measurements.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .human import FIGURES, JOINT_NAMES, FingerFigures, human_hand_spec, human_hand_urdf
from .layout import FINGERS, FINGERTIPS, HAND_JOINT_NAMES, SIDES
from .motions import human_motion_angles
from .spec import HandSpec
from .urdf_hand import UrdfHand

SEGMENTS = ("wave", "pinch", "power_grasp", "point", "random")
SUBJECT_SCALES = (0.87, 1.0, 1.12)  # small, typical, large adult hands (≈ 16.5, 19, 21 cm wrist to middle tip)


@dataclasses.dataclass(frozen=True)
class TrackerNoise:
    """Tracker error model, metres: white noise, an AR(1) drift per joint (``drift_rho`` per frame), fingertip
    multiplier, and the chance per frame of a dropped fingertip / a dropped hand."""

    white: float = 0.0025
    drift: float = 0.002
    drift_rho: float = 0.95
    tip_factor: float = 1.5
    tip_dropout: float = 0.02
    frame_dropout: float = 0.01


@dataclasses.dataclass
class TrackedMotion:
    """``clean`` (T, 21, 3) true joints and ``tracked`` (T, 21, 3) with tracker noise and NaN dropouts, both in the
    camera frame (MANO/OpenPose order); ``scale`` of the subject's hand; ``fps``."""

    clean: np.ndarray
    tracked: np.ndarray
    scale: float
    fps: float


def subject_hand(side: str, subject: int, rng: np.random.Generator) -> UrdfHand:
    """The human skeleton resized for a subject: overall scale, bones ±6 %, knuckles moved by ~2 mm."""
    scale = SUBJECT_SCALES[subject % len(SUBJECT_SCALES)]
    figures = {}
    for f in FINGERS:
        fig = FIGURES[f]
        base = scale * (np.asarray(fig.base) + rng.normal(0.0, 0.002, 3))
        bones = scale * np.asarray(fig.bones) * rng.normal(1.0, 0.06, 3)
        figures[f] = FingerFigures(base=tuple(base), rpy=fig.rpy, bones=tuple(bones), radius=scale * fig.radius)
    spec = human_hand_spec(side)
    return UrdfHand(HandSpec(name=f"subject{subject}_{side}", side=side, slots=spec.slots,
                             urdf_xml=human_hand_urdf(side, figures), root_link="wrist",
                             joint_names=list(JOINT_NAMES)))


def tracked_motion(frames: int = 600, side: str = "right", subject: int = 0, fps: float = 30.0,
                   noise: TrackerNoise | None = None, seed: int = 0) -> TrackedMotion:
    """A subject's hand motion seen by a head camera, clean and as a tracker would report it."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    noise = TrackerNoise() if noise is None else noise
    rng = np.random.default_rng([seed, subject])
    hand = subject_hand(side, subject, rng)
    # Segments with per-subject durations, each eased into the next over 8 frames.
    shares = rng.dirichlet(np.full(len(SEGMENTS), 6.0))
    parts, n_total = [], 0
    for k, name in enumerate(SEGMENTS):
        n = frames - n_total if k == len(SEGMENTS) - 1 else max(int(round(shares[k] * frames)), 2)
        q = human_motion_angles(name, side=side, fps=fps, frames=n, seed=seed + 17 * subject)
        if parts:
            w = np.linspace(0, 1, min(8, n) + 1)[1:, None]
            q[:len(w)] = (1 - w) * parts[-1][-1] + w * q[:len(w)]
        parts.append(q)
        n_total += n
    q = np.clip(np.concatenate(parts), hand.lower, hand.upper)
    root = hand.frame_positions(q, [hand.slot_frames[f"{side}_{j}"] for j in HAND_JOINT_NAMES])
    clean = _apply(_wrist_path(len(q), fps, rng), root)
    tracked = clean + _tracker_error(clean.shape, fps, noise, rng)
    drop_tip = rng.random((len(q), len(FINGERTIPS))) < noise.tip_dropout
    for k, j in enumerate(FINGERTIPS):
        tracked[drop_tip[:, k], j] = np.nan
    tracked[rng.random(len(q)) < noise.frame_dropout] = np.nan
    return TrackedMotion(clean=clean, tracked=tracked, scale=SUBJECT_SCALES[subject % len(SUBJECT_SCALES)], fps=fps)


def _wrist_path(T: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Camera-from-hand-root transforms (T, 4, 4): the hand ~35 cm in front of the camera, palm down, drifting
    by a few centimetres and turning by up to ~25° at below 1 Hz."""
    from scipy.spatial.transform import Rotation

    t = np.arange(T) / fps
    ang = np.stack([0.35 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 6.3)) for _ in range(3)], -1)
    base = Rotation.from_euler("xyz", [-100, 0, 180], degrees=True)
    R = (base * Rotation.from_rotvec(ang)).as_matrix()
    p = np.stack([0.04 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 6.3)) for _ in range(3)], -1)
    out = np.tile(np.eye(4), (T, 1, 1))
    out[:, :3, :3] = R
    out[:, :3, 3] = p + [0.0, 0.05, 0.35]
    return out


def _apply(T_cam_root: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.einsum("tij,tnj->tni", T_cam_root[:, :3, :3], pts) + T_cam_root[:, None, :3, 3]


def _tracker_error(shape: tuple[int, ...], fps: float, noise: TrackerNoise, rng: np.random.Generator) -> np.ndarray:
    T = shape[0]
    err = rng.normal(0.0, noise.white, shape)
    drift = np.empty(shape)
    innovation = noise.drift * np.sqrt(1 - noise.drift_rho**2)
    drift[0] = rng.normal(0.0, noise.drift, shape[1:])
    for t in range(1, T):
        drift[t] = noise.drift_rho * drift[t - 1] + rng.normal(0.0, innovation, shape[1:])
    err += drift
    err[:, list(FINGERTIPS)] *= noise.tip_factor
    return err
