"""Quality filters for annotated clips, each drop recorded with its reason.

A clip is dropped when
- ``few_hands``: tracked hands appear in fewer than ``min_hand_presence`` (20 %) of its frames;
- ``sparse_mano``: plausible hand configurations fill fewer than ``min_mano_density`` (5 %) of its
  frame × slot cells (a hand is tracked but its 3D fit is implausible: NaN-free yet behind the camera, with
  broken bone lengths, or with MANO parameters far outside their range);
- ``extra_hands``: the detector saw more than two hands in more than ``max_extra_hand_fraction`` (25 %) of its
  frames (other people's hands make the two-slot tracks unreliable).

Plausibility is a per-detection check (:func:`plausible_hands`, vectorised); the clip decision
(:func:`evaluate_clip`) only counts.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from embodiments.layout import HAND_PARENTS

DROP_REASONS = ("few_hands", "sparse_mano", "extra_hands")
_CHILD = np.arange(1, len(HAND_PARENTS))
_PARENT = np.asarray(HAND_PARENTS[1:])


@dataclasses.dataclass(frozen=True)
class FilterConfig:
    """Clip thresholds (fractions in [0, 1]) and per-hand plausibility bounds (metres, radians)."""

    min_hand_presence: float = 0.20
    min_mano_density: float = 0.05
    max_extra_hand_fraction: float = 0.25
    min_depth: float = 0.05
    max_depth: float = 3.0
    min_bone: float = 0.003
    max_bone: float = 0.15
    max_abs_beta: float = 5.0
    max_joint_angle: float = float(np.pi) + 1e-3

    def __post_init__(self) -> None:
        for name in ("min_hand_presence", "min_mano_density", "max_extra_hand_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"FilterConfig.{name} must be a fraction in [0, 1], got {v}")
        if not 0 <= self.min_depth < self.max_depth:
            raise ValueError("FilterConfig needs 0 <= min_depth < max_depth")
        if not 0 <= self.min_bone < self.max_bone:
            raise ValueError("FilterConfig needs 0 <= min_bone < max_bone")


@dataclasses.dataclass(frozen=True)
class FilterResult:
    """Outcome for one clip: kept or not, every failed check's reason, and the measured fractions."""

    kept: bool
    reasons: tuple[str, ...]
    hand_presence: float
    mano_density: float
    extra_hand_fraction: float

    @property
    def reason(self) -> str | None:
        """The first failed check in :data:`DROP_REASONS` order (the one summaries count), or None if kept."""
        return self.reasons[0] if self.reasons else None


def plausible_hands(joints: np.ndarray, mano: dict[str, np.ndarray] | None = None,
                    has_mano: np.ndarray | None = None, config: FilterConfig | None = None) -> np.ndarray:
    """(D,) bool: detections whose 3D configuration is usable.

    Args:
        joints: (D, 21, 3) camera-frame joints in metres.
        mano: optional MANO arrays ``pose`` (D, 45) and ``betas`` (D, 10); checked on rows in ``has_mano``.
        has_mano: (D,) bool, rows whose MANO parameters are given.
    """
    cfg = config or FilterConfig()
    joints = np.asarray(joints, np.float64)
    ok = np.isfinite(joints).all(axis=(1, 2))
    j = np.nan_to_num(joints)
    depth = j[:, 0, 2]
    ok &= (depth > cfg.min_depth) & (depth < cfg.max_depth)
    bones = np.linalg.norm(j[:, _CHILD] - j[:, _PARENT], axis=-1)
    ok &= ((bones >= cfg.min_bone) & (bones <= cfg.max_bone)).all(-1)
    if mano and has_mano is not None and np.any(has_mano):
        pose = np.nan_to_num(np.asarray(mano["pose"], np.float64)).reshape(len(ok), 15, 3)
        betas = np.nan_to_num(np.asarray(mano["betas"], np.float64))
        mano_ok = (np.linalg.norm(pose, axis=-1) <= cfg.max_joint_angle).all(-1) & (
            np.abs(betas) <= cfg.max_abs_beta).all(-1)
        ok &= ~np.asarray(has_mano, bool) | mano_ok
    return ok


def evaluate_clip(assigned: np.ndarray, plausible: np.ndarray, detections_per_frame: np.ndarray,
                  config: FilterConfig | None = None) -> FilterResult:
    """Apply the three clip filters.

    Args:
        assigned: (T, 2) bool, a tracked hand in the slot.
        plausible: (T, 2) bool, that hand's configuration is plausible (False where unassigned).
        detections_per_frame: (T,) int, hands the detector reported.
    """
    cfg = config or FilterConfig()
    assigned = np.asarray(assigned, bool)
    plausible = np.asarray(plausible, bool) & assigned
    n = np.asarray(detections_per_frame)
    if assigned.ndim != 2 or assigned.shape[1] != 2 or plausible.shape != assigned.shape or n.shape != (
            assigned.shape[0],):
        raise ValueError(f"evaluate_clip: assigned/plausible must be (T, 2) and detections_per_frame (T,), got "
                         f"{assigned.shape}, {plausible.shape}, {n.shape}")
    T = max(assigned.shape[0], 1)
    presence = float(assigned.any(1).sum() / T)
    density = float(plausible.sum() / (2 * T))
    extra = float((n > 2).sum() / T)
    reasons = []
    if presence < cfg.min_hand_presence:
        reasons.append("few_hands")
    if density < cfg.min_mano_density:
        reasons.append("sparse_mano")
    if extra > cfg.max_extra_hand_fraction:
        reasons.append("extra_hands")
    return FilterResult(kept=not reasons, reasons=tuple(reasons), hand_presence=presence, mano_density=density,
                        extra_hand_fraction=extra)
