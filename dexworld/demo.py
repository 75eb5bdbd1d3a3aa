"""The main job: a human motion, retargeted to a robot hand, simulated in MuJoCo and imagined by the world model.

    human motion → retarget → MuJoCo physics rollout → reference frame + SparseJoints → imagined rollout
    → side-by-side video, metrics against the simulation (and against the model with control off), LeRobot export.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import embodiments
import retarget
import sim_bridge
from dexworld.checkpoints import shipped_model_for
from dexworld.progress import quiet_library_progress
from dexworld.scene_presets import SCENE_PRESETS
from embodiments.io_utils import atomic_path
from sim_bridge.clips import episode_from_rollout
from sim_bridge.motion import interpolate_poses
from sim_bridge.synth import MOTION_VERBS, joint_prompt
from worldmodel.evaluation.video import to_uint8

PANEL_TITLES = ("simulated", "imagined", "imagined + commanded joints")  # columns of side_by_side.mp4/gif


@dataclasses.dataclass
class DemoConfig:
    """What ``dexworld demo`` does; every field has a command-line flag."""

    out: Path = Path("demo_out")
    embodiment: str = "inspire_right"  # one hand, or a left,right pair ("inspire_left,inspire_right")
    motion: str = "power_grasp"
    method: str = "dexpilot"
    frames: int = 17
    fps: float = 16.0
    size: int = 128
    steps: int | None = None  # denoising steps; default: the checkpoint's own sampling defaults
    guidance: float | None = None  # CFG scale (> 1: also a control-off branch, for `unedited`); default: checkpoint's
    seed: int = 0
    checkpoint: Path | None = None  # default: the shipped tiny-sim model (or a run folder: its latest checkpoint)
    device: str | None = None  # torch device of the world model (default cpu)
    physics: bool = True
    hand_style: str = "auto"  # detailed (the shipped model's data) for the built-in hands, simple for others
    progress: bool = True


OUTPUTS = ("side_by_side.mp4", "side_by_side.gif", "metrics.json", "lerobot")  # what a run writes into cfg.out


def wrist_path(embodiment: embodiments.Embodiment, frames: int) -> np.ndarray:
    """A short reach above the table: the palm moves 6 cm forward, 3 cm down and 2 cm inwards, turning slightly
    (T, 4, 4); a left hand mirrors a right one across x = 0."""
    axes = sim_bridge.hand_axes(embodiment)
    s = 1.0 if embodiment.side == "right" else -1.0
    start = sim_bridge.wrist_pose(axes, [0.08 * s, 0.0, 0.16], yaw=0.15 * s, pitch=-0.1)
    end = sim_bridge.wrist_pose(axes, [0.06 * s, 0.06, 0.13], yaw=-0.05 * s, pitch=-0.1)
    return interpolate_poses(np.stack([start, end]), np.array([0.0, frames - 1.0]), np.arange(frames, dtype=float))


def imagine(pipe, sim, prompt: str, steps: int | None, seed: int, control: bool = True,
            guidance: float | None = None) -> np.ndarray:
    """Generate the rollout from its first frame and joints; ``control=False`` hides every joint (baseline).
    ``guidance`` None: the checkpoint's own guidance scale."""
    joints = sim.joints if control else sim.joints.replace(valid=np.zeros_like(sim.joints.valid))
    with warnings.catch_warnings():  # the baseline hides the joints on purpose
        warnings.filterwarnings("ignore", message=".*(all|every) joint")
        H, W = sim.frames.shape[1:3]  # the simulation's size, not the checkpoint's default
        out = pipe(sim.frames[0], joints, prompt=prompt, height=H, width=W, num_inference_steps=steps,
                   guidance_scale=guidance, seed=seed, progress=False)
    return to_uint8(out.frames)


def retargeted(cfg: DemoConfig, embs: tuple[embodiments.Embodiment, ...]) -> dict[str, np.ndarray]:
    """Joint angles (T, dof) per hand name: ``cfg.motion`` performed by the human hand of each side (seed
    ``cfg.seed``), retargeted to that side's robot hand with ``cfg.method``."""
    q = {}
    for e in embs:
        human = embodiments.human_motion(cfg.motion, side=e.side, fps=cfg.fps, frames=cfg.frames, seed=cfg.seed)
        q[e.name] = retarget.Retargeter(f"mano_{e.side}", e.name, cfg.method).retarget(human)
    return q


def demo_hands(embodiment: str) -> tuple[embodiments.Embodiment, ...]:
    """The demo's hands, left first: one name, or a left,right pair written ``a,b`` or ``a+b``."""
    from sim_bridge.scene import scene_hands

    return scene_hands(embodiment.replace(",", "+"))


def simulate(cfg: DemoConfig, embs: tuple[embodiments.Embodiment, ...], q: dict[str, np.ndarray]
             ) -> sim_bridge.SimRollout:
    """The demo's MuJoCo rollout of the retargeted joint angles ``q`` (per hand name) along :func:`wrist_path`, in a
    scene drawn from the shipped model's training distribution (``dexworld synth --scene-preset tiny-sim``) with seed
    ``cfg.seed``; a pair's hands each move on their own side of the table."""
    scene = sim_bridge.build_scene(embs, sim_bridge.SceneConfig(**SCENE_PRESETS["tiny-sim"], hand_style=cfg.hand_style),
                                   seed=cfg.seed)
    hands = embs if len(embs) > 1 else embs[0]
    paths = {e.name: wrist_path(e, cfg.frames) for e in embs}
    if len(embs) == 1:
        q, paths = q[embs[0].name], paths[embs[0].name]
    sim = sim_bridge.rollout(hands, q, paths, mode="physics" if cfg.physics else "kinematic",
                             size=(cfg.size, cfg.size), seed=cfg.seed, fps=cfg.fps, scene=scene)
    if not sim.stable or len(sim) != cfg.frames:
        raise RuntimeError(f"the physics rollout was unstable: {'; '.join(sim.issues)}")
    return sim


def run_demo(cfg: DemoConfig) -> dict:
    """Run every step, write ``cfg.out``, and return the metrics that went into ``metrics.json``.

    The outputs are built in a staging folder inside ``cfg.out`` and swapped in at the end: a rerun replaces the
    previous run's outputs together (or, if it fails, leaves them as they were); other files in ``cfg.out`` stay.
    """
    if (cfg.frames - 1) % 4:
        raise ValueError(f"--frames must be 4k+1 (e.g. 17), got {cfg.frames}")
    if cfg.size % 16:
        raise ValueError(f"--size must be a multiple of 16, got {cfg.size}")
    embs = demo_hands(cfg.embodiment)
    for emb in embs:
        embodiments.human_motion_angles(cfg.motion, side=emb.side, frames=cfg.frames)  # unknown motion: fail now
    checkpoint = None
    if cfg.checkpoint is not None:
        from dexworld.checkpoints import resolve_checkpoint

        checkpoint = resolve_checkpoint(cfg.checkpoint)
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    check_previous_outputs(out)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-tmp-", dir=out))
    try:
        report = _run_steps(cfg, embs, checkpoint, staging)
        _swap_in(staging, out, OUTPUTS)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def check_previous_outputs(out: Path) -> None:
    """Refuse up front if ``out`` holds files under the demo's output names that an earlier demo did not write: a
    rerun replaces the demo's own outputs and nothing else."""
    from sim_bridge.lerobot_io import read_sidecar

    def foreign(name: str) -> bool:
        path = out / name
        if not path.exists() and not path.is_symlink():
            return False
        if path.is_symlink():
            return True
        if name == "lerobot":
            try:
                sidecar = read_sidecar(path)
            except ValueError:
                return True
            return sidecar is None or any(not str(e.get("source", "")).startswith("demo-")
                                          for e in sidecar.get("episodes", []))
        if name == "metrics.json":
            try:
                return "imagined" not in json.loads(path.read_text())
            except (ValueError, OSError, TypeError):
                return True
        return not path.is_file()

    clash = [name for name in OUTPUTS if foreign(name)]
    if clash:
        raise ValueError(f"--out {out}: {', '.join(clash)} there {'was' if len(clash) == 1 else 'were'} not written "
                         "by 'dexworld demo'; the demo replaces only its own outputs: choose another --out or move "
                         "them away")


def _swap_in(staging: Path, out: Path, names: tuple[str, ...]) -> None:
    """Replace the previous run's outputs ``names`` in ``out`` by the new ones in ``staging``; nothing else in
    ``out`` is touched. The old files move aside first and are deleted only once every new one is in place."""
    trash = Path(tempfile.mkdtemp(prefix=".demo-old-", dir=out))
    placed: list[str] = []
    try:
        for name in names:
            if (out / name).exists() or (out / name).is_symlink():
                os.replace(out / name, trash / name)
        for name in names:
            if (staging / name).exists():
                os.replace(staging / name, out / name)
                placed.append(name)
    except OSError:
        for name in placed:  # take the new outputs out again (staging is deleted by the caller) ...
            os.replace(out / name, staging / name)
        for name in names:  # ... and put every previous output back, so the run is all old or all new
            if (trash / name).exists() or (trash / name).is_symlink():
                os.replace(trash / name, out / name)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def _run_steps(cfg: DemoConfig, embs: tuple[embodiments.Embodiment, ...], checkpoint: Path | None, out: Path
               ) -> dict:
    """Every step of the demo, writing its outputs into ``out`` (a fresh staging folder)."""
    from rich.progress import Progress

    from worldmodel.evaluation.report import evaluate
    from worldmodel.evaluation.video import draw_joints, side_by_side, write_video
    from worldmodel.wan.pipeline import HandControlPipeline

    quiet_library_progress()
    timings: dict[str, float] = {}
    with Progress(disable=not cfg.progress, transient=True) as bar:
        task = bar.add_task("demo", total=5)

        def step(name: str):
            bar.update(task, description=name)
            timings[name] = time.perf_counter()

        def done(name: str):
            timings[name] = time.perf_counter() - timings[name]
            bar.advance(task)

        step("human motion and retarget")
        q = retargeted(cfg, embs)
        done("human motion and retarget")

        step("simulate")
        sim = simulate(cfg, embs, q)
        done("simulate")

        step("load model")
        shipped = shipped_model_for(e.name for e in embs)
        model = str(checkpoint) if checkpoint else f"shipped:{shipped}"
        pipe = HandControlPipeline.from_pretrained(checkpoint or shipped)
        if cfg.device:
            pipe.to(cfg.device)
        done("load model")

        step("imagine")
        prompt = demo_prompt(embs, cfg.motion)
        video = imagine(pipe, sim, prompt, cfg.steps, cfg.seed, control=True, guidance=cfg.guidance)
        video_off = imagine(pipe, sim, prompt, cfg.steps, cfg.seed, control=False, guidance=cfg.guidance)
        done("imagine")

        step("evaluate and write")
        uvd, ok = sim.joints.project()
        panels = side_by_side(sim.frames, video, draw_joints(video, uvd[..., :2], ok), titles=PANEL_TITLES)
        write_video(out / "side_by_side.mp4", panels, fps=cfg.fps)
        write_video(out / "side_by_side.gif", panels, fps=cfg.fps)
        name = "+".join(e.name for e in embs)
        probe = probe_for(name)
        report = {
            "embodiment": name, "checkpoint": model, "motion": cfg.motion, "method": cfg.method, "frames": cfg.frames,
            "size": cfg.size, "seed": cfg.seed,
            "guidance": pipe.defaults.guidance_scale if cfg.guidance is None else cfg.guidance,
            "imagined": evaluate(video, sim, probe=probe, exclude_first=True).to_dict(),
            "control_off": evaluate(video_off, sim, probe=probe, exclude_first=True).to_dict(),
        }
        episode = episode_from_rollout(
            sim, task=f"imagined: {cfg.motion} retargeted to {name}", source=f"demo-seed{cfg.seed}")
        episode.frames = video
        sim_bridge.export_lerobot([episode], repo_id="dexworld/demo_imagined", root=out / "lerobot")
        done("evaluate and write")
    report["seconds"] = {k: round(v, 2) for k, v in timings.items()}
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    return report


def demo_prompt(embs: tuple[embodiments.Embodiment, ...], motion: str) -> str:
    """The demo's prompt, worded like the synthetic clips the models are trained on (``dexworld synth``; a pair's
    clauses joined by ``;``)."""
    verb = MOTION_VERBS.get(motion, "moves")
    return joint_prompt([f"Egocentric view: a robot {e.side} hand {verb} above the table." for e in embs])


def probe_for(embodiment: str):
    """The shipped keypoint probe if it reads every hand of ``embodiment`` (``a`` or ``a+b``; directly or as mirror
    twins), else None (metrics then omit joint error; for a pair, ``evaluate`` also needs a probe that reads two hands
    in one frame and notes why it reports none)."""
    from worldmodel.evaluation.probe import load_probe

    try:
        probe = load_probe()
    except FileNotFoundError:
        return None
    return probe if all(probe.knows(h) for h in embodiment.split("+")) else None
