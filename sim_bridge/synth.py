"""Synthetic paired training clips: rendered egocentric video + camera-frame sparse joints + K, made on a CPU.

Each episode is one motion of one robot hand over a randomised table scene:

* ``reach_grasp``: the hand reaches from a resting pose to an object, closes its fingers and lifts;
* ``human``: a human hand motion (``embodiments.motions``) retargeted to the robot (``retarget.Retargeter``)
  while the wrist follows a smooth random path;
* ``random``: smooth random joint trajectories within the limits along a smooth random wrist path.

Camera pose, fovy, lighting, colours/textures and object placement are randomised within ``SceneConfig`` ranges.
Everything is a function of ``(seed, episode index)``: re-running, or resuming into a folder that already holds
some episodes, gives identical files. Scenes are compiled once per ``episodes_per_scene`` episodes (structure:
textures, object kinds/sizes) and re-randomised per episode without recompiling, so the renderer is reused.
Episodes whose physics blew up or whose hand left the view are skipped and reported, never written.

``SynthConfig(occlusion=True)`` makes the occlusion split instead (:mod:`sim_bridge.occlusion`: two hands crossing
in depth for a pair, side/oblique views of grasps and hands passing behind objects for one hand): every clip carries
per-joint visibility (extras ``visible`` (T, 42) bool and ``occluded_by`` (T, 42) int8, what hides each joint) and has
sustained occlusion between parts (another finger, the other hand or an object in front of at least
``occlusion_min_joints`` joints in at least ``occlusion_min_fraction`` of the frames). ``visibility=True`` adds the
two extras to ordinary clips.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import mujoco
import numpy as np

from embodiments import Embodiment, JointLimitWarning
from embodiments.io_utils import atomic_path, clean_atomic_leftovers

from . import occlusion
from .motion import HandAxes, hand_axes, interpolate_poses, min_jerk, smooth_random_q, wrist_pose
from .render import FrameRenderer
from .rollout import SimRollout, rollout
from .scene import HandsLike, Scene, SceneConfig, build_scene, randomize_appearance, scene_hands

MOTION_KINDS = ("reach_grasp", "human", "random")
DEFAULT_WEIGHTS = {"reach_grasp": 0.5, "human": 0.3, "random": 0.2}
MOTION_VERBS = {"power_grasp": "closes into a power grasp", "pinch": "pinches its thumb and index finger together",
                "point": "points with its index finger", "wave": "waves its fingers one after another",
                "open": "opens and spreads its fingers", "random": "moves its fingers"}
_COLOURS = {"red": (0.8, 0.1, 0.1), "green": (0.1, 0.7, 0.2), "blue": (0.1, 0.2, 0.8), "yellow": (0.9, 0.85, 0.1),
            "orange": (0.95, 0.5, 0.1), "purple": (0.5, 0.15, 0.6), "cyan": (0.1, 0.75, 0.8),
            "pink": (0.95, 0.5, 0.7), "white": (0.92, 0.92, 0.92), "grey": (0.5, 0.5, 0.5), "black": (0.1, 0.1, 0.1),
            "brown": (0.45, 0.3, 0.15)}


@dataclasses.dataclass
class SynthConfig:
    """What an episode looks like and how it is made."""

    frames: int = 17
    size: tuple[int, int] = (128, 128)  # (H, W)
    fps: float = 16.0
    physics: bool = False
    motions: tuple[str, ...] = MOTION_KINDS
    motion_weights: tuple[float, ...] | None = None  # default: DEFAULT_WEIGHTS of the listed motions
    human_motions: tuple[str, ...] = ("power_grasp", "pinch", "point", "wave", "open", "random")
    random_motion_pool: int = 4  # distinct seeds of the human "random" motion (each retargeted once per run)
    retarget_method: str = "vector"
    episodes_per_scene: int = 8
    depth: bool = False
    segmentation: bool = False
    min_visible: float = 0.5  # fraction of the hand's joint-frames that must project into the image
    max_qacc: float = 1e6  # physics above this joint acceleration counts as blown up (episode skipped)
    visibility: bool = False  # store per-joint visibility (extra "visible"); renders depth and segmentation
    occlusion: bool = False  # the occlusion split (sim_bridge.occlusion); implies visibility
    occlusion_min_joints: int = 3  # sustained occlusion: at least this many joints hidden by parts (finger, hand,
    # object; visibility.PART_OCCLUDERS) ...
    occlusion_min_fraction: float = 0.5  # ... in at least this fraction of the frames
    occlusion_tries: int = 6  # plans per episode before it is skipped for lack of occlusion
    min_hand_gap: float = 0.12  # two hands (ordinary clips): the wrists stay at least this far apart (m) ...
    pair_tries: int = 24  # ... or the episode is re-planned, at most this many times, then skipped
    scene: SceneConfig = dataclasses.field(default_factory=SceneConfig)

    def __post_init__(self) -> None:
        if int(self.frames) != self.frames or self.frames < 2:
            raise ValueError(f"SynthConfig.frames must be an integer >= 2, got {self.frames}")
        bad = [m for m in self.motions if m not in MOTION_KINDS]
        if bad or not self.motions:
            raise ValueError(f"SynthConfig.motions must be a non-empty subset of {MOTION_KINDS}, got {self.motions}")
        if self.motion_weights is None:
            self.motion_weights = tuple(DEFAULT_WEIGHTS[m] for m in self.motions)
        if len(self.motion_weights) != len(self.motions) or min(self.motion_weights) < 0 \
                or sum(self.motion_weights) <= 0:
            raise ValueError("SynthConfig.motion_weights must give one non-negative weight per entry of motions")
        if len(self.size) != 2 or min(self.size) < 8:
            raise ValueError(f"SynthConfig.size must be (H, W) with sides >= 8, got {self.size}")
        if self.episodes_per_scene < 1:
            raise ValueError("SynthConfig.episodes_per_scene must be >= 1")
        if self.min_hand_gap < 0 or self.pair_tries < 1:
            raise ValueError("SynthConfig: min_hand_gap >= 0 and pair_tries >= 1 are required")
        if self.occlusion_min_joints < 1 or not 0 < self.occlusion_min_fraction <= 1 or self.occlusion_tries < 1:
            raise ValueError("SynthConfig: occlusion_min_joints >= 1, 0 < occlusion_min_fraction <= 1 and "
                             "occlusion_tries >= 1 are required")


@dataclasses.dataclass
class Episode:
    """A planned episode: joints (T, dof), hand root world poses (T, 4, 4), text prompt, motion kind; for a pair
    ``q`` and ``wrist_path`` are dicts keyed by hand name. ``camera``: an OpenCV world-from-camera pose (4, 4) of
    the ``ego`` camera for this episode (None: the scene's randomised one)."""

    q: np.ndarray | dict[str, np.ndarray]
    wrist_path: np.ndarray | dict[str, np.ndarray]
    prompt: str
    kind: str
    camera: np.ndarray | None = None


@dataclasses.dataclass
class SynthReport:
    written: list[Path]
    skipped: list[tuple[int, str]]  # (episode index, reason)
    existing: int  # episodes already on disk, left alone
    seconds: float
    frames_rendered: int
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames_rendered / self.seconds if self.seconds > 0 else float("nan")


# --------------------------------------------------------------------------- motion planning
def _colour_name(rgb: np.ndarray) -> str:
    names = list(_COLOURS)
    return names[int(np.argmin([np.sum((np.asarray(_COLOURS[n]) - rgb) ** 2) for n in names]))]


class HumanMotionSource:
    """Human motions retargeted to one robot hand, each retargeted once and cached (retargeting costs seconds)."""

    def __init__(self, emb: Embodiment, cfg: SynthConfig):
        self.emb, self.cfg = emb, cfg
        self._cache: dict[tuple[str, int], np.ndarray] = {}
        self._retargeter = None
        self.error: str | None = None

    def get(self, name: str, seed: int) -> np.ndarray | None:
        """Joint trajectory (frames, dof) of human motion ``name``; None when retargeting is unavailable."""
        key = (name, seed)
        if key not in self._cache:
            try:
                if self._retargeter is None:
                    from retarget.retargeter import Retargeter

                    self._retargeter = Retargeter(f"mano_{self.emb.side}", self.emb, self.cfg.retarget_method)
                from embodiments.motions import human_motion

                motion = human_motion(name, self.emb.side, self.cfg.fps, self.cfg.frames, seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    q = np.asarray(self._retargeter.retarget(motion), dtype=np.float64)
            except (ImportError, ValueError, KeyError, RuntimeError) as e:
                self.error = f"human motions unavailable ({type(e).__name__}: {e}); using random motions"
                return None
            self._cache[key] = np.clip(q, self.emb.lower, self.emb.upper)
        return self._cache[key]


def _random_wrist_path(axes: HandAxes, side: str, T: int, rng: np.random.Generator, n_keys: int = 3) -> np.ndarray:
    home_x = 0.06 if side == "right" else -0.06
    keys = np.stack([wrist_pose(axes, [home_x + rng.uniform(-0.08, 0.08), rng.uniform(0.06, 0.2),
                                       rng.uniform(0.07, 0.15)],
                                yaw=rng.uniform(-0.5, 0.5), pitch=rng.uniform(-0.35, 0.25), roll=rng.uniform(-0.3, 0.3))
                     for _ in range(n_keys)])
    return interpolate_poses(keys, np.linspace(0, T - 1, n_keys), np.arange(T, dtype=np.float64))


def plan_episode(emb: Embodiment, axes: HandAxes, scene: Scene, rng: np.random.Generator, cfg: SynthConfig,
                 human: HumanMotionSource | None = None) -> Episode:
    """Pick a motion kind and plan joints and wrist path for it (deterministic in ``rng``)."""
    T = int(cfg.frames)
    w = np.asarray(cfg.motion_weights, dtype=np.float64)
    kind = cfg.motions[rng.choice(len(cfg.motions), p=w / w.sum())]
    hand = f"a robot {emb.side} hand"
    if kind == "reach_grasp" and len(scene.object_bodies):
        m = scene.model
        j = int(rng.integers(len(scene.object_bodies)))
        adr = scene.object_free_qadr[j]
        obj = m.qpos0[adr:adr + 3].copy()
        home_x = 0.08 if emb.side == "right" else -0.08
        yaw, pitch = rng.uniform(-0.4, 0.4), rng.uniform(-0.25, 0.1)
        start = wrist_pose(axes, [home_x + rng.uniform(-0.04, 0.04), rng.uniform(0.0, 0.06), rng.uniform(0.12, 0.18)],
                           yaw=yaw + rng.uniform(-0.3, 0.3), pitch=pitch)
        above = obj + [0.0, 0.0, obj[2] + rng.uniform(0.025, 0.045)]  # palm just over the object's top
        grasp = wrist_pose(axes, above, yaw=yaw, pitch=pitch)
        lift = wrist_pose(axes, above + [0.0, 0.0, rng.uniform(0.03, 0.07)], yaw=yaw, pitch=pitch)
        t_reach, t_close = rng.uniform(0.45, 0.6), rng.uniform(0.72, 0.82)
        keys = np.stack([start, grasp, grasp, lift])
        kt = np.array([0.0, t_reach, t_close, 1.0]) * (T - 1)
        path = interpolate_poses(keys, kt, np.arange(T, dtype=np.float64))
        g = rng.uniform(0.55, 0.95)
        s = min_jerk((np.arange(T) - t_reach * 0.9 * (T - 1)) / ((t_close - 0.9 * t_reach) * (T - 1)))[:, None]
        q = axes.open_q + g * s * (axes.closed_q - axes.open_q)
        name = scene.object_names[j]
        colour = _colour_name(m.mat_rgba[m.geom_matid[m.body_geomadr[scene.object_bodies[j]]], :3]
                              * _material_rgb(scene, scene.object_bodies[j]))
        prompt = f"Egocentric view: {hand} reaches for the {colour} {name.split('_')[-1]} on the table, grasps it " \
                 "and lifts it."
        return Episode(np.clip(q, emb.lower, emb.upper), path, prompt, kind)
    path = _random_wrist_path(axes, emb.side, T, rng)
    if kind == "human" and human is not None:
        name = cfg.human_motions[rng.integers(len(cfg.human_motions))]
        seed = int(rng.integers(cfg.random_motion_pool)) if name == "random" else 0
        q = human.get(name, seed)
        if q is not None:
            return Episode(q, path, f"Egocentric view: {hand} {MOTION_VERBS.get(name, 'moves')} above the table.",
                           kind)
    q = smooth_random_q(emb, T, rng, knots=3, start=axes.open_q + rng.uniform(0, 0.3) * (axes.closed_q - axes.open_q))
    return Episode(q, path, f"Egocentric view: {hand} moves its fingers above the table.", "random")


def plan_pair_episode(embs: tuple[Embodiment, ...], axes: dict[str, HandAxes], scene: Scene,
                      rng: np.random.Generator, cfg: SynthConfig,
                      humans: Mapping[str, HumanMotionSource | None] | None = None) -> Episode | None:
    """Two hands, each with its own motion (as :func:`plan_episode` draws one for each side), kept apart: the
    wrists stay at least ``cfg.min_hand_gap`` m apart in every frame. Returns None when ``cfg.pair_tries`` plans
    all brought the hands closer (e.g. both reaching for the same object)."""
    humans = humans or {}
    for _ in range(cfg.pair_tries):
        eps = [plan_episode(e, axes[e.name], scene, rng, cfg, humans.get(e.name)) for e in embs]
        a, b = (ep.wrist_path[:, :3, 3] for ep in eps)
        if np.linalg.norm(a - b, axis=-1).min() >= cfg.min_hand_gap:
            return Episode({e.name: ep.q for e, ep in zip(embs, eps, strict=True)},
                           {e.name: ep.wrist_path for e, ep in zip(embs, eps, strict=True)},
                           joint_prompt([ep.prompt for ep in eps]), "+".join(ep.kind for ep in eps))
    return None


def joint_prompt(prompts: list[str]) -> str:
    """One prompt for a scene with several hands from each hand's own ("Egocentric view: a robot left hand …;
    a robot right hand …."), the wording the two-hand clips are trained with."""
    clauses = [p.removeprefix("Egocentric view: ").rstrip(".") for p in prompts]
    return "Egocentric view: " + "; ".join(clauses) + "."


def _material_rgb(scene: Scene, body: int) -> np.ndarray:
    """Base texture colour of an object (its material's first texture colour as built)."""
    name = scene.model.body(body).name + "_mat"
    tex = scene.spec.texture(name)
    return np.asarray(tex.rgb1) if tex is not None else np.ones(3)


def plan_occlusion_episode(embs: tuple[Embodiment, ...], axes: dict[str, HandAxes], scene: Scene,
                           rng: np.random.Generator, cfg: SynthConfig,
                           human: HumanMotionSource | None = None) -> Episode:
    """An episode of the occlusion split: ``cross`` for a pair; ``side_grasp`` (60 %) or ``behind_object`` (40 %,
    when the scene has objects) for one hand."""
    T = int(cfg.frames)
    if len(embs) == 2:
        q, paths, prompt = occlusion.plan_cross(embs, axes, scene, rng, T)
        return Episode(q, paths, prompt, "cross")
    emb = embs[0]
    if rng.random() < 0.4:
        planned = occlusion.plan_behind_object(emb, axes[emb.name], scene, rng, T)
        if planned is not None:
            q, path, camera, prompt = planned
            return Episode(q, path, prompt, "behind_object", camera)
    q, path, camera, prompt = occlusion.plan_side_grasp(emb, axes[emb.name], scene, rng, T, human)
    return Episode(q, path, prompt, "side_grasp", camera)


# --------------------------------------------------------------------------- writing
def write_episode(path: Path, r: SimRollout, ep: Episode, meta: dict) -> Path:
    """One clip file, atomically (``embodiments.clip.write_clip``: a temp file renamed into place).

    A pair rollout's clip holds both halves of the joints (embodiment ``"<left>+<right>"``); its ``q`` and
    ``q_target`` are (T, dof_left + dof_right), the left hand's joints then the right's, and ``T_world_hand`` is
    (T, 2, 4, 4), left then right. One hand: (T, dof) and (T, 4, 4) as before.
    """
    from embodiments.clip import write_clip

    from .clips import rollout_hands

    joints = r.joints
    if isinstance(r.q, Mapping):
        per_hand = rollout_hands(r)  # left hand first
        q, q_target = (np.concatenate(list(per_hand[f].values()), axis=1) for f in ("q", "q_target"))
        T_world_hand = np.stack(list(per_hand["T_world_hand"].values()), axis=1)
        joints = joints.replace(embodiment="+".join(per_hand["q"]))
    else:
        q, q_target, T_world_hand = r.q, r.q_target, r.T_world_hand
    extra = {"q": q.astype(np.float32), "q_target": q_target.astype(np.float32), "T_world_cam": r.T_world_cam,
             "T_world_hand": T_world_hand, "object_poses": r.object_poses, "object_names": ",".join(r.object_names),
             "motion": ep.kind, "mode": r.mode, **meta}
    if r.depth is not None:
        extra["depth"] = r.depth
    if r.visible is not None:
        extra["visible"] = r.visible
        extra["occluded_by"] = r.occluded_by
    if r.segmentation is not None:
        extra["segmentation_labels"] = r.geom_labels[np.maximum(r.segmentation, 0)] * (r.segmentation >= 0)
    return write_clip(path, r.frames, joints, prompt=ep.prompt, **extra)


def episode_path(out_dir: Path, index: int) -> Path:
    return Path(out_dir) / f"episode_{index:06d}.h5"


# --------------------------------------------------------------------------- driver
def synthesize(embodiment: HandsLike, out_dir: str | Path, episodes: int, seed: int = 0,
               config: SynthConfig | None = None, progress: bool = True, overwrite: bool = False,
               on_episode: Callable[[int, SimRollout], None] | None = None) -> SynthReport:
    """Render ``episodes`` clips of one hand into ``out_dir`` (``episode_000000.h5`` …) plus ``manifest.json``.

    Existing episode files are kept (the run resumes) unless ``overwrite``; temporary files a killed run left are
    removed. Unstable physics or a hand out of view skips the episode with a reason in the report; file-system
    errors stop the run with an ``OutputError`` (no partial file is left).
    A left/right pair (``"inspire_left+inspire_right"``) renders both hands in one scene: each with its own motion
    (:func:`plan_pair_episode`), or crossing in depth for the occlusion split (``config.occlusion``).
    """
    from tqdm.auto import tqdm

    embs = scene_hands(embodiment)
    name = "+".join(e.name for e in embs)
    cfg = config or SynthConfig()
    if int(episodes) != episodes or episodes < 0:
        raise ValueError(f"episodes must be a non-negative integer, got {episodes}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_atomic_leftovers(out_dir, ["episode_*.h5", "manifest.json"])  # temporaries of a killed earlier run
    emb = embs[0]
    axes = {e.name: hand_axes(e) for e in embs}
    wants_human = "human" in cfg.motions or (cfg.occlusion and len(embs) == 1)  # crossing pairs draw random fingers
    humans = {e.name: HumanMotionSource(e, cfg) for e in embs} if wants_human else {}
    visibility = cfg.visibility or cfg.occlusion
    report = SynthReport(written=[], skipped=[], existing=0, seconds=0.0, frames_rendered=0)
    t0 = time.perf_counter()
    scene: Scene | None = None
    renderer: FrameRenderer | None = None
    block = -1
    H, W = cfg.size
    bar = tqdm(range(int(episodes)), desc=f"synth {name}", unit="ep", disable=not progress)
    try:
        for i in bar:
            path = episode_path(out_dir, i)
            if path.exists() and not overwrite:
                report.existing += 1
                continue
            if i // cfg.episodes_per_scene != block:
                block = i // cfg.episodes_per_scene
                if renderer is not None:
                    renderer.close()
                scene_seed = int(np.random.SeedSequence([seed, block]).generate_state(1)[0])
                scene = build_scene(embs, cfg.scene, seed=scene_seed)
                renderer = FrameRenderer(scene.model, H, W, depth=cfg.depth or visibility,
                                         segmentation=cfg.segmentation or visibility)
            randomize_appearance(scene, np.random.default_rng([seed, i, 1]))
            if cfg.occlusion:
                ep, r, reason = _occlusion_episode(embs, axes, scene, renderer, np.random.default_rng([seed, i, 2]),
                                                   cfg, humans.get(emb.name), report)
            else:
                rng = np.random.default_rng([seed, i, 2])
                if len(embs) == 1:
                    ep = plan_episode(emb, axes[emb.name], scene, rng, cfg, humans.get(emb.name))
                else:
                    ep = plan_pair_episode(embs, axes, scene, rng, cfg, humans)
                if ep is None:
                    reason = f"the hands came closer than {cfg.min_hand_gap:g} m in all {cfg.pair_tries} plans"
                else:
                    r = _render(embs, ep, scene, renderer, cfg)
                    report.frames_rendered += len(r)
                    reason = _reject_reason(embs, r, cfg)
            if reason:
                report.skipped.append((i, reason))
                bar.set_postfix(skipped=len(report.skipped))
                continue
            if on_episode is not None:
                on_episode(i, r)
            if not cfg.depth:  # rendered for visibility only
                r.depth = None
            if not cfg.segmentation:
                r.segmentation = None
            meta = {"seed": int(seed), "episode": int(i), "scene_seed": int(scene.seed)}
            report.written.append(write_episode(path, r, ep, meta))
    finally:
        if renderer is not None:
            renderer.close()
        bar.close()
    report.seconds = time.perf_counter() - t0
    report.notes += [h.error for h in humans.values() if h.error]
    _write_manifest(out_dir, name, cfg, seed, episodes, report)
    return report


def _render(embs: tuple[Embodiment, ...], ep: Episode, scene: Scene, renderer: FrameRenderer,
            cfg: SynthConfig) -> SimRollout:
    if ep.camera is not None:
        scene.set_camera_pose("ego", ep.camera)
    hands = embs if len(embs) > 1 else embs[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JointLimitWarning)
        return rollout(hands, ep.q, ep.wrist_path, mode="physics" if cfg.physics else "kinematic", scene=scene,
                       fps=cfg.fps, renderer=renderer, max_qacc=cfg.max_qacc)


def _occlusion_episode(embs, axes, scene: Scene, renderer: FrameRenderer, rng: np.random.Generator,
                       cfg: SynthConfig, human, report: SynthReport) -> tuple[Episode, SimRollout, str | None]:
    """Plan and render until a clip has sustained occlusion (at most ``cfg.occlusion_tries`` plans)."""
    from .visibility import hidden_by, sustained_occlusion

    best = None
    for _ in range(cfg.occlusion_tries):
        ep = plan_occlusion_episode(embs, axes, scene, rng, cfg, human)
        r = _render(embs, ep, scene, renderer, cfg)
        report.frames_rendered += len(r)
        reason = _reject_reason(embs, r, cfg)
        if reason is None:
            hidden = hidden_by(r.occluded_by)
            if sustained_occlusion(hidden, cfg.occlusion_min_joints, cfg.occlusion_min_fraction):
                return ep, r, None
            frac = float((hidden.sum(-1) >= cfg.occlusion_min_joints).mean())
            if best is None or frac > best:
                best = frac
    why = "hand out of view or unstable in every plan" if best is None else \
        f"no sustained occlusion in {cfg.occlusion_tries} plans (best: {cfg.occlusion_min_joints}+ joints hidden " \
        f"in {best:.0%} of frames, need {cfg.occlusion_min_fraction:.0%})"
    return ep, r, why


def _reject_reason(embs: tuple[Embodiment, ...], r: SimRollout, cfg: SynthConfig) -> str | None:
    if not r.stable:
        return "; ".join(r.issues) or "physics became unstable"
    for emb in embs:
        visible = r.joints.valid[:, emb.slot_mask].mean()
        if visible < cfg.min_visible:
            who = "hand" if len(embs) == 1 else f"{emb.name}"
            return f"{who} out of view: only {visible:.0%} of its joints project into the image"
    return None


def _write_manifest(out_dir: Path, name: str, cfg: SynthConfig, seed: int, episodes: int,
                    report: SynthReport) -> None:
    def plain(x):
        if dataclasses.is_dataclass(x):
            return {k: plain(v) for k, v in dataclasses.asdict(x).items()}
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, tuple | list):
            return [plain(v) for v in x]
        return x

    manifest = {"embodiment": name, "seed": seed, "episodes": episodes, "config": plain(cfg),
                "written": [p.name for p in report.written], "existing": report.existing,
                "skipped": [{"episode": i, "reason": why} for i, why in report.skipped], "notes": report.notes,
                "mujoco": mujoco.__version__}
    with atomic_path(out_dir / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
