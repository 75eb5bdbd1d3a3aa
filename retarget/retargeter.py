"""``Retargeter``: one hand's motion (human or robot keypoints) → a target robot's joint angles, batched.

    rt = Retargeter(source="mano_right", target="inspire_right", method="dexpilot")
    q = rt.retarget(motion)          # (T, dof) in the target's joint_names order, always within limits
    res = rt.solve(motion)           # RetargetResult: q plus per-frame report (held frames, cost, scale, …)

Input is a :class:`~embodiments.SparseJoints` (the source's side is read from it; any frame: camera, world or
hand root) or an array of one hand in the source's joint layout, NaN where a joint is missing: (T, 21, 3) in the
MANO/OpenPose order for ``mano_*`` and robot sources, (T, 25, 3) WebXR / Vision Pro joints for ``webxr_*``.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

import embodiments
from embodiments import SparseJoints
from embodiments.layout import HAND_JOINT_NAMES, NUM_HAND_JOINTS, NUM_SLOTS, side_offset
from embodiments.skeletons import to_mano_order

from . import alignment
from .config import DEXPILOT_DEFAULTS, METHODS, resolve_pair_config
from .cpu_threads import solver_threads
from .losses import Terms, dexpilot_pinch, dexpilot_terms, position_terms, vector_terms
from .solver import SolverOptions, solve_sequence
from .torch_fk import TorchFK


class HeldFramesWarning(UserWarning):
    """Some frames had too few valid source joints and hold the previous solution."""


@dataclasses.dataclass
class RetargetResult:
    """Joint angles and a per-frame report.

    Attributes:
        q: (T, dof) joint angles in ``joint_names`` order, within the target's limits.
        joint_names: the target's actuated joints.
        held: (T,) True where a frame had too few valid source joints and holds the previous solution.
        cost: (T,) final data cost per solved frame (NaN where held).
        valid_fraction: (T,) share of the method's terms (by weight) whose source joints were valid.
        scale: target metres per source metre used.
        reference: (T, 42, 3) the source keypoints aligned and scaled into the target's root frame, placed at the
            target's wrist — what the robot's keypoints are matched against (NaN where invalid).
        iterations: solver iterations run (summed over chunks).
    """

    q: np.ndarray
    joint_names: tuple[str, ...]
    held: np.ndarray
    cost: np.ndarray
    valid_fraction: np.ndarray
    scale: float
    reference: np.ndarray
    iterations: int


class Retargeter:
    """Retarget a ``source`` hand's motion to a ``target`` hand with method ``position``, ``vector`` or ``dexpilot``.

    Args:
        source, target: registry names (``mano_right``, ``inspire_right``, ``dex3_left``, …) or embodiments.
        method: ``"position"``, ``"vector"`` or ``"dexpilot"``.
        config: pair config (path or mapping); default: ``retarget/configs/<source>__<target>.yaml`` if shipped,
            else the generic rule over the slots both hands fill.
        device: torch device for the solver (``"auto"`` picks CUDA when available).
        dtype: torch dtype of the solver (float32 default: sub-micrometre precision at hand scale, faster;
            float64 for a tighter solve).
        **overrides: ``scale`` (number), ``target_rotation_rpy_deg``, ``min_valid_fraction``, any
            :class:`SolverOptions` field (``temporal_weight``, ``huber_delta``, ``chunk_size``, ``lowpass_hz``,
            ``max_iters``, …) and, for DexPilot, its settings (``pinch_near``, ``pinch_far``, ``pinch_weight``, …).
    """

    def __init__(self, source: str | embodiments.Embodiment = "mano_right",
                 target: str | embodiments.Embodiment = "inspire_right", method: str = "vector",
                 config: str | Path | dict | None = None, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 **overrides: Any):
        if method not in METHODS:
            raise ValueError(f"unknown retargeting method {method!r}; methods are {', '.join(METHODS)}")
        self.source, self.target = _get(source, "source"), _get(target, "target")
        self.method = method
        kin = getattr(self.target, "kinematics", None)
        if kin is None or not hasattr(kin, "model"):
            raise ValueError(f"target {self.target.name!r} has no pinocchio model (kinematics.model); "
                             "retargeting needs a URDF-based embodiment")
        self.src_joints = _joint_names(self.source)
        self.tgt_joints = _joint_names(self.target)
        # A source may share another's pair configs (webxr_right uses mano_right's: same skeleton once on the slots).
        cfg = resolve_pair_config(getattr(self.source, "pair_config_name", self.source.name), self.target.name,
                                  config, set(self.src_joints), set(self.tgt_joints))
        if method not in cfg["methods"]:
            raise ValueError(f"the pair config {self.source.name} → {self.target.name} has no {method!r} "
                             f"section; it defines {', '.join(cfg['methods'])}")
        settings = dict(cfg["methods"][method])
        solver_kw = dict(cfg.get("solver") or {})
        self.scale_override: float | None = None if cfg.get("scale", "auto") == "auto" else float(cfg["scale"])
        rotation = cfg.get("target_rotation_rpy_deg", "auto")
        self.min_valid_fraction = float(cfg.get("min_valid_fraction", 0.5))
        solver_fields = {f.name for f in dataclasses.fields(SolverOptions)}
        for key, value in overrides.items():
            if key == "scale":
                if value is not None and not (np.isfinite(value) and value > 0):
                    raise ValueError(f"scale must be a positive number, got {value!r}")
                self.scale_override = None if value is None else float(value)
            elif key == "target_rotation_rpy_deg":
                rotation = value
            elif key == "min_valid_fraction":
                self.min_valid_fraction = float(value)
            elif key in solver_fields:
                solver_kw[key] = value
            elif method == "dexpilot" and key in DEXPILOT_DEFAULTS:
                settings[key] = value
            else:
                allowed = ["scale", "target_rotation_rpy_deg", "min_valid_fraction", *sorted(solver_fields)]
                if method == "dexpilot":
                    allowed += sorted(DEXPILOT_DEFAULTS)
                raise ValueError(f"unknown Retargeter option {key!r}; options are {', '.join(allowed)}")
        if not 0.0 <= self.min_valid_fraction <= 1.0:
            raise ValueError(f"min_valid_fraction must be in [0, 1], got {self.min_valid_fraction}")
        self.options = SolverOptions(**solver_kw)
        self.terms, self._pairs, self._dexpilot = self._build_terms(method, settings)
        self._check_available(self.terms.keypoints)

        # Alignment: the canonical frame uses the most ulnar MCP both hands fill, so both measure the same plane.
        self._ulnar = alignment.ulnar_mcp(set(self.src_joints) & set(self.tgt_joints))
        self._check_available(["wrist", "index_mcp", self._ulnar])
        if rotation == "auto":
            self.R_root_canon = self._measured_target_rotation()
        else:
            self.R_root_canon = alignment.rotation_from_rpy_deg(rotation)

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        tside = self.target.side
        frames = [self.target.slot_frames[f"{tside}_{k}"] for k in self.terms.keypoints]
        self.fk = TorchFK(kin.model, self.target.joint_names, frames, dtype=dtype, device=device)
        neutral_kp = self.target.frame_positions(self.target.neutral(), [self.target.slot_frames[f"{tside}_wrist"]])
        self._target_wrist = neutral_kp[0]
        # Start mid-range; joints no keypoint of the method depends on stay at the rest (neutral) pose.
        self.q_init = np.where(self.fk.moving_joints, 0.5 * (self.target.lower + self.target.upper),
                               self.target.neutral())

    # ------------------------------------------------------------------------------------------------ setup
    def _build_terms(self, method: str, s: dict) -> tuple[Terms, list[tuple[int, int]], dict]:
        if method == "position":
            return position_terms(list(s["keypoints"]), weights=s.get("weights")), [], {}
        if method == "vector":
            return vector_terms([tuple(p) for p in s["pairs"]], weights=s.get("weights")), [], {}
        dp = {**DEXPILOT_DEFAULTS, **{k: v for k, v in s.items() if k in DEXPILOT_DEFAULTS}}
        if not 0 <= dp["pinch_near"] < dp["pinch_far"]:
            raise ValueError(f"dexpilot needs 0 <= pinch_near < pinch_far, got {dp['pinch_near']}, {dp['pinch_far']}")
        terms, pairs = dexpilot_terms(list(s["fingertips"]), wrist=s.get("wrist", "wrist"),
                                      wrist_weight=dp["wrist_weight"], pair_weight=dp["pair_weight"])
        return terms, pairs, dp

    def _check_available(self, keypoints: list[str]) -> None:
        for who, hand, have in (("target", self.target, self.tgt_joints), ("source", self.source, self.src_joints)):
            missing = [k for k in keypoints if k not in have]
            if missing:
                raise ValueError(f"{who} {hand.name!r} lacks the slot(s) {', '.join(missing)} that the "
                                 f"{self.method!r} method of {self.source.name} → {self.target.name} needs; "
                                 f"it fills {', '.join(have)}")

    def _measured_target_rotation(self) -> np.ndarray:
        tside = self.target.side
        names = ["wrist", "index_mcp", self._ulnar]
        pts = self.target.frame_positions(self.target.neutral(),
                                          [self.target.slot_frames[f"{tside}_{n}"] for n in names])
        R, ok = alignment.canonical_frames(pts[0], pts[1], pts[2], tside)
        if not ok:
            raise ValueError(f"cannot measure {self.target.name}'s hand frame: wrist, index_mcp and {self._ulnar} "
                             "are collinear; give target_rotation_rpy_deg in the pair config")
        return R

    # ------------------------------------------------------------------------------------------------ input
    def _source_hand(self, motion: SparseJoints | np.ndarray, fps: float | None = None
                     ) -> tuple[np.ndarray, np.ndarray, float]:
        """(T, 21, 3) positions, (T, 21) validity and fps of the source hand in ``motion``."""
        side = self.source.side
        if isinstance(motion, SparseJoints):
            pos, valid = motion.hand(side)
            if not valid.any():
                other = "left" if side == "right" else "right"
                has_other = motion.hand(other)[1].any()
                hint = f" (it has {other}-hand joints; use source='mano_{other}'?)" if has_other else ""
                raise ValueError(f"the motion has no valid {side}-hand joints, which source "
                                 f"{self.source.name!r} needs{hint}")
            return pos.astype(np.float64), valid.copy(), motion.fps if fps is None else float(fps)
        arr = np.asarray(motion, dtype=np.float64)
        if arr.ndim == 3 and arr.shape[1:] == (NUM_SLOTS, 3):
            o = side_offset(side)
            arr = arr[:, o:o + NUM_HAND_JOINTS]
        else:
            arr = to_mano_order(arr, self.source.input_layout, where=f"motion for source {self.source.name!r}")
        if arr.shape[0] == 0:
            raise ValueError("motion has no frames (T = 0)")
        valid = np.isfinite(arr).all(-1)
        return np.where(valid[..., None], arr, 0.0), valid, 30.0 if fps is None else float(fps)

    # ------------------------------------------------------------------------------------------------ solve
    def reference(self, pos: np.ndarray, valid: np.ndarray, scale: float | None = None
                  ) -> tuple[np.ndarray, np.ndarray, float]:
        """Source keypoints (T, 21, 3) aligned to the target root frame relative to the wrist, unscaled; the
        per-frame alignment validity (T,); and the scale (override or estimated from bone lengths)."""
        idx = {n: i for i, n in enumerate(HAND_JOINT_NAMES)}
        w, im, ul = (pos[:, idx[n]] for n in ("wrist", "index_mcp", self._ulnar))
        R_src, ok = alignment.canonical_frames(w, im, ul, self.source.side)
        ok &= valid[:, idx["wrist"]] & valid[:, idx["index_mcp"]] & valid[:, idx[self._ulnar]]
        R = np.einsum("ij,tkj->tik", self.R_root_canon, R_src)  # target root ← source frame
        rel = np.einsum("tij,tnj->tni", R, pos - w[:, None])
        if scale is None:
            scale = self._scale(pos, valid & ok[:, None])
        return rel, ok, scale

    def _scale(self, pos: np.ndarray, valid: np.ndarray) -> float:
        """The ``scale`` override, else the scale estimated from the valid bones."""
        return self.scale_override if self.scale_override is not None else self.estimate_scale(pos, valid)

    def estimate_scale(self, pos: np.ndarray, valid: np.ndarray) -> float:
        """Target/source ratio of summed bone lengths over the slots both hands fill (1 for the same hand)."""
        if self.source.name == self.target.name:
            return 1.0
        common = [j for j in HAND_JOINT_NAMES if j in self.src_joints and j in self.tgt_joints]
        edges = alignment.chain_edges(common)
        idx = {n: i for i, n in enumerate(HAND_JOINT_NAMES)}
        src = alignment.bone_length_sum({n: pos[:, idx[n]] for n in common},
                                        {n: valid[:, idx[n]] for n in common}, edges)
        tside = self.target.side
        tp = self.target.frame_positions(self.target.neutral(), [self.target.slot_frames[f"{tside}_{n}"]
                                                                   for n in common])
        tgt = alignment.bone_length_sum({n: tp[i][None] for i, n in enumerate(common)}, None, edges)
        if not src > 0:
            raise ValueError("cannot estimate the scale: the source's bones have zero length; pass scale=")
        return tgt / src

    def solve(self, motion: SparseJoints | np.ndarray, fps: float | None = None) -> RetargetResult:
        """Retarget a whole motion in one batched solve; see :class:`RetargetResult`.

        ``fps`` (used by the optional low-pass) defaults to the SparseJoints' fps, or 30 for an array.
        """
        pos, valid, fps = self._source_hand(motion, fps)
        rel, ok, _ = self.reference(pos, valid, scale=1.0)
        idx = [HAND_JOINT_NAMES.index(k) for k in self.terms.keypoints]
        term_valid = self.terms.source_valid(valid[:, idx]) & ok[:, None]
        total = self.terms.weights.sum()
        valid_fraction = (np.broadcast_to(self.terms.weights, term_valid.shape) * term_valid).sum(-1) / total
        solve_mask = (valid_fraction >= self.min_valid_fraction) & ok & (valid_fraction > 0)
        if not solve_mask.any():
            raise ValueError(f"no frame of the motion has enough valid source joints for {self.method!r} "
                             f"retargeting (needs the wrist, index_mcp, {self._ulnar} and at least "
                             f"{self.min_valid_fraction:.0%} of {', '.join(self.terms.keypoints)})")
        scale = self._scale(pos, valid & ok[:, None])
        src_kp = rel[:, idx]  # (T, N, 3) unscaled, target-root orientation, wrist at 0
        vecs = np.einsum("kn,tnc->tkc", self.terms.A, src_kp)
        target = scale * vecs
        weight = np.broadcast_to(self.terms.weights, term_valid.shape) * term_valid
        if self._dexpilot:
            P = len(self._pairs)
            d = self._dexpilot
            pair_target, mult = dexpilot_pinch(vecs[:, :P], self._pairs, scale, d["pinch_near"], d["pinch_far"],
                                               d["touch_distance"], d["pinch_weight"], d["finger_gap"],
                                               d["gap_weight"])
            target = target.copy()
            target[:, :P] = pair_target
            weight = weight.copy()
            weight[:, :P] *= mult
        rows = int(solve_mask.sum()) * self.options.seeds if self.options.chunk_size is None else \
            min(int(solve_mask.sum()), self.options.chunk_size) * self.options.seeds
        with solver_threads(rows * 3 * len(self.terms.names) * self.target.dof, self.fk.device):
            res = solve_sequence(self.fk, self.terms.A, np.nan_to_num(target), weight, solve_mask,
                                 self.target.lower, self.target.upper, self.q_init, self.options, fps=fps,
                                 q_rest=self.target.neutral())
        reference = np.full((len(pos), NUM_SLOTS, 3), np.nan)
        o = side_offset(self.target.side)
        ref_hand = self._target_wrist + scale * rel
        ref_hand[~(valid & ok[:, None])] = np.nan
        reference[:, o:o + NUM_HAND_JOINTS] = ref_hand
        return RetargetResult(q=res.q, joint_names=tuple(self.target.joint_names), held=res.held, cost=res.cost,
                              valid_fraction=valid_fraction, scale=float(scale), reference=reference,
                              iterations=res.iterations)

    def retarget(self, motion: SparseJoints | np.ndarray, fps: float | None = None) -> np.ndarray:
        """Joint angles (T, dof) in the target's ``joint_names`` order; warns when frames were held."""
        res = self.solve(motion, fps)
        if res.held.any():
            frames = np.flatnonzero(res.held)
            warnings.warn(f"{len(frames)} frame(s) had too few valid source joints and hold the previous "
                          f"solution: {frames[:10].tolist()}{' …' if len(frames) > 10 else ''}",
                          HeldFramesWarning, stacklevel=2)
        return res.q

    def __repr__(self) -> str:
        return f"Retargeter(source={self.source.name!r}, target={self.target.name!r}, method={self.method!r})"


def _get(name: str | embodiments.Embodiment, role: str) -> embodiments.Embodiment:
    try:
        return embodiments.get(name)
    except KeyError as e:
        raise ValueError(f"unknown {role} hand: {e.args[0]}") from None


def _joint_names(hand: embodiments.Embodiment) -> list[str]:
    """The hand's filled slots as joint names without the side prefix, in the MANO order."""
    prefix = f"{hand.side}_"
    have = {s[len(prefix):] for s in hand.slot_frames}
    return [j for j in HAND_JOINT_NAMES if j in have]
