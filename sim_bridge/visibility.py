"""Per joint and frame: can the camera see it? From MuJoCo's segmentation and depth renders.

A joint sits inside its links (a knuckle inside the two links that meet there, a fingertip inside the distal
link), so the surface seen at its pixel is almost always in front of it. What matters is *whose* surface: the joint
is **occluded** when the geom seen at the pixel it projects into belongs to neither of the two links meeting at the
joint (the slot frame's body and its parent body) **and** that surface is nearer the camera than the joint by more
than ``margin``. Another finger of the same hand, the other hand or an object in front hides it; its own links, the
table or the sky behind it do not. Joints outside the image (invalid) are not visible. ``occluded_by`` records what
hid each joint (own palm, own finger, other hand, object, environment).
"""

from __future__ import annotations

import numpy as np

from embodiments.layout import NUM_SLOTS, SLOT_NAMES

OCCLUSION_MARGIN = 0.004  # m: a surface this much nearer than the joint counts as in front of it

# What hides a joint (``occluded_by`` codes): -1 not in the image, 0 visible, then the kind of thing in front.
NOT_IN_IMAGE, VISIBLE, OWN_PALM, OWN_FINGER, OTHER_HAND, OBJECT, ENVIRONMENT = -1, 0, 1, 2, 3, 4, 5
OCCLUDER_NAMES = {NOT_IN_IMAGE: "not in image", VISIBLE: "visible", OWN_PALM: "own palm", OWN_FINGER: "own finger",
                  OTHER_HAND: "other hand", OBJECT: "object", ENVIRONMENT: "environment"}
# Occlusion between parts, the kind the paper targets: a finger in front of another, the other hand, an object
# (a palm-down hand hiding its own curled fingers from a head camera is everywhere and is counted apart).
PART_OCCLUDERS = (OWN_FINGER, OTHER_HAND, OBJECT)


def geom_classes(scene) -> np.ndarray:
    """(42, ngeom) int8: what each geom is to each slot's joint: 0 one of the two links meeting at the joint
    (the slot frame's body and its parent; for the hand root, the root alone), else the ``OWN_PALM`` …
    ``ENVIRONMENT`` code. Rows of slots no hand fills are ``ENVIRONMENT``."""
    from .scene import LABEL_OBJECT

    m = scene.model
    out = np.full((NUM_SLOTS, m.ngeom), ENVIRONMENT, dtype=np.int8)
    is_object = scene.geom_labels == LABEL_OBJECT
    for h, hand in enumerate(scene.hands):
        emb = hand.embodiment
        row = np.where(is_object, OBJECT, ENVIRONMENT).astype(np.int8)
        row[(scene.geom_hand >= 0) & (scene.geom_hand != h)] = OTHER_HAND
        row[scene.geom_hand == h] = OWN_FINGER
        row[(scene.geom_hand == h) & (m.geom_bodyid == hand.root_body)] = OWN_PALM
        for slot, frame in emb.slot_frames.items():
            body = scene.body_id(frame, emb.name)
            if body < 0:
                continue
            bodies = [body] if body == hand.root_body else [body, int(m.body_parentid[body])]
            j = SLOT_NAMES.index(slot)
            out[j] = row
            out[j, np.isin(m.geom_bodyid, bodies)] = VISIBLE
    return out


def joint_occluders(segmentation: np.ndarray, depth: np.ndarray, uvz: np.ndarray, valid: np.ndarray,
                    classes: np.ndarray, margin: float = OCCLUSION_MARGIN) -> np.ndarray:
    """``occluded_by`` codes (T, J) int8 of joints in a segmentation (T, H, W) (geom id, −1 none) and depth
    (T, H, W) render.

    ``uvz`` (T, J, 3): pixel coordinates (pixel (x, y) covers [x, x+1) × [y, y+1)) and depth along the optical
    axis of each joint; ``valid`` (T, J); ``classes`` (J, ngeom) what each geom is to each joint (0 for the links
    that may cover it without hiding it, see :func:`geom_classes`). A joint is hidden by the geom seen at its pixel
    when that geom's class is not 0 and its surface is more than ``margin`` nearer than the joint.
    """
    seg, depth = np.asarray(segmentation), np.asarray(depth)
    uvz, valid = np.asarray(uvz, np.float64), np.asarray(valid, bool)
    T, H, W = seg.shape
    if depth.shape != seg.shape or uvz.shape[:2] != valid.shape or uvz.shape[0] != T or \
            classes.shape[0] != valid.shape[1]:
        raise ValueError(f"joint visibility: shapes disagree: segmentation {seg.shape}, depth {depth.shape}, "
                         f"uvz {uvz.shape}, valid {valid.shape}, classes {classes.shape}")
    x = np.floor(np.nan_to_num(uvz[..., 0], nan=-1.0)).astype(np.int64)
    y = np.floor(np.nan_to_num(uvz[..., 1], nan=-1.0)).astype(np.int64)
    inside = valid & (x >= 0) & (x < W) & (y >= 0) & (y < H) & np.isfinite(uvz[..., 2])
    t = np.arange(T)[:, None]
    xc, yc = np.clip(x, 0, W - 1), np.clip(y, 0, H - 1)
    geom, surface = seg[t, yc, xc], depth[t, yc, xc]
    hit = geom >= 0
    kind = np.zeros(valid.shape, np.int8)
    j = np.broadcast_to(np.arange(valid.shape[1]), valid.shape)
    kind[hit] = classes[j[hit], geom[hit]]
    in_front = hit & (kind != VISIBLE) & (surface < uvz[..., 2] - margin)
    out = np.where(in_front, kind, VISIBLE).astype(np.int8)
    out[~inside] = NOT_IN_IMAGE
    return out


def joint_visibility(segmentation: np.ndarray, depth: np.ndarray, uvz: np.ndarray, valid: np.ndarray,
                     owners: np.ndarray, margin: float = OCCLUSION_MARGIN) -> np.ndarray:
    """Visible flags (T, J): :func:`joint_occluders` with ``owners`` (J, ngeom) bool the links that may cover each
    joint without hiding it."""
    classes = np.where(np.asarray(owners, bool), VISIBLE, ENVIRONMENT).astype(np.int8)
    return joint_occluders(segmentation, depth, uvz, valid, classes, margin) == VISIBLE


def rollout_occluders(scene, segmentation: np.ndarray, depth: np.ndarray, joints,
                      margin: float = OCCLUSION_MARGIN) -> np.ndarray:
    """``occluded_by`` codes (T, 42) of a rollout's camera-frame ``joints`` (SparseJoints with K) in its renders."""
    uvd, ok = joints.project()  # (u, v, 1/z)
    uvz = np.concatenate([uvd[..., :2], np.asarray(joints.positions, np.float64)[..., 2:]], axis=-1)
    return joint_occluders(segmentation, depth, uvz, ok, geom_classes(scene), margin)


def occluded(visible: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(T, J) joints that are in the image (valid) but hidden."""
    return np.asarray(valid, bool) & ~np.asarray(visible, bool)


def hidden_by(occluded_by: np.ndarray, kinds=PART_OCCLUDERS) -> np.ndarray:
    """(T, J) joints hidden by one of ``kinds`` (default: another finger, the other hand or an object)."""
    return np.isin(occluded_by, kinds)


def sustained_occlusion(hidden: np.ndarray, min_joints: int = 3, min_fraction: float = 0.5) -> bool:
    """Whether a clip has **sustained occlusion**: at least ``min_joints`` joints ``hidden`` (T, J) in at least
    ``min_fraction`` of its frames."""
    per_frame = np.asarray(hidden, bool).sum(-1)
    return bool(len(per_frame) and (per_frame >= min_joints).mean() >= min_fraction)
