"""What the editor's Generate and Simulate buttons run, without any UI.

* :class:`VideoGenerator`: loads the hand-controlled video model once (a checkpoint, the shipped tiny model, or —
  with neither — a freshly initialised ``tiny`` preset, flagged as untrained) and samples a video from the
  reference image and the edited joints, reporting progress per denoising step.
* :func:`simulate`: retargets the edited hand to a robot hand, recovers the hand's pose in the camera, and rolls it
  out in a MuJoCo scene whose head camera has the reference camera's field of view.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from embodiments.layout import SIDES, hand_slots
from embodiments.sparse import SparseJoints

from .state import largest_4k1

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_ENV = "DEXWORLD_TINY_CHECKPOINT"
# Where a shipped tiny checkpoint may live (searched in order; the first folder with dexworld_checkpoint.json wins).
SHIPPED_DIRS = ("worldmodel/weights", "worldmodel/assets", "assets", "models", "checkpoints")
ROBOTS = ("inspire_right", "inspire_left", "dex3_right", "dex3_left")
SIM_MODES = ("kinematic", "physics")

Progress = Callable[[int, int], None]


def find_shipped_checkpoint(root: str | os.PathLike = REPO_ROOT) -> Path | None:
    """The shipped tiny checkpoint: ``$DEXWORLD_TINY_CHECKPOINT`` if set, else the first dexworld checkpoint found
    (at most two levels deep) under the repository's model folders; None when there is none."""
    env = os.environ.get(SHIPPED_ENV)
    if env:
        p = Path(env).expanduser()
        if not (p / "dexworld_checkpoint.json").exists():
            raise FileNotFoundError(f"${SHIPPED_ENV}={env} is not a dexworld checkpoint (no dexworld_checkpoint.json)")
        return p
    root = Path(root)
    for d in SHIPPED_DIRS:
        base = root / d
        if not base.is_dir():
            continue
        hits = sorted(base.glob("dexworld_checkpoint.json")) + sorted(base.glob("*/dexworld_checkpoint.json")) + \
            sorted(base.glob("*/*/dexworld_checkpoint.json"))
        if hits:
            return hits[0].parent
    return None


@dataclasses.dataclass
class GenerateSettings:
    """Sampling settings; None means the model's own default."""

    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    prompt: str = ""
    max_frames: int = 33

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")


class VideoGenerator:
    """Lazily loaded ``HandControlPipeline`` plus what the UI should say about it.

    Args:
        checkpoint: a checkpoint folder written by ``dexworld train``; None → the shipped tiny model, or a fresh
            ``tiny`` preset model (random weights) when none is shipped.
        tiny_overrides: TinyConfig fields for the fresh model (tests use smaller sizes).
        use_shipped: with no ``checkpoint``, look for the shipped tiny model (False: always the fresh one).
    """

    def __init__(self, checkpoint: str | os.PathLike | None = None, tiny_overrides: dict | None = None,
                 use_shipped: bool = True):
        if checkpoint is not None:
            self.checkpoint: Path | None = Path(checkpoint)
        else:
            self.checkpoint = find_shipped_checkpoint() if use_shipped else None
        if self.checkpoint is not None and not (self.checkpoint / "dexworld_checkpoint.json").exists():
            raise FileNotFoundError(f"{self.checkpoint} is not a dexworld checkpoint (no dexworld_checkpoint.json)")
        self.tiny_overrides = dict(tiny_overrides or {})
        self._pipe = None
        self._lock = threading.Lock()

    @property
    def untrained(self) -> bool:
        return self.checkpoint is None

    def describe(self) -> str:
        if self.checkpoint is None:
            return ("a freshly initialised 'tiny' model with random weights (no checkpoint given and none shipped); "
                    "its videos show noise, not your edit. Pass --checkpoint DIR for a trained model.")
        return f"checkpoint {self.checkpoint}"

    def pipeline(self):
        with self._lock:
            if self._pipe is None:
                self._pipe = self._load()
            return self._pipe

    def _load(self):
        if self.checkpoint is not None:
            from worldmodel.training import load_for_inference

            pipe = load_for_inference(self.checkpoint)
        else:
            import torch

            from worldmodel.control import HandControlModule
            from worldmodel.pipeline import HandControlPipeline
            from worldmodel.presets import build_tiny

            components = build_tiny(**self.tiny_overrides)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                control = HandControlModule(latent_channels=components.vae.config.z_dim).eval()
            pipe = HandControlPipeline.from_components(components, control)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def frames_for(self, joints: SparseJoints, settings: GenerateSettings) -> int:
        """How many joint frames a video uses: the most of the form 4k+1 within ``max_frames``."""
        return largest_4k1(min(len(joints), settings.max_frames))

    def __call__(self, image: np.ndarray, joints: SparseJoints, settings: GenerateSettings | None = None,
                 progress: Progress | None = None) -> np.ndarray:
        """Video (T, H, W, 3) uint8 of the first :meth:`frames_for` frames of ``joints`` from ``image``."""
        from worldmodel.video import to_uint8

        settings = settings or GenerateSettings()
        pipe = self.pipeline()
        n = self.frames_for(joints, settings)
        steps = settings.steps or pipe.defaults.num_inference_steps
        with self._lock:  # one sampling at a time; the progress hook below is per call
            if progress is not None:
                # HandControlPipeline has no per-step callback; it iterates ``self.progress_bar(timesteps)``, so an
                # instance attribute wrapping that iterable reports each step.
                def bar(iterable=None, total=None):
                    items = list(iterable)
                    for i, item in enumerate(items):
                        yield item
                        progress(i + 1, len(items))

                pipe.progress_bar = bar
            try:
                out = pipe(image, joints[:n], prompt=settings.prompt, num_inference_steps=steps,
                           guidance_scale=settings.guidance, seed=settings.seed, progress=progress is not None)
            finally:
                pipe.__dict__.pop("progress_bar", None)
        return to_uint8(out.frames)


# ---------------------------------------------------------------------------------------------- simulation
@dataclasses.dataclass
class SimResult:
    frames: np.ndarray  # (T, H, W, 3) uint8
    joints: SparseJoints  # the robot's joints as rolled out, in the (simulated) camera frame
    robot: str
    source: str
    fit_rms: float  # metres: how far the rigidly placed robot keypoints are from the edited joints (max over frames)
    issues: list[str]


def _registered() -> list[str]:
    import embodiments

    return embodiments.names()


def simulation_pair(joints: SparseJoints, robot: str | None = None) -> tuple[str, str]:
    """(source, target) hands for simulating ``joints``.

    The target is ``robot``, else the joints' own robot hand, else Inspire on the side with the most valid joints.
    The source is the joints' own hand on the target's side if it is a registered hand, else the human hand.
    """
    names = _registered()
    own = [h for h in joints.embodiment.split("+") if h in names]
    if robot is None:
        robots = [h for h in own if not h.startswith("mano_")]
        if robots:
            robot = robots[0]
        else:
            counts = {s: joints.valid[:, hand_slots(s).start:hand_slots(s).stop].sum() for s in SIDES}
            robot = f"inspire_{max(counts, key=counts.get)}"
    if robot not in names or robot.startswith("mano_"):
        raise ValueError(f"simulate needs a robot hand; choose one of "
                         f"{', '.join(n for n in names if not n.startswith('mano_'))}, got {robot!r}")
    side = "left" if robot.endswith("_left") else "right"
    s = hand_slots(side)
    if not joints.valid[:, s.start:s.stop].any():
        raise ValueError(f"{robot} is a {side} hand but the joints have no valid {side}-hand joints; pick a robot "
                         f"for the other side")
    same_side = [h for h in own if h.endswith(f"_{side}")]
    source = same_side[0] if same_side else f"mano_{side}"
    return source, robot


def simulate(joints: SparseJoints, image_size: tuple[int, int], robot: str | None = None, mode: str = "kinematic",
             height: int = 192, seed: int = 0) -> SimResult:
    """Retarget ``joints`` (camera frame, with K) to ``robot`` and roll it out in MuJoCo.

    The robot's root pose per frame is the rigid fit of its forward kinematics to the edited joints in the camera;
    the scene's head camera gets the reference camera's vertical field of view (from K and ``image_size`` (H, W))
    and the hand is placed relative to it as in the reference camera. Rendered at ``height`` rows, same aspect.
    """
    import mujoco

    from retarget import Retargeter
    from sim_bridge.camera import cv_from_mujoco_cam
    from sim_bridge.hand_pose import fit_root_pose
    from sim_bridge.rollout import rollout
    from sim_bridge.scene import SceneConfig, build_scene

    if mode not in SIM_MODES:
        raise ValueError(f"simulation mode must be one of {SIM_MODES}, got {mode!r}")
    source, robot = simulation_pair(joints, robot)
    q = Retargeter(source, robot).retarget(joints)
    T_cam_root, rms = fit_root_pose(robot, q, joints)
    H0, W0 = image_size
    fy = joints.frame_K()[0, 1, 1]
    fovy = float(np.degrees(2 * np.arctan(H0 / (2 * fy))))
    scene = build_scene(robot, SceneConfig(randomize=False, fovy_deg=(fovy, fovy)), seed=seed)
    data = mujoco.MjData(scene.model)
    mujoco.mj_forward(scene.model, data)
    cam = scene.camera_id("ego")
    T_world_cam = cv_from_mujoco_cam(data.cam_xpos[cam], data.cam_xmat[cam])
    H = int(height)
    W = max(2, int(round(H * W0 / H0 / 2)) * 2)
    roll = rollout(robot, q, T_world_cam @ T_cam_root, camera="ego", mode=mode, size=(H, W), scene=scene,
                   fps=joints.fps)
    return SimResult(frames=roll.frames, joints=roll.joints, robot=robot, source=source, fit_rms=float(np.max(rms)),
                     issues=list(roll.issues))
