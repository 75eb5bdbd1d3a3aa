"""Labelled renders for the keypoint probe: random hand poses over randomised MuJoCo scenes, with 2D joint labels.

The probe (``worldmodel.evaluation.probe``) learns from these; they reach it as data, so the world model never
imports the simulator.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from embodiments import JointLimitWarning, get, mirror_twin
from embodiments.layout import NUM_HAND_JOINTS, side_offset

from .motion import hand_axes, wrist_pose
from .render import FrameRenderer
from .rollout import rollout
from .scene import SceneConfig, build_scene, randomize_appearance

HELDOUT_SEED_OFFSET = 1_000_003  # held-out scenes use seed + this offset, so they never share a scene with training
HELDOUT_RENDERS_PER_SCENE = 16  # many scenes in a small held-out set: the figure should not hinge on one camera
# hand geometry of the renders: one of sim_bridge.hand_style.HAND_STYLES, or "mixed" (alternating per scene), so one
# probe reads clips of either style
PROBE_HAND_STYLES = ("simple", "detailed", "mixed")


@dataclasses.dataclass
class ProbeData:
    """Renders of one embodiment at the working size.

    images (N, S, S, 3) uint8; uv (N, 21, 2) float32 hand-local joint pixels; valid (N, 21) bool: the slot exists
    on this hand and projects into the image (occluded joints stay valid, as in ``sim_bridge.rollout``);
    visible (N, 21) bool or None: the camera sees the joint (from depth + segmentation; held-out renders carry it,
    so the probe's accuracy is also reported on visible and on hidden joints); K (N, 3, 3) or None: each render's
    pixel intrinsics (the camera's fovy is drawn per appearance), for fitting models to the labels;
    occluded_by (N, 21) int8 or None (with ``visible``): what hides each joint, ``sim_bridge.visibility`` codes
    (0 visible, 1 own palm, 2 own finger, 3 other hand, 4 object, 5 environment, -1 not in the image).
    """

    embodiment: str
    images: np.ndarray
    uv: np.ndarray
    valid: np.ndarray
    visible: np.ndarray | None = None
    K: np.ndarray | None = None
    occluded_by: np.ndarray | None = None


def sample_poses(emb, axes, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n random hand poses (n, dof) and wrist poses (n, 4, 4) over the table, broader than the synth clips'."""
    grip = rng.uniform(0, 1, (n, 1))
    q = axes.open_q + grip * (axes.closed_q - axes.open_q) + rng.normal(0, 0.15, (n, emb.dof)) * (emb.upper - emb.lower)
    uniform = rng.uniform(emb.lower, emb.upper, (n, emb.dof))
    q = np.where(rng.uniform(size=(n, 1)) < 0.3, uniform, q)
    q = np.clip(q, emb.lower, emb.upper)
    home_x = 0.06 if emb.side == "right" else -0.06
    wrist = np.stack([
        wrist_pose(axes, [home_x + rng.uniform(-0.12, 0.12), rng.uniform(0.0, 0.25), rng.uniform(0.04, 0.2)],
                   yaw=rng.uniform(-0.8, 0.8), pitch=rng.uniform(-0.5, 0.35), roll=rng.uniform(-0.5, 0.5))
        for _ in range(n)])
    return q, wrist


def sample_twin_wrists(twin, axes, wrist: np.ndarray, rng: np.random.Generator, min_gap: float = 0.1,
                       tries: int = 50) -> np.ndarray:
    """Wrist poses (n, 4, 4) of a second hand, one per pose in ``wrist``, drawn as :func:`sample_poses` draws them
    and redrawn until the two wrists are at least ``min_gap`` m apart (after ``tries`` draws the farthest is kept)."""
    out = np.empty_like(wrist)
    for i, w in enumerate(wrist):
        best, best_gap = None, -1.0
        for _ in range(tries):
            cand = sample_poses(twin, axes, 1, rng)[1][0]
            gap = float(np.linalg.norm(cand[:3, 3] - w[:3, 3]))
            if gap > best_gap:
                best, best_gap = cand, gap
            if gap >= min_gap:
                break
        out[i] = best
    return out


def render_probe_data(embodiment: str, num_renders: int, size: int = 128, seed: int = 0,
                      renders_per_scene: int = 96, renders_per_appearance: int = 8, progress: bool = True,
                      scene_config=None, hand_style: str = "simple", visibility: bool = False,
                      two_hands: float = 0.0) -> ProbeData:
    """Render ``num_renders`` single frames of random poses over randomised MuJoCo scenes (kinematic replay).

    A scene (textures, objects, lights) is compiled every ``renders_per_scene`` frames and its continuous
    appearance (camera pose and fovy, lights, tints, object places) re-drawn every ``renders_per_appearance``;
    everything is a function of ``seed``. ``hand_style`` picks the hand geometry (``"mixed"``: simple and detailed
    scenes alternate). ``visibility`` also renders depth and segmentation to flag each joint the camera sees
    (``ProbeData.visible``); the colour frames and labels are the same either way. ``two_hands``: the fraction of
    scenes that also hold the hand's mirror twin (``inspire_left`` for ``inspire_right``) in its own random pose, a
    distractor the labels ignore (it may hide joints of the labelled hand), so a probe learns to read one hand of
    a pair.
    """
    from tqdm.auto import tqdm

    emb = get(embodiment)
    if num_renders < 1:
        raise ValueError(f"num_renders must be >= 1, got {num_renders}")
    if hand_style not in PROBE_HAND_STYLES:
        raise ValueError(f"hand_style must be one of {PROBE_HAND_STYLES}, got {hand_style!r}")
    if not 0.0 <= two_hands <= 1.0:
        raise ValueError(f"two_hands must be a fraction in [0, 1], got {two_hands}")
    twin = None
    if two_hands > 0:
        if (twin_name := mirror_twin(emb.name)) is None:
            raise ValueError(f"two_hands: {emb.name} has no registered mirror twin to render beside it")
        twin = get(twin_name)
    cfg = scene_config or SceneConfig(camera_eye_jitter=0.05, camera_target_jitter=0.05, fovy_deg=(50.0, 75.0))
    axes = hand_axes(emb)
    twin_axes = hand_axes(twin) if twin is not None else None
    o = side_offset(emb.side)
    mask = emb.slot_mask[o:o + NUM_HAND_JOINTS]
    images = np.empty((num_renders, size, size, 3), np.uint8)
    uv = np.zeros((num_renders, NUM_HAND_JOINTS, 2), np.float32)
    valid = np.zeros((num_renders, NUM_HAND_JOINTS), bool)
    K = np.zeros((num_renders, 3, 3))
    visible = np.zeros((num_renders, NUM_HAND_JOINTS), bool) if visibility else None
    occluded_by = np.full((num_renders, NUM_HAND_JOINTS), -1, np.int8) if visibility else None
    bar = tqdm(total=num_renders, desc=f"render {emb.name}", unit="frame", disable=not progress)
    done, block = 0, 0
    try:
        while done < num_renders:
            style = ("simple", "detailed")[block % 2] if hand_style == "mixed" else hand_style
            # its own stream, so renders without a twin stay what they were before two-hand scenes existed
            pair = twin is not None and np.random.default_rng([seed, block, 7]).random() < two_hands
            scene = build_scene((emb, twin) if pair else emb, dataclasses.replace(cfg, hand_style=style),
                                seed=int(np.random.SeedSequence([seed, block]).generate_state(1)[0]))
            renderer = FrameRenderer(scene.model, size, size, depth=visibility, segmentation=visibility)
            try:
                stop = min(done + renders_per_scene, num_renders)
                while done < stop:
                    n = min(renders_per_appearance, stop - done)
                    rng = np.random.default_rng([seed, block, done])
                    randomize_appearance(scene, rng)
                    q, wrist = sample_poses(emb, axes, n, rng)
                    hands = emb
                    if pair:  # the twin in its own pose on its own side, its wrist kept clear of the labelled one's
                        hands = (emb, twin)
                        q = {emb.name: q, twin.name: sample_poses(twin, twin_axes, n, rng)[0]}
                        wrist = {emb.name: wrist, twin.name: sample_twin_wrists(twin, twin_axes, wrist, rng)}
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", JointLimitWarning)
                        r = rollout(hands, q, wrist, scene=scene, renderer=renderer, size=(size, size))
                    uvd, ok = r.joints.project()
                    ok = ok[:, o:o + NUM_HAND_JOINTS] & mask
                    images[done:done + n] = r.frames
                    uv[done:done + n] = np.where(ok[..., None], uvd[:, o:o + NUM_HAND_JOINTS, :2], 0.0)
                    valid[done:done + n] = ok
                    K[done:done + n] = r.K
                    if visible is not None:
                        visible[done:done + n] = r.visible[:, o:o + NUM_HAND_JOINTS] & ok
                        occluded_by[done:done + n] = np.where(ok, r.occluded_by[:, o:o + NUM_HAND_JOINTS], -1)
                    done += n
                    bar.update(n)
            finally:
                renderer.close()
            block += 1
    finally:
        bar.close()
    return ProbeData(emb.name, images, uv, valid, visible, K, occluded_by)


def render_heldout(embodiment: str, num: int, size: int, seed: int, progress: bool = True,
                   hand_style: str = "simple", two_hands: float = 0.0) -> ProbeData:
    """Held-out renders: like the training ones, but a new scene every ``HELDOUT_RENDERS_PER_SCENE`` frames, with
    per-joint visibility."""
    return render_probe_data(embodiment, num, size, seed=seed, renders_per_scene=HELDOUT_RENDERS_PER_SCENE,
                             progress=progress, hand_style=hand_style, visibility=True, two_hands=two_hands)


def render_probe_sets(embodiments, num_renders: int, num_heldout: int, size: int, heldout_size: int, seed: int = 0,
                      progress: bool = True, hand_style: str = "simple", two_hands: float = 0.0,
                      visibility: bool = False) -> tuple[list[ProbeData], list[ProbeData], dict]:
    """Training and held-out renders for each embodiment, and a record of how they were made (for the probe).

    ``visibility`` also flags which joints of the training renders the camera sees (held-out renders always
    carry the flags), for a loss that weighs hidden joints differently.

    With ``two_hands`` > 0 that fraction of the training scenes also holds each hand's mirror twin; the held-out
    set stays one-hand, comparable with earlier probes (:func:`render_two_hand_heldout` makes the two-hand one).
    """
    import time

    t0 = time.perf_counter()
    train = [render_probe_data(e, num_renders, size, seed=seed, progress=progress, hand_style=hand_style,
                               two_hands=two_hands, visibility=visibility) for e in embodiments]
    held = [render_heldout(e, num_heldout, heldout_size, seed + HELDOUT_SEED_OFFSET, progress, hand_style)
            for e in embodiments]
    info = {"heldout_seed": int(seed + HELDOUT_SEED_OFFSET), "heldout_renders_per_scene": HELDOUT_RENDERS_PER_SCENE,
            "hand_style": hand_style}
    if two_hands > 0:
        info["two_hand_renders"] = float(two_hands)
    info["render_seconds"] = round(time.perf_counter() - t0, 1)
    return train, held, info


def render_two_hand_heldout(embodiments, num_heldout: int, size: int, seed: int = 0, progress: bool = True,
                            hand_style: str = "simple") -> list[ProbeData]:
    """The held-out renders of :func:`render_probe_sets` (same seed and scenes) with every hand's mirror twin
    beside it: how well a probe reads one hand of a pair."""
    return [render_heldout(e, num_heldout, size, seed + HELDOUT_SEED_OFFSET, progress, hand_style, two_hands=1.0)
            for e in embodiments]
