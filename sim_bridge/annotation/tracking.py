"""Two-slot hand tracking: per-frame detections → a consistent left track and right track.

Two slots, L (0) and R (1). Each slot remembers the position ``T_slot`` of the hand it last took, the frame it last
took one, and the detector label (``owner``) of that hand. In every frame the detections are matched to the slots
by bipartite matching (``scipy.optimize.linear_sum_assignment``) on

    C[i, s] = ‖T_i(t) − T_slot(t−1)‖ + λ · [handedness_i ≠ class(s)]

where ``T_i`` is the hand's 3D camera-frame position: its wrist joint (or the MANO camera translation where only
MANO parameters are known; the pipeline computes joints first so a whole video is tracked on wrists). A slot
without history (start, or forgotten after a gap) costs ``new_track_cost`` in place of the distance, so a
detection continues a nearby track rather than open a new one, and opens a new one when it is far from both.

Hysteresis: an *identity swap* is a frame where both slots are live with different owner labels and the matching
would give a slot a hand of the other label (the detector's labels and the tracks disagree from this frame on).
That assignment is taken only if its cost is lower than the label-consistent assignment's by more than
``swap_margin`` (τ_swap); otherwise the label-consistent one is kept. Large improvements (a detector flipping
both labels for a frame) are corrected; near-ties (two hands crossing) follow the labels.

Gap reset: a slot unseen for more than ``max_gap`` (τ_gap) frames forgets its position and owner.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import linear_sum_assignment

LEFT, RIGHT = 0, 1


@dataclasses.dataclass(frozen=True)
class TrackerConfig:
    """Tracking thresholds (metres and frames).

    Attributes:
        handedness_weight: λ, cost of giving a slot a hand labelled with the other side (metres).
        swap_margin: τ_swap, the cost improvement an identity swap must exceed (metres).
        max_gap: τ_gap, frames a slot may go unseen and keep its history.
        new_track_cost: distance-equivalent cost of starting a track in a slot without history (metres).
    """

    handedness_weight: float = 0.05
    swap_margin: float = 0.02
    max_gap: int = 10
    new_track_cost: float = 0.15

    def __post_init__(self) -> None:
        for name in ("handedness_weight", "swap_margin", "new_track_cost"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"TrackerConfig.{name} must be a non-negative number, got {v}")
        if not (isinstance(self.max_gap, int) and self.max_gap >= 0):
            raise ValueError(f"TrackerConfig.max_gap must be a non-negative integer (frames), got {self.max_gap}")


@dataclasses.dataclass(frozen=True, eq=False)
class Tracks:
    """Result of :func:`track`.

    Attributes:
        assignment: (T, 2) int, the detection row each slot (0 = left, 1 = right) took in each frame, −1 if none.
        detections_per_frame: (T,) int, detections in each frame (more than two means extra hands).
        swaps: identity swaps taken (each beat the label-consistent assignment by more than τ_swap).
        swaps_blocked: identity swaps refused by the hysteresis.
        resets: (frame, slot) pairs where a slot forgot its history after a gap longer than τ_gap.
        label_overrides: assigned detections whose label differs from their slot's side.
    """

    assignment: np.ndarray
    detections_per_frame: np.ndarray
    swaps: int = 0
    swaps_blocked: int = 0
    resets: tuple[tuple[int, int], ...] = ()
    label_overrides: int = 0

    @property
    def num_frames(self) -> int:
        return int(self.assignment.shape[0])

    def assigned(self) -> np.ndarray:
        """(T, 2) bool: slot took a detection in the frame."""
        return self.assignment >= 0


def track(translations: np.ndarray, frame: np.ndarray, handedness: np.ndarray, num_frames: int,
          config: TrackerConfig | None = None) -> Tracks:
    """Assign detections to the L/R slots frame by frame.

    Args:
        translations: (D, 3) hand positions in metres (wrist or MANO translation, camera frame).
        frame: (D,) int frame of each detection, sorted ascending.
        handedness: (D,) int detector label, 0 = left, 1 = right.
        num_frames: T, frames in the video.
        config: thresholds; defaults to :class:`TrackerConfig`.
    """
    cfg = config or TrackerConfig()
    pos = np.asarray(translations, np.float64)
    frame = np.asarray(frame, np.int64)
    labels = np.asarray(handedness, np.int64)
    D = frame.shape[0]
    if pos.shape != (D, 3) or labels.shape != (D,):
        raise ValueError(f"track: translations must be (D, 3) and handedness (D,) with D={D}, got {pos.shape} "
                         f"and {labels.shape}")
    if D and (np.any(np.diff(frame) < 0) or frame[0] < 0 or frame[-1] >= num_frames):
        raise ValueError(f"track: frame indices must be sorted and in [0, {num_frames})")
    if not np.isfinite(pos).all():
        raise ValueError("track: translations contain NaN/inf; drop those detections first")

    assignment = np.full((num_frames, 2), -1, np.int64)
    counts = np.bincount(frame, minlength=num_frames)[:num_frames]
    starts = np.searchsorted(frame, np.arange(num_frames + 1))
    slot_pos = np.zeros((2, 3))
    last_seen = np.array([-1, -1])  # −1: no history
    owner = np.array([-1, -1])
    slot_class = np.array([LEFT, RIGHT])
    swaps = blocked = overrides = 0
    resets: list[tuple[int, int]] = []
    lam, margin = cfg.handedness_weight, cfg.swap_margin

    for t in range(num_frames):
        for s in (0, 1):  # gap reset: more than max_gap unseen frames since the last detection
            if last_seen[s] >= 0 and t - last_seen[s] - 1 > cfg.max_gap:
                last_seen[s], owner[s] = -1, -1
                resets.append((t, s))
        lo, hi = starts[t], starts[t + 1]
        if hi == lo:
            continue
        rows = np.arange(lo, hi)
        live = last_seen >= 0
        dist = np.linalg.norm(pos[rows, None, :] - slot_pos[None], axis=-1)  # (n, 2)
        cost = np.where(live[None], dist, cfg.new_track_cost) + lam * (labels[rows, None] != slot_class[None])
        r, c = linear_sum_assignment(cost)
        pick = {int(s): int(i) for i, s in zip(r, c, strict=True)}  # slot → local row

        # Hysteresis on identity swaps (both slots live, owning different labels).
        if live.all() and owner[0] != owner[1] and len(pick) == 2:
            changed = any(labels[rows[pick[s]]] != owner[s] for s in (0, 1))
            if changed:
                ref = {}
                for s in (0, 1):
                    same = np.flatnonzero(labels[rows] == owner[s])
                    if same.size:
                        ref[s] = int(same[np.argmin(cost[same, s])])
                if len(ref) == 2 and ref[0] != ref[1]:
                    gain = (cost[ref[0], 0] + cost[ref[1], 1]) - (cost[pick[0], 0] + cost[pick[1], 1])
                    if gain > margin:
                        swaps += 1
                    else:
                        pick = ref
                        blocked += 1

        for s, i in pick.items():
            d = rows[i]
            assignment[t, s] = d
            slot_pos[s] = pos[d]
            last_seen[s] = t
            owner[s] = labels[d]
            overrides += int(labels[d] != slot_class[s])
    return Tracks(assignment=assignment, detections_per_frame=counts, swaps=swaps, swaps_blocked=blocked,
                  resets=tuple(resets), label_overrides=overrides)
