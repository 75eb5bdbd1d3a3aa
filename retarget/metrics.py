"""Retargeting quality measures that do not depend on how the robot is scaled against the human."""

from __future__ import annotations

import itertools

import numpy as np


def pairwise_distances(tips: np.ndarray) -> np.ndarray:
    """Distances (T, P) between every pair of the F points in ``tips`` (T, F, 3), pairs in (i < j) order."""
    tips = np.asarray(tips, dtype=np.float64)
    pairs = list(itertools.combinations(range(tips.shape[1]), 2))
    i, j = (np.array(a) for a in zip(*pairs, strict=True))
    return np.linalg.norm(tips[:, j] - tips[:, i], axis=-1)


def fingertip_shape_error(robot_tips: np.ndarray, human_tips: np.ndarray) -> tuple[float, float]:
    """Fingertip-shape error: mean |s·d_human − d_robot| over frames and fingertip pairs, with the one scale s
    (over the whole motion) that fits the human's pairwise fingertip distances to the robot's best.

    ``robot_tips`` and ``human_tips`` are (T, F, 3) in matching fingertip order; frames with a NaN are left out.
    Returns (error in metres, s). The fit is least squares: s = Σ d_h d_r / Σ d_h².
    """
    d_r, d_h = pairwise_distances(robot_tips), pairwise_distances(human_tips)
    ok = np.isfinite(d_r).all(-1) & np.isfinite(d_h).all(-1)
    if not ok.any():
        raise ValueError("fingertip_shape_error: no frame has all fingertips finite on both hands")
    d_r, d_h = d_r[ok], d_h[ok]
    s = float((d_h * d_r).sum() / max((d_h * d_h).sum(), 1e-18))
    return float(np.abs(s * d_h - d_r).mean()), s
