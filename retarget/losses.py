"""Retargeting objectives as weighted Huber losses on 3D residual vectors (the temporal regulariser is in solver).

Every method is a set of K *terms*; a term is a linear combination of keypoints (a position ``p_b - p_wrist``
or a vector ``p_b - p_a``), the same combination on the source hand and on the robot. With ``A`` (K, N) the
combination matrix over N keypoints, a term's residual is ``A @ p_robot - target`` where ``target = s R (A @
p_source)`` (aligned and scaled); its cost is ``weight * huber(|residual|)``. Because a term is linear in the
keypoints, its Jacobian is ``A`` applied to the keypoint Jacobian, which is what the Gauss–Newton solver uses.

* position: ``p_k - p_wrist`` for each listed keypoint k;
* vector: ``p_task - p_origin`` for each listed (origin, task) pair;
* DexPilot: wrist→fingertip vectors and fingertip→fingertip vectors for every pair; when the source's thumb
  and a finger come within ``pinch_far`` of each other the thumb–finger target blends towards (almost) touching
  and its weight rises (``pinch_weight`` at ``pinch_near``); two fingers that both pinch the thumb are instead
  kept ``finger_gap`` apart with ``gap_weight``, so they do not collapse into one point (DexPilot, Handa et al.
  2020, with a smooth blend in place of its hard switch so the targets stay continuous in time).

Terms whose source keypoints are invalid get weight 0 (validity mask).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import torch


@dataclasses.dataclass
class Terms:
    """K residual terms over N keypoints: ``A`` (K, N) combination matrix and a name per term."""

    keypoints: list[str]
    A: np.ndarray
    names: list[str]
    weights: np.ndarray  # (K,) static per-term weights

    def source_valid(self, valid: np.ndarray) -> np.ndarray:
        """(T, K) a term is valid where every keypoint it uses is valid; ``valid`` is (T, N)."""
        uses = self.A != 0
        return ~((~valid[:, None, :]) & uses[None]).any(-1)


def position_terms(keypoints: list[str], wrist: str = "wrist", weights: list[float] | None = None) -> Terms:
    """Terms ``p_k - p_wrist`` for each keypoint k (positions relative to the wrist)."""
    names = [wrist] + [k for k in keypoints if k != wrist]
    A = np.zeros((len(names) - 1, len(names)))
    for i in range(1, len(names)):
        A[i - 1, i], A[i - 1, 0] = 1.0, -1.0
    w = np.ones(len(names) - 1) if weights is None else np.asarray(weights, dtype=np.float64)
    return Terms(names, A, [f"{wrist}->{k}" for k in names[1:]], _check_weights(w, len(names) - 1))


def vector_terms(pairs: list[tuple[str, str]], weights: list[float] | None = None) -> Terms:
    """Terms ``p_task - p_origin`` for each (origin, task) pair."""
    names: list[str] = []
    for a, b in pairs:
        for n in (a, b):
            if n not in names:
                names.append(n)
    A = np.zeros((len(pairs), len(names)))
    for k, (a, b) in enumerate(pairs):
        if a == b:
            raise ValueError(f"vector pair ({a}, {b}) has the same origin and task")
        A[k, names.index(b)] += 1.0
        A[k, names.index(a)] -= 1.0
    w = np.ones(len(pairs)) if weights is None else np.asarray(weights, dtype=np.float64)
    return Terms(names, A, [f"{a}->{b}" for a, b in pairs], _check_weights(w, len(pairs)))


def dexpilot_terms(fingertips: list[str], wrist: str = "wrist", wrist_weight: float = 1.0,
                   pair_weight: float = 1.0) -> tuple[Terms, list[tuple[int, int]]]:
    """DexPilot terms: fingertip pairs (i < j, thumb first) then wrist→tip; returns terms and the pair indices."""
    pairs = list(itertools.combinations(range(len(fingertips)), 2))
    vec_pairs = [(fingertips[i], fingertips[j]) for i, j in pairs] + [(wrist, t) for t in fingertips]
    w = [pair_weight] * len(pairs) + [wrist_weight] * len(fingertips)
    return vector_terms(vec_pairs, w), pairs


def _check_weights(w: np.ndarray, k: int) -> np.ndarray:
    if w.shape != (k,) or not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"weights must be {k} finite non-negative numbers, got {w.tolist()}")
    return w


def smooth_ramp(d: np.ndarray, near: float, far: float) -> np.ndarray:
    """1 at d <= near, 0 at d >= far, smoothstep in between."""
    s = np.clip((far - d) / max(far - near, 1e-9), 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


def dexpilot_pinch(source_vectors: np.ndarray, pairs: list[tuple[int, int]], scale: float,
                   pinch_near: float, pinch_far: float, touch_distance: float, pinch_weight: float,
                   finger_gap: float, gap_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Pinch-aware targets and weight multipliers for the DexPilot pair terms.

    ``source_vectors`` (T, P, 3) are the aligned, *unscaled* fingertip pair vectors (pair p = tip_j - tip_i,
    tip 0 = thumb); distances are judged on the source hand, in metres. Returns targets (T, P, 3) already scaled
    and weight multipliers (T, P).
    """
    d = np.linalg.norm(source_vectors, axis=-1)
    unit = source_vectors / np.maximum(d, 1e-9)[..., None]
    alpha = np.zeros_like(d)
    thumb_alpha: dict[int, np.ndarray] = {}
    for p, (i, j) in enumerate(pairs):
        if i == 0:
            alpha[:, p] = smooth_ramp(d[:, p], pinch_near, pinch_far)
            thumb_alpha[j] = alpha[:, p]
    target = scale * source_vectors
    mult = np.ones_like(d)
    for p, (i, j) in enumerate(pairs):
        if i == 0:
            a = alpha[:, p]
            length = (1 - a) * scale * d[:, p] + a * touch_distance
            mult[:, p] = 1 + a * (pinch_weight - 1)
        else:
            # Two fingers pinching the thumb together: keep them apart rather than on top of each other.
            a = np.minimum(thumb_alpha.get(i, 0.0), thumb_alpha.get(j, 0.0)) * np.ones_like(d[:, p])
            length = (1 - a) * scale * d[:, p] + a * np.maximum(scale * d[:, p], finger_gap)
            mult[:, p] = 1 + a * (gap_weight - 1)
        target[:, p] = unit[:, p] * length[:, None]
    return target, mult


# ------------------------------------------------------------------------------------------- costs (torch)
def huber(norm: torch.Tensor, delta: float) -> torch.Tensor:
    """Huber penalty of residual norms: ``n²/2`` below ``delta``, ``delta (n - delta/2)`` above."""
    return torch.where(norm <= delta, 0.5 * norm**2, delta * (norm - 0.5 * delta))


def huber_irls_weight(norm: torch.Tensor, delta: float) -> torch.Tensor:
    """Iteratively-reweighted-least-squares weight that makes a Gauss–Newton step minimise the Huber penalty."""
    return torch.where(norm <= delta, torch.ones_like(norm), delta / norm.clamp_min(1e-12))
