"""Per joint and frame: can the camera see it? From MuJoCo's segmentation and depth renders.

A joint sits inside its links (a knuckle inside the two links that meet there, a fingertip inside the distal
link), so the surface seen at its pixel is almost always in front of it. What matters is *whose* surface: the joint
is **occluded** when the geom seen at the pixel it projects into belongs to neither of the two links meeting at the
joint (the slot frame's body and its parent body) **and** that surface is nearer the camera than the joint by more
than ``margin``. Another finger of the same hand, the other hand or an object in front hides it; its own links, the
table or the sky behind it do not. Joints outside the image (invalid) are not visible.
"""

from __future__ import annotations

import numpy as np

from embodiments.layout import NUM_SLOTS, SLOT_NAMES

OCCLUSION_MARGIN = 0.004  # m: a surface this much nearer than the joint counts as in front of it


def joint_owner_geoms(scene) -> np.ndarray:
    """(42, ngeom) bool: for each slot of the scene's hands, the geoms of the links meeting at its joint.

    The slot frame's body and its parent body (for the hand root, the root alone); slots no hand fills are empty.
    """
    m = scene.model
    owners = np.zeros((NUM_SLOTS, m.ngeom), dtype=bool)
    for hand in scene.hands:
        emb = hand.embodiment
        for slot, frame in emb.slot_frames.items():
            body = scene.body_id(frame, emb.name)
            if body < 0:
                continue
            bodies = [body] if body == hand.root_body else [body, int(m.body_parentid[body])]
            owners[SLOT_NAMES.index(slot)] = np.isin(m.geom_bodyid, bodies)
    return owners


def joint_visibility(segmentation: np.ndarray, depth: np.ndarray, uvz: np.ndarray, valid: np.ndarray,
                     owners: np.ndarray, margin: float = OCCLUSION_MARGIN) -> np.ndarray:
    """Visible flags (T, J) of joints from a segmentation (T, H, W) (geom id, −1 none) and depth (T, H, W) render.

    ``uvz`` (T, J, 3): pixel coordinates (pixel (x, y) covers [x, x+1) × [y, y+1)) and depth along the optical
    axis of each joint; ``valid`` (T, J); ``owners`` (J, ngeom) the geoms that may cover joint j without hiding it.
    """
    seg, depth = np.asarray(segmentation), np.asarray(depth)
    uvz, valid = np.asarray(uvz, np.float64), np.asarray(valid, bool)
    T, H, W = seg.shape
    if depth.shape != seg.shape or uvz.shape[:2] != valid.shape or uvz.shape[0] != T or owners.shape[0] != \
            valid.shape[1]:
        raise ValueError(f"joint_visibility: shapes disagree: segmentation {seg.shape}, depth {depth.shape}, "
                         f"uvz {uvz.shape}, valid {valid.shape}, owners {owners.shape}")
    with np.errstate(invalid="ignore"):
        x = np.floor(np.nan_to_num(uvz[..., 0], nan=-1.0)).astype(np.int64)
        y = np.floor(np.nan_to_num(uvz[..., 1], nan=-1.0)).astype(np.int64)
    inside = valid & (x >= 0) & (x < W) & (y >= 0) & (y < H) & np.isfinite(uvz[..., 2])
    xc, yc = np.clip(x, 0, W - 1), np.clip(y, 0, H - 1)
    t = np.arange(T)[:, None]
    geom = seg[t, yc, xc]  # (T, J)
    surface = depth[t, yc, xc]
    own = np.zeros_like(inside)
    hit = geom >= 0
    j = np.broadcast_to(np.arange(valid.shape[1]), valid.shape)
    own[hit] = owners[j[hit], geom[hit]]
    in_front = hit & ~own & (surface < uvz[..., 2] - margin)
    return inside & ~in_front


def rollout_visibility(scene, segmentation: np.ndarray, depth: np.ndarray, joints,
                       margin: float = OCCLUSION_MARGIN) -> np.ndarray:
    """Visible flags (T, 42) of a rollout's camera-frame ``joints`` (SparseJoints with K) in its renders."""
    uvd, ok = joints.project()  # (u, v, 1/z)
    uvz = np.concatenate([uvd[..., :2], np.asarray(joints.positions, np.float64)[..., 2:]], axis=-1)
    return joint_visibility(segmentation, depth, uvz, ok, joint_owner_geoms(scene), margin)


def occluded(visible: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(T, J) joints that are in the image (valid) but hidden."""
    return np.asarray(valid, bool) & ~np.asarray(visible, bool)


def occlusion_stats(visible: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """Fraction of valid joint-frames occluded, and the largest number of joints occluded in one frame."""
    occ = occluded(visible, valid)
    n = max(int(np.asarray(valid, bool).sum()), 1)
    return {"occluded_fraction": float(occ.sum() / n), "max_occluded_joints": int(occ.sum(-1).max(initial=0))}


def sustained_occlusion(visible: np.ndarray, valid: np.ndarray, min_joints: int = 3,
                        min_fraction: float = 0.5) -> bool:
    """Whether a clip has **sustained occlusion**: at least ``min_joints`` joints occluded (in the image but
    hidden) in at least ``min_fraction`` of its frames."""
    per_frame = occluded(visible, valid).sum(-1)
    return bool(len(per_frame) and (per_frame >= min_joints).mean() >= min_fraction)

