"""Episodes planned for occlusion, the case the paper targets: two hands crossing in depth, fingers passing in front
of each other seen from the side, a hand passing behind an object and coming out in front of it.

Each planner returns an :class:`~sim_bridge.synth.Episode` with its own camera pose (``Episode.camera``); synthesis
renders it with depth and segmentation, flags every joint's visibility (:mod:`sim_bridge.visibility`) and keeps
only clips with **sustained occlusion** (:func:`~sim_bridge.visibility.sustained_occlusion`: at least
``min_joints`` joints hidden between parts in at least ``min_fraction`` of the frames), re-planning a few times
before it skips an episode.
"""

from __future__ import annotations

import numpy as np

from embodiments import Embodiment
from embodiments.transforms import look_at

from .motion import HandAxes, interpolate_poses, min_jerk, smooth_random_q, wrist_pose
from .scene import Scene

SCENARIOS = ("cross", "side_grasp", "behind_object")
# Scene ranges of the occlusion split: objects large enough to hide a hand (4–9 cm across), one or two of them.
OCCLUSION_SCENE = {"object_half_size": (0.028, 0.045), "num_objects": (1, 2)}


def _frames(T: int) -> np.ndarray:
    return np.arange(T, dtype=np.float64)


def _grasp_q(emb: Embodiment, axes: HandAxes, T: int, rng: np.random.Generator, human, name: str) -> np.ndarray:
    """A pinch or power grasp: the retargeted human motion when available, else open → closed (min-jerk)."""
    q = human.get(name, 0) if human is not None else None
    if q is not None and len(q) == T:
        return q
    s = min_jerk(_frames(T) / (T - 1) * 1.4 - 0.2)[:, None]
    return np.clip(axes.open_q + rng.uniform(0.6, 0.95) * s * (axes.closed_q - axes.open_q), emb.lower, emb.upper)


def plan_cross(embs: tuple[Embodiment, ...], axes: dict[str, HandAxes], scene: Scene, rng: np.random.Generator,
               T: int):
    """Two hands cross in depth under the head camera: one 7–10 cm above the other (both clear of the objects),
    they swap sides, overlapping in the image over the middle half of the clip. Returns per-hand q and wrist
    paths and a prompt (the scene's own head camera)."""
    high = int(rng.integers(2))  # which hand passes nearer the camera
    y = rng.uniform(0.1, 0.16)
    m = scene.model
    tops = [2 * m.qpos0[a + 2] for a in scene.object_free_qadr]  # objects rest on the table: top = 2 × centre
    z_low = max(tops, default=0.0) + rng.uniform(0.05, 0.07)  # palm centre over the objects
    z_high = z_low + rng.uniform(0.07, 0.1)
    kt = np.array([0.0, 0.25, 0.75, 1.0]) * (T - 1)
    q, paths = {}, {}
    for i, e in enumerate(embs):
        s = -1.0 if e.side == "left" else 1.0  # starts on its own side, ends on the other
        xs = s * np.array([rng.uniform(0.08, 0.11), rng.uniform(0.01, 0.025), -rng.uniform(0.01, 0.025),
                           -rng.uniform(0.08, 0.11)])
        z = z_high if i == high else z_low
        yaw = rng.uniform(-0.3, 0.3)
        keys = np.stack([wrist_pose(axes[e.name], [x, y + rng.uniform(-0.02, 0.02), z], yaw=yaw,
                                    pitch=rng.uniform(-0.15, 0.1)) for x in xs])
        paths[e.name] = interpolate_poses(keys, kt, _frames(T))
        start = axes[e.name].open_q + rng.uniform(0, 0.3) * (axes[e.name].closed_q - axes[e.name].open_q)
        q[e.name] = smooth_random_q(e, T, rng, knots=3, start=start)
    top = embs[high].side
    prompt = f"Egocentric view: two robot hands cross over the table, the {top} hand above the other."
    return q, paths, prompt


def plan_side_grasp(emb: Embodiment, axes: HandAxes, scene: Scene, rng: np.random.Generator, T: int, human):
    """A pinch or power grasp seen from the side or obliquely (0–34° off the hand's lateral axis), so the fingers
    pass in front of each other. Returns q, wrist path, camera pose (OpenCV world-from-camera) and prompt."""
    name = "pinch" if rng.random() < 0.5 else "power_grasp"
    q = _grasp_q(emb, axes, T, rng, human, name)
    palm = np.array([rng.uniform(-0.04, 0.04), rng.uniform(0.1, 0.16), rng.uniform(0.1, 0.14)])
    yaw = rng.uniform(-0.4, 0.4)
    keys = np.stack([wrist_pose(axes, palm + d, yaw=yaw + dy, pitch=rng.uniform(-0.2, 0.1))
                     for d, dy in ((np.zeros(3), 0.0), (rng.uniform(-0.015, 0.015, 3), rng.uniform(-0.1, 0.1)))])
    path = interpolate_poses(keys, np.array([0.0, T - 1.0]), _frames(T))
    # Camera: from one side of the hand (thumb or little-finger side), turned 0–34° towards the fingertips or the
    # wrist, 0–14° above the palm plane (higher, the fingers' rows separate in the image).
    R = path[0, :3, :3] @ axes.R_root_canon  # world-from-canonical (x lateral, y forward, z back of the hand)
    side = 1.0 if rng.random() < 0.5 else -1.0
    az, el = rng.uniform(-0.6, 0.6), rng.uniform(0.0, 0.25)
    d_canon = np.array([side * np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])
    centre = path[0, :3, :3] @ axes.palm_center + path[0, :3, 3]
    eye = centre + R @ d_canon * rng.uniform(0.2, 0.28)
    eye[2] = max(eye[2], 0.03)  # stay above the table
    camera = look_at(eye, centre)
    view = "Side view" if abs(az) < 0.35 else "Oblique view"
    verb = "pinches" if name == "pinch" else "closes into a power grasp"
    return q, path, camera, f"{view}: a robot {emb.side} hand {verb} above the table."


def plan_behind_object(emb: Embodiment, axes: HandAxes, scene: Scene, rng: np.random.Generator, T: int):
    """A low camera looks across an object; the hand passes slowly behind it (60 %), or stays behind it for most of
    the clip, then moves over it and down in front of it (40 %), fingers moving. Returns q, wrist path, camera
    pose and prompt; None when the scene has no object."""
    if not len(scene.object_bodies):
        return None
    m = scene.model
    j = int(rng.integers(len(scene.object_bodies)))
    adr = scene.object_free_qadr[j]
    obj = m.qpos0[adr:adr + 3].copy()
    height = 2 * obj[2]
    heading = rng.uniform(-0.6, 0.6)  # the camera sits on the person's side of the object, turned by this
    d = np.array([np.sin(heading), -np.cos(heading), 0.0])  # object → camera, horizontal
    lateral = np.array([-d[1], d[0], 0.0])
    to_front = rng.random() < 0.4  # else it passes behind the object only
    distance = rng.uniform(0.2, 0.28) * (1.3 if to_front else 1.0)  # room for the hand in front
    eye = obj + d * distance + [0, 0, height + rng.uniform(0.05, 0.1) - obj[2]]
    behind = obj - d * rng.uniform(0.05, 0.08)
    behind[2] = rng.uniform(0.7, 1.1) * height + 0.02  # the object hides the lower part of the hand
    camera = look_at(eye, behind)
    span = rng.uniform(0.05, 0.09)
    sweep = lateral * span * (1.0 if rng.random() < 0.5 else -1.0)
    yaw = heading + rng.uniform(-0.4, 0.4)
    name = scene.object_names[j].split("_")[-1]
    if to_front:  # behind for 60 % of the clip, then over the object and down in front of it, fingers sideways
        radius = float(np.max(m.geom_size[m.body_geomadr[scene.object_bodies[j]]][:2]))
        over = obj + [0.0, 0.0, height - obj[2] + rng.uniform(0.04, 0.06)]
        front = obj + d * (radius + rng.uniform(0.03, 0.045))
        front[2] = behind[2]
        points = [behind - sweep, behind, behind + 0.3 * sweep, over, front]
        kt = np.array([0.0, 0.3, 0.6, 0.8, 1.0])
        yaw = [yaw] * 3 + [yaw + 0.5 * np.pi] * 2
        prompt = f"Low view across the table: a robot {emb.side} hand moves behind the {name}, then over it to " \
                 "its front."
    else:  # passes slowly behind it
        points = [behind + a * sweep for a in (-1.0, -0.3, 0.3, 1.0)]
        kt = np.array([0.0, 0.2, 0.8, 1.0])
        yaw = [yaw] * 4
        prompt = f"Low view across the table: a robot {emb.side} hand moves behind the {name}."
    keys = np.stack([wrist_pose(axes, p, yaw=y, pitch=rng.uniform(-0.15, 0.1)) for p, y in zip(points, yaw,
                                                                                                strict=True)])
    path = interpolate_poses(keys, kt * (T - 1), _frames(T))
    start = axes.open_q + rng.uniform(0, 0.3) * (axes.closed_q - axes.open_q)
    q = smooth_random_q(emb, T, rng, knots=3, start=start)
    return q, path, camera, prompt
