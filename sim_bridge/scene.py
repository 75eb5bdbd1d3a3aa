"""MuJoCo scenes of one registered hand, or a left/right pair, over a table with graspable objects, lights and an
egocentric camera.

Built with ``mujoco.MjSpec``: each hand's MJCF (``Embodiment.mjcf_xml``) is attached under a free-floating root
body with its own name prefix (``hand/`` for one hand, ``left/`` and ``right/`` for a pair), so two hands never
collide by name. Each 6-DoF wrist is **mocap-driven**: a mocap body ``<prefix>wrist_target`` is welded to the hand
root, so in physics the wrist follows its path compliantly (contacts can push back), while kinematic replay writes
the root's free joint directly. Hand bodies get gravity compensation (a real arm holds the hand up), so the weld
only has to track motion. Fingers are driven by position actuators. Mimic couplings are joint equality
constraints; any ``<mimic>`` of the URDF the MJCF lacks is added here. A hand collides with the table, the objects
and the other hand, never with itself.

World frame: z up, table top at z = 0, the person sits at −y and looks along +y.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import mujoco
import numpy as np

from embodiments import Embodiment, get
from embodiments.layout import SIDES
from embodiments.transforms import look_at

from .camera import camera_intrinsics, mujoco_cam_from_cv
from .hand_pose import join_names, split_names
from .hand_style import HAND_STYLES, apply_detailed, look_for

HAND_PREFIX = "hand/"  # names of a one-hand scene; a pair uses "left/" and "right/"
LABEL_BACKGROUND, LABEL_HAND, LABEL_OBJECT, LABEL_ENV = 0, 1, 2, 3
OBJECT_KINDS = ("box", "cylinder", "sphere")
_GEOM_TYPE = {"box": mujoco.mjtGeom.mjGEOM_BOX, "cylinder": mujoco.mjtGeom.mjGEOM_CYLINDER,
              "sphere": mujoco.mjtGeom.mjGEOM_SPHERE}


@dataclasses.dataclass
class SceneConfig:
    """What a scene contains and the ranges its seeded randomisation draws from (metres, radians, degrees)."""

    # table: half extents and top at z = 0
    table_half_size: tuple[float, float, float] = (0.45, 0.35, 0.02)
    table_center_xy: tuple[float, float] = (0.0, 0.12)
    table_textures: tuple[str, ...] = ("flat", "checker", "gradient")
    # objects
    num_objects: tuple[int, int] = (1, 3)  # inclusive range
    object_kinds: tuple[str, ...] = OBJECT_KINDS
    object_half_size: tuple[float, float] = (0.018, 0.035)
    object_region: tuple[tuple[float, float], tuple[float, float]] = ((-0.15, 0.15), (0.05, 0.25))  # x, y ranges
    object_density: float = 400.0  # kg/m³, light wood / plastic
    object_textures: tuple[str, ...] = ("flat", "checker")
    friction: float = 1.0
    # egocentric head camera (OpenCV look-at, then jitter)
    camera_eye: tuple[float, float, float] = (0.0, -0.12, 0.36)
    camera_target: tuple[float, float, float] = (0.0, 0.14, 0.0)
    camera_eye_jitter: float = 0.03
    camera_target_jitter: float = 0.03
    fovy_deg: tuple[float, float] = (55.0, 70.0)
    # lights
    num_lights: tuple[int, int] = (1, 3)
    light_diffuse: tuple[float, float] = (0.35, 0.8)
    ambient: tuple[float, float] = (0.15, 0.4)
    # hand actuation: position servos sized for finger links of tens of grams (see README of the module)
    kp: float = 0.5  # N·m/rad
    damping: float = 0.015  # N·m·s/rad, ≈ critical for kp with the armature below
    armature: float = 1e-4  # kg·m², reflected rotor inertia of a small geared motor
    force_limit: float = 1.5  # N·m, used when the model gives none
    weld_solref: tuple[float, float] = (0.01, 1.0)
    timestep: float = 0.002  # upper bound; rollout picks the largest step ≤ this that divides a frame
    randomize: bool = True  # False: every appearance at its nominal (middle) value, no jitter
    max_render_size: int = 1024  # offscreen buffer side
    # Rendering cost on CPU (llvmpipe) at 128²: a frame without shadows ~1.5 ms CPU, a 512² shadow map +4 ms,
    # 1024² +7 ms, MuJoCo's default 4096² far more; MSAA 4× about triples the cost; reflections +2 ms (off).
    shadow_size: int = 512  # 0 disables shadows
    msaa_samples: int = 0
    # "simple": the URDF's primitives; "detailed": per-link geometry and the real hands' colours
    # (sim_bridge.hand_style; the shipped tiny-sim model's data); "auto": detailed where the hand has a look
    hand_style: str = "simple"

    def __post_init__(self) -> None:
        if self.hand_style not in HAND_STYLES:
            raise ValueError(f"SceneConfig.hand_style must be one of {HAND_STYLES}, got {self.hand_style!r}")
        bad = [k for k in self.object_kinds if k not in OBJECT_KINDS]
        if bad:
            raise ValueError(f"SceneConfig.object_kinds: unknown kinds {bad}; choose from {OBJECT_KINDS}")
        for name in ("num_objects", "object_half_size", "fovy_deg", "num_lights", "light_diffuse", "ambient"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"SceneConfig.{name} must be a (low, high) range with low <= high, got {(lo, hi)}")
        if self.num_objects[0] < 0 or self.num_lights[0] < 0:
            raise ValueError("SceneConfig.num_objects and num_lights must be non-negative")


@dataclasses.dataclass
class SceneHand:
    """One hand of a scene and its indices into the compiled model; every name of it starts with ``prefix``."""

    embodiment: Embodiment
    prefix: str
    root_body: int
    free_qadr: int  # 7 qpos entries (pos, quat wxyz) of the hand root's free joint
    qadr: np.ndarray  # (dof,) qpos address of each actuated joint, in embodiment.joint_names order
    actuators: np.ndarray  # (dof,) actuator id driving each actuated joint
    mocap_id: int  # row of data.mocap_pos / mocap_quat of its wrist target

    @property
    def name(self) -> str:
        return self.embodiment.name


@dataclasses.dataclass
class Scene:
    """A compiled scene and the indices rollouts need. Arrays index the compiled ``model``.

    ``hands`` holds one hand, or two ordered left then right. The one-hand shortcuts (``embodiment``,
    ``hand_qadr``, ``hand_free_qadr``) read the only hand and refuse a pair; ``hand(name or side)`` works for both.
    Mimic couplings and geom labels cover every hand.
    """

    config: SceneConfig
    seed: int
    spec: mujoco.MjSpec
    model: mujoco.MjModel
    hands: tuple[SceneHand, ...]
    mimic_qadr: np.ndarray  # (M,) qpos address of each coupled joint
    mimic_src_qadr: np.ndarray  # (M,) qpos address of the joint it follows
    mimic_poly: np.ndarray  # (M, 2) offset, multiplier: q_mimic = offset + multiplier · q_src
    object_names: list[str]
    object_bodies: np.ndarray  # (K,)
    object_free_qadr: np.ndarray  # (K,)
    geom_labels: np.ndarray  # (ngeom,) LABEL_* per geom
    geom_hand: np.ndarray  # (ngeom,) index into ``hands`` of each hand geom, -1 for the rest
    cameras: list[str]

    # ---- hands
    @property
    def name(self) -> str:
        """``"dex3_right"``, or ``"dex3_left+dex3_right"`` for a pair (the ``SparseJoints.embodiment`` form)."""
        return join_names([h.name for h in self.hands])

    def hand(self, key: str | Embodiment | None = None) -> SceneHand:
        """The hand named ``key`` (embodiment name or side); ``None`` for the only hand of a one-hand scene."""
        if key is None:
            if len(self.hands) != 1:
                raise ValueError(f"this scene has {len(self.hands)} hands ({self.name}); name one, e.g. "
                                 f"scene.hand('left') or scene.hand({self.hands[0].name!r})")
            return self.hands[0]
        name = key.name if isinstance(key, Embodiment) else key
        for h in self.hands:
            if name in (h.name, h.embodiment.side):
                return h
        raise ValueError(f"no hand {name!r} in this scene; its hands are "
                         f"{', '.join(f'{h.name} ({h.embodiment.side})' for h in self.hands)}")

    @property
    def embodiment(self) -> Embodiment:
        return self.hand().embodiment

    @property
    def hand_free_qadr(self) -> int:
        return self.hand().free_qadr

    @property
    def hand_qadr(self) -> np.ndarray:
        return self.hand().qadr

    def camera_id(self, name: str) -> int:
        if name not in self.cameras:
            raise ValueError(f"unknown camera {name!r}; this scene has {', '.join(self.cameras)}")
        return mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, name)

    def intrinsics(self, camera: str, size: tuple[int, int]) -> np.ndarray:
        """K (3, 3) of ``camera`` rendered at ``size = (H, W)``."""
        return camera_intrinsics(self.model, self.camera_id(camera), *size)

    def set_camera_pose(self, camera: str, T_world_cam: np.ndarray) -> None:
        """Move a (world-fixed) camera to an OpenCV world-from-camera pose (4, 4)."""
        cid = self.camera_id(camera)
        if self.model.cam_bodyid[cid] != 0:
            raise ValueError(f"camera {camera!r} is attached to a moving body; it cannot be placed in the world")
        self.model.cam_pos[cid], self.model.cam_quat[cid] = mujoco_cam_from_cv(T_world_cam)

    def body_id(self, frame: str, hand: str | Embodiment | None = None) -> int:
        """Id of the body named after a hand-model frame (prefixed in the scene); -1 when the MJCF lacks it.

        ``hand`` (name or side) picks the hand of a pair; a one-hand scene needs none.
        """
        return mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, self.hand(hand).prefix + frame)

    def apply_mimic(self, qpos: np.ndarray) -> None:
        """Set coupled joints from the joints they follow, in place on qpos (..., nq); resolves chains."""
        for _ in range(max(1, len(self.mimic_qadr))):
            new = self.mimic_poly[:, 0] + self.mimic_poly[:, 1] * qpos[..., self.mimic_src_qadr]
            if np.allclose(qpos[..., self.mimic_qadr], new):
                break
            qpos[..., self.mimic_qadr] = new


# --------------------------------------------------------------------------- construction
def _urdf_mimics(urdf_xml: str) -> list[tuple[str, str, float, float]]:
    """(joint, followed joint, multiplier, offset) for every ``<mimic>`` of a URDF."""
    out = []
    for joint in ET.fromstring(urdf_xml).iter("joint"):
        m = joint.find("mimic")
        if m is not None:
            out.append((joint.get("name"), m.get("joint"), float(m.get("multiplier", 1.0)),
                        float(m.get("offset", 0.0))))
    return out


def _hand_spec(emb: Embodiment) -> mujoco.MjSpec:
    hand_spec = getattr(emb, "spec", None)
    spec_file = getattr(hand_spec, "mjcf", None)
    if getattr(hand_spec, "mjcf_joints", None):  # a renamed third-party model: its text has absolute asset folders
        spec_file = None
    try:
        # From the file when there is one, so relative mesh paths resolve.
        hand = mujoco.MjSpec.from_file(str(spec_file)) if spec_file else mujoco.MjSpec.from_string(emb.mjcf_xml)
    except ValueError as e:
        raise ValueError(f"{emb.name}: its MJCF does not load in MuJoCo: {e}") from None
    bodies = [b for b in hand.worldbody.bodies]
    if len(bodies) != 1:
        raise ValueError(f"{emb.name}: the hand MJCF must have exactly one top-level body (the hand root), "
                         f"found {[b.name for b in bodies]}")
    for j in list(bodies[0].joints):  # the scene adds its own floating base
        if j.type == mujoco.mjtJoint.mjJNT_FREE:
            hand.delete(j)
    for g in list(hand.worldbody.geoms) + list(hand.worldbody.lights):  # floors/lights of a standalone model
        hand.delete(g)
    return hand


def _uniform(rng: np.random.Generator, lo_hi, randomize: bool):
    lo, hi = lo_hi
    return rng.uniform(lo, hi) if randomize else 0.5 * (lo + hi)


def _material(spec: mujoco.MjSpec, name: str, rng: np.random.Generator, kinds, randomize: bool,
              base_rgb: np.ndarray | None = None, repeat: float = 4.0) -> str:
    """A material with a random flat/checker/gradient texture; returns its name."""
    rgb1 = rng.uniform(0.1, 0.95, 3) if base_rgb is None else base_rgb
    rgb2 = np.clip(rgb1 * rng.uniform(0.4, 0.8) + rng.uniform(0, 0.2, 3), 0, 1)
    kind = kinds[rng.integers(len(kinds))] if randomize else kinds[0]
    builtin = {"flat": mujoco.mjtBuiltin.mjBUILTIN_FLAT, "checker": mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
               "gradient": mujoco.mjtBuiltin.mjBUILTIN_GRADIENT}[kind]
    spec.add_texture(name=name, type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=builtin, width=64, height=64,
                     rgb1=rgb1, rgb2=rgb2)
    mat = spec.add_material(name=name, texrepeat=[repeat, repeat], reflectance=0.0)
    mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = name
    return name


HandsLike = str | Embodiment | Sequence[str | Embodiment]


def scene_hands(embodiment: HandsLike) -> tuple[Embodiment, ...]:
    """The hands a scene holds, left before right: one hand (name or :class:`Embodiment`), or a pair of one
    left and one right hand as a sequence ``("dex3_left", "dex3_right")`` (either order) or ``"dex3_left+dex3_right"``.
    """
    if isinstance(embodiment, str) and "+" in embodiment:
        embodiment = split_names(embodiment)
    if isinstance(embodiment, (str, Embodiment)):
        return (get(embodiment),)
    form = "a hand name, an Embodiment, or a (left, right) pair such as ('dex3_left', 'dex3_right')"
    if not isinstance(embodiment, Sequence) or not 1 <= len(embodiment) <= 2:
        raise ValueError(f"embodiment must be {form}; got {embodiment!r}")
    embs = tuple(get(e) for e in embodiment)
    sides = sorted(e.side for e in embs)
    if len(embs) == 2 and sides != list(SIDES):
        raise ValueError(f"embodiment: a pair must be one left-hand and one right-hand embodiment, e.g. "
                         f"('dex3_left', 'dex3_right'); got {tuple(e.name for e in embs)} (sides {sides})")
    return tuple(sorted(embs, key=lambda e: SIDES.index(e.side)))


def hand_prefix(side: str, num_hands: int) -> str:
    """Name prefix of a hand's bodies, joints, actuators and wrist target: ``hand/`` alone, ``<side>/`` in a pair."""
    return HAND_PREFIX if num_hands == 1 else f"{side}/"


def build_scene(embodiment: HandsLike, config: SceneConfig | None = None, seed: int = 0) -> Scene:
    """Compile a scene for a registered hand or a left/right pair (see :func:`scene_hands`); the same
    (embodiment, config, seed) gives the same scene.

    The seed picks the structure (textures, object kinds and sizes, number of lights), then
    :func:`randomize_appearance` draws the continuous appearance on the compiled model.
    """
    embs = scene_hands(embodiment)
    name = join_names([e.name for e in embs])
    cfg = config or SceneConfig()
    rng = np.random.default_rng(seed)
    R = cfg.randomize

    spec = mujoco.MjSpec()
    spec.modelname = f"dexworld_{name}"
    spec.option.timestep = cfg.timestep
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.noslip_iterations = 2  # firmer grasps at a small cost
    spec.visual.global_.offwidth = cfg.max_render_size
    spec.visual.global_.offheight = cfg.max_render_size
    spec.visual.quality.shadowsize = cfg.shadow_size
    spec.visual.quality.offsamples = cfg.msaa_samples
    spec.visual.headlight.diffuse = [0.25] * 3
    spec.visual.headlight.specular = [0.05] * 3
    sky1 = rng.uniform(0.3, 0.9, 3) if R else np.array([0.6, 0.65, 0.7])
    spec.add_texture(name="sky", type=mujoco.mjtTexture.mjTEXTURE_SKYBOX, builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
                     rgb1=sky1, rgb2=sky1 * 0.3, width=64, height=64)
    world = spec.worldbody

    # ---- table and floor
    hx, hy, hz = cfg.table_half_size
    table_rgb = rng.uniform(0.25, 0.85, 3) if R else np.array([0.55, 0.45, 0.35])
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX, size=[hx, hy, hz],
                   pos=[*cfg.table_center_xy, -hz], contype=1, conaffinity=3, friction=[cfg.friction, 0.005, 1e-4],
                   material=_material(spec, "table", rng, cfg.table_textures, R, table_rgb, repeat=3.0))
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1], pos=[0, 0, -0.75],
                   material=_material(spec, "floor", rng, ("checker", "flat"), R, repeat=8.0))

    # ---- lights (placed by randomize_appearance)
    n_lights = int(rng.integers(cfg.num_lights[0], cfg.num_lights[1] + 1)) if R else cfg.num_lights[0]
    for i in range(n_lights):
        world.add_light(name=f"light{i}", pos=[0, -0.2, 1.0], dir=[0, 0, -1], specular=[0.1] * 3,
                        castshadow=i == 0 and cfg.shadow_size > 0)

    # ---- cameras: egocentric head camera (placed by randomize_appearance) + a third-person view
    for name, T in (("ego", look_at(cfg.camera_eye, cfg.camera_target)),
                    ("third", look_at([0.55, -0.35, 0.45], [0.0, 0.12, 0.05]))):
        pos, quat = mujoco_cam_from_cv(T)
        world.add_camera(name=name, pos=pos, quat=quat, fovy=float(np.mean(cfg.fovy_deg)) if name == "ego" else 55.0)

    # ---- objects (kinds and sizes here; resting places drawn by randomize_appearance)
    n_obj = int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1)) if R else cfg.num_objects[0]
    object_names = []
    for i in range(n_obj):
        kinds = cfg.object_kinds
        kind = kinds[rng.integers(len(kinds))] if R else kinds[i % len(kinds)]
        h = _uniform(rng, cfg.object_half_size, R)
        if kind == "box":
            size = np.array([h, h * rng.uniform(0.6, 1.4), h * rng.uniform(0.7, 1.3)]) if R else np.full(3, h)
        elif kind == "cylinder":
            size = np.array([h * 0.8, h * (rng.uniform(0.9, 1.8) if R else 1.2), 0.0])
        else:
            size = np.array([h, 0.0, 0.0])
        name = f"object{i}_{kind}"
        body = world.add_body(name=name)
        body.add_freejoint(name=f"{name}_free")
        rgb = rng.uniform(0.05, 1.0, 3) if R else np.array([0.8, 0.2, 0.15])
        body.add_geom(name=f"{name}_geom", type=_GEOM_TYPE[kind], size=size, density=cfg.object_density,
                      contype=1, conaffinity=3, condim=4, friction=[cfg.friction, 0.01, 1e-4],
                      material=_material(spec, f"{name}_mat", rng, cfg.object_textures, R, rgb, repeat=1.0))
        object_names.append(name)

    # ---- each hand under a floating root, welded to its mocap wrist target. Collision bits: the table and
    # objects are bit 0; hand i is bit i + 1 and accepts bit 0 and the other hands' bits (not its own).
    hand_bits = [2 << i for i in range(len(embs))]
    roots = []
    for i, emb in enumerate(embs):
        prefix = hand_prefix(emb.side, len(embs))
        hand = _hand_spec(emb)
        if cfg.hand_style == "detailed" or (cfg.hand_style == "auto" and look_for(emb.name, emb.side) is not None):
            apply_detailed(hand, emb.name, emb.side)
        root = world.add_frame().attach_body(hand.worldbody.first_body(), prefix, "")
        root.add_freejoint(name=prefix + "root_free")
        _configure_hand(spec, root, emb, cfg, prefix, hand_bits[i], 1 | (sum(hand_bits) - hand_bits[i]))
        mocap = world.add_body(name=prefix + "wrist_target", mocap=True)
        mocap.add_site(name=prefix + "wrist_target_site", size=[0.005, 0, 0], rgba=[0, 0, 0, 0])
        weld = spec.add_equality(type=mujoco.mjtEq.mjEQ_WELD, name=prefix + "wrist_weld", name1=mocap.name,
                                 name2=root.name, objtype=mujoco.mjtObj.mjOBJ_BODY)
        weld.data = np.r_[np.zeros(3), np.zeros(3), [1.0, 0, 0, 0], 1.0, 0.0]
        weld.solref = list(cfg.weld_solref)
        roots.append((emb, prefix, root.name, mocap.name))

    try:
        model = spec.compile()
    except ValueError as e:
        raise ValueError(f"{name}: the scene does not compile: {e}") from None
    scene = _index(cfg, seed, spec, model, roots, object_names)
    randomize_appearance(scene, rng)
    return scene


def randomize_appearance(scene: Scene, rng: np.random.Generator) -> None:
    """Draw the continuous appearance on the compiled model, in place: camera pose and fovy, lights, ambient,
    colour tints of the table/floor/objects and the objects' resting places (``qpos0``).

    Needs no recompilation (and no new renderer), so synthesis can reuse one scene for several episodes; every
    field it touches is overwritten, so the result depends only on ``rng``. ``config.randomize=False`` gives the
    nominal values.
    """
    cfg, m = scene.config, scene.model
    R = cfg.randomize
    # camera
    eye = np.asarray(cfg.camera_eye) + (rng.normal(0, cfg.camera_eye_jitter, 3) if R else 0)
    target = np.asarray(cfg.camera_target) + (rng.normal(0, cfg.camera_target_jitter, 3) if R else 0)
    cid = scene.camera_id("ego")
    m.cam_pos[cid], m.cam_quat[cid] = mujoco_cam_from_cv(look_at(eye, target))
    m.cam_fovy[cid] = _uniform(rng, cfg.fovy_deg, R)
    # lights
    m.vis.headlight.ambient[:] = _uniform(rng, cfg.ambient, R)
    center = np.array([*cfg.table_center_xy, 0.0])
    for i in range(m.nlight):
        pos = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.5, 0.6), rng.uniform(0.6, 1.4)]) if R \
            else np.array([0.0, -0.2, 1.0])
        m.light_pos[i] = pos
        m.light_dir[i] = (center - pos) / np.linalg.norm(center - pos)
        m.light_diffuse[i] = _uniform(rng, cfg.light_diffuse, R)
    # colour tints over the textures (mat_rgba multiplies the texture colour)
    for i in range(m.nmat):
        m.mat_rgba[i, :3] = rng.uniform(0.6, 1.0, 3) if R else 1.0
    # objects: rejection-sample free resting spots on the table, random yaw
    placed: list[tuple[np.ndarray, float]] = []
    (x0, x1), (y0, y1) = cfg.object_region
    n = len(scene.object_bodies)
    for i, (b, adr) in enumerate(zip(scene.object_bodies, scene.object_free_qadr, strict=True)):
        g = m.body_geomadr[b]
        size, gtype = m.geom_size[g], m.geom_type[g]
        half_h = size[2] if gtype == mujoco.mjtGeom.mjGEOM_BOX else size[1] if gtype == mujoco.mjtGeom.mjGEOM_CYLINDER \
            else size[0]
        radius = float(np.linalg.norm(size[:2])) if gtype == mujoco.mjtGeom.mjGEOM_BOX else float(size[0])
        for _ in range(50):
            xy = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)]) if R \
                else np.array([(x0 + x1) / 2 + 0.09 * (i - (n - 1) / 2), (y0 + y1) / 2])
            if all(np.linalg.norm(xy - p) > radius + r + 0.01 for p, r in placed):
                break
        placed.append((xy, radius))
        yaw = rng.uniform(-np.pi, np.pi) if R else 0.0
        m.qpos0[adr:adr + 7] = [xy[0], xy[1], half_h + 1e-4, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        m.body_pos[b] = m.qpos0[adr:adr + 3]
        m.body_quat[b] = m.qpos0[adr + 3:adr + 7]


def _configure_hand(spec: mujoco.MjSpec, root, emb: Embodiment, cfg: SceneConfig, prefix: str, contype: int,
                    conaffinity: int) -> None:
    """Gravity compensation, collision filtering, joint dynamics, mimic equalities and position actuators."""
    bodies = [root] + list(root.find_all(mujoco.mjtObj.mjOBJ_BODY))
    for b in bodies:
        b.gravcomp = 1.0
    for g in root.find_all(mujoco.mjtObj.mjOBJ_GEOM):
        if g.contype or g.conaffinity:  # collide with table/objects and other hands, not with its own fingers
            g.contype, g.conaffinity = contype, conaffinity
            g.friction = [cfg.friction, 0.01, 1e-4]
    joints = {j.name: j for j in root.find_all(mujoco.mjtObj.mjOBJ_JOINT)
              if j.type in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)}
    missing = [n for n in emb.joint_names if prefix + n not in joints]
    if missing:
        raise ValueError(f"{emb.name}: the MJCF lacks the actuated joints {missing} (names must match the URDF)")
    for j in joints.values():
        j.armature = max(j.armature, cfg.armature)
        j.damping[0] = max(j.damping[0], cfg.damping)  # [linear, polynomial terms]
    # Mimic couplings: keep those the MJCF has, add the URDF's missing ones.
    coupled = {e.name1 for e in spec.equalities if e.type == mujoco.mjtEq.mjEQ_JOINT}
    for jname, src, mult, off in _urdf_mimics(emb.urdf_xml):
        if prefix + jname not in coupled and prefix + jname in joints:
            eq = spec.add_equality(type=mujoco.mjtEq.mjEQ_JOINT, name1=prefix + jname, name2=prefix + src)
            data = np.zeros(len(eq.data))  # polycoef q1 = off + mult q2, then the rest (11 or 12 values by version)
            data[:2] = off, mult
            eq.data = data
    # Position actuators on the actuated joints (existing ones that target them are replaced, so gains agree).
    for act in list(spec.actuators):
        if act.target in {prefix + n for n in emb.joint_names}:
            spec.delete(act)
    for n, lo, hi in zip(emb.joint_names, emb.lower, emb.upper, strict=True):
        j = joints[prefix + n]
        flim = j.actfrcrange[1] if j.actfrclimited != mujoco.mjtLimited.mjLIMITED_FALSE and j.actfrcrange[1] > 0 \
            else cfg.force_limit
        act = spec.add_actuator(name=prefix + n + "_pos", target=prefix + n, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=cfg.kp)
        act.ctrllimited, act.ctrlrange = mujoco.mjtLimited.mjLIMITED_TRUE, [lo, hi]
        act.forcelimited, act.forcerange = mujoco.mjtLimited.mjLIMITED_TRUE, [-flim, flim]


def _index(cfg, seed, spec, model, roots, object_names) -> Scene:
    """Look the compiled model's indices up; ``roots`` is (embodiment, prefix, root body, mocap body) per hand."""
    obj = mujoco.mjtObj

    def ids(kind, names) -> np.ndarray:
        return np.array([mujoco.mj_name2id(model, kind, n) for n in names], dtype=int)

    hands = []
    for emb, prefix, root_name, mocap_name in roots:
        jids = ids(obj.mjOBJ_JOINT, [prefix + n for n in emb.joint_names])
        hands.append(SceneHand(
            embodiment=emb, prefix=prefix, root_body=mujoco.mj_name2id(model, obj.mjOBJ_BODY, root_name),
            free_qadr=int(model.jnt_qposadr[mujoco.mj_name2id(model, obj.mjOBJ_JOINT, prefix + "root_free")]),
            qadr=model.jnt_qposadr[jids].astype(int),
            actuators=ids(obj.mjOBJ_ACTUATOR, [prefix + n + "_pos" for n in emb.joint_names]),
            mocap_id=int(model.body_mocapid[mujoco.mj_name2id(model, obj.mjOBJ_BODY, mocap_name)])))
    mq, ms, mp = [], [], []
    for e in range(model.neq):
        if model.eq_type[e] == mujoco.mjtEq.mjEQ_JOINT and model.eq_obj2id[e] >= 0:
            if np.any(model.eq_data[e, 2:5] != 0):
                raise ValueError(f"joint {model.joint(model.eq_obj1id[e]).name}: non-linear joint coupling "
                                 "(polycoef beyond degree 1) is not supported")
            mq.append(model.jnt_qposadr[model.eq_obj1id[e]])
            ms.append(model.jnt_qposadr[model.eq_obj2id[e]])
            mp.append(model.eq_data[e, :2])
    bodies = ids(obj.mjOBJ_BODY, object_names)
    # Label every geom: hand subtrees (and which hand), objects, the rest (table/floor).
    geom_root = np.array(model.body_rootid)[model.geom_bodyid]
    geom_hand = np.full(model.ngeom, -1, dtype=np.int8)
    for i, h in enumerate(hands):
        geom_hand[geom_root == model.body_rootid[h.root_body]] = i
    labels = np.full(model.ngeom, LABEL_ENV, dtype=np.int8)
    labels[geom_hand >= 0] = LABEL_HAND
    labels[np.isin(model.geom_bodyid, bodies)] = LABEL_OBJECT
    return Scene(
        config=cfg, seed=seed, spec=spec, model=model, hands=tuple(hands), mimic_qadr=np.array(mq, dtype=int),
        mimic_src_qadr=np.array(ms, dtype=int), mimic_poly=np.array(mp, dtype=np.float64).reshape(-1, 2),
        object_names=list(object_names), object_bodies=bodies,
        object_free_qadr=np.array([model.jnt_qposadr[model.body_jntadr[b]] for b in bodies], dtype=int),
        geom_labels=labels, geom_hand=geom_hand, cameras=[model.camera(i).name for i in range(model.ncam)],
    )
