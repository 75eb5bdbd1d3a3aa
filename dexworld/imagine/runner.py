"""One shard of an ``imagine`` run: plan, skip what is written, sample batches, score, write through lerobot.

The sampling (``worldmodel``) and the source reading and dataset writing (``sim_bridge``) meet here, in the CLI
layer, so that neither package imports the other.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from embodiments.transforms import scale_intrinsics

from .shards import done_keys, shard_root
from .sources import SourceEpisode, load_sources
from .work import WorkItem, apply_edit, draw_edit, plan, shard


@dataclasses.dataclass
class ImagineConfig:
    """Everything one shard needs (plain values, so it travels to Ray workers)."""

    source: Path
    out: Path
    repo_id: str | None = None
    checkpoint: str | None = None  # default: the shipped model for the sources' hands (shipped_model_for)
    seeds: int = 1
    edits: int = 0
    cross_references: int = 0
    edit_max_offset: float = 0.03
    seed_base: int = 0
    batch_size: int = 4
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    steps: int | None = None
    guidance: float | None = None
    prompt: str | None = None  # default: each source episode's task
    min_quality: float | None = None
    camera: str = "ego"
    hands: list[str] | None = None
    robot: str | None = None
    source_camera: str | None = None
    episodes: list[int] | None = None
    to: str | None = None  # robot hand for human-motion sources
    swap_to: str | None = None  # hand family every source hand is swapped to (dex3, inspire)
    probe: str | None = None
    device: str | None = None
    progress: bool = True

    @property
    def repo(self) -> str:
        return self.repo_id or f"local/{Path(self.out).name}"


@dataclasses.dataclass
class ShardReport:
    written: int = 0
    skipped: int = 0
    dropped: list[tuple[str, float]] = dataclasses.field(default_factory=list)
    planned: int = 0


def source_hands(sources: list[SourceEpisode]) -> set[str]:
    """Every hand of the source episodes (they choose the shipped model when no --checkpoint is given)."""
    return {h for s in sources for h in s.episode.hands}


def load_pipeline(cfg: ImagineConfig, hands: Iterable[str] = ()):
    """The world model on ``cfg.device``: ``--checkpoint``, else the shipped model for ``hands``
    (:func:`dexworld.checkpoints.shipped_model_for`); the one place a checkpoint is loaded."""
    import torch

    from dexworld.checkpoints import resolve_checkpoint, shipped_model_for
    from worldmodel.wan.pipeline import HandControlPipeline

    checkpoint = resolve_checkpoint(cfg.checkpoint) if cfg.checkpoint is not None else shipped_model_for(hands)
    pipe = HandControlPipeline.from_pretrained(checkpoint)
    pipe.to(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def model_label(cfg: ImagineConfig, pipe) -> str:
    """The model as provenance records it, taken from the loaded pipeline itself: ``--checkpoint`` as given, else
    ``shipped:<folder name>``."""
    return str(cfg.checkpoint) if cfg.checkpoint is not None else f"shipped:{Path(pipe.name_or_path).name}"


def shipped_defaults():
    """The sampling defaults both shipped models record (size, frames, steps), read from ``model_index.json``
    through diffusers' ``load_config`` without loading weights."""
    from worldmodel.wan.pipeline import HandControlPipeline
    from worldmodel.wan.presets import shipped_path
    from worldmodel.wan.sampling import SamplingDefaults

    path = shipped_path("tiny-sim")
    return SamplingDefaults.from_dict(HandControlPipeline.load_config(path)["sampling"], f"{path} sampling")


def prepare(cfg: ImagineConfig, d) -> tuple[list[SourceEpisode], list[WorkItem]]:
    """The source episodes cut to the frame count and the full plan of work items, with sampling defaults ``d``
    (the loaded pipeline's, or :func:`shipped_defaults` before the shipped model is chosen)."""
    num_frames = cfg.num_frames or d.num_frames
    if (num_frames - 1) % 4:
        raise ValueError(f"--num-frames must be 4k+1 (e.g. 17), got {num_frames}")
    sources = load_sources(cfg.source, num_frames, hands=cfg.hands, camera=cfg.source_camera, robot=cfg.robot,
                           episodes=cfg.episodes, to=cfg.to, size=(cfg.height or d.height, cfg.width or d.width),
                           swap_to=cfg.swap_to)
    return sources, plan([s.id for s in sources], cfg.seeds, cfg.edits, cfg.cross_references, cfg.seed_base)


def item_inputs(item: WorkItem, sources: list[SourceEpisode], cfg: ImagineConfig):
    """Reference image, commanded joints (camera frame, K in the image's pixels) and the edit parameters."""
    src = sources[item.episode]
    joints = src.episode.joints
    ref = sources[item.reference].episode.frames[0] if item.reference is not None else src.episode.frames[0]
    if ref.shape != src.episode.frames[0].shape:
        raise ValueError(f"--cross-references: episode {sources[item.reference].id} has {ref.shape[:2]} images, "
                         f"{src.id} has {src.episode.frames.shape[1:3]}; use one camera")
    params = None
    if item.edit is not None:
        params = draw_edit(joints, item.episode, item.edit, cfg.edit_max_offset, cfg.seed_base)
        joints = apply_edit(joints, params)
    return ref, joints, params


def quality(probe, frames: np.ndarray, joints, hands: tuple[str, ...]) -> tuple[float | None, dict]:
    """Mean PCK@5px of the keypoint probe's detections against the commanded joints over the hands the probe
    reads (directly or as mirror twins; None when it reads none), and each hand's error."""
    from worldmodel.evaluation.probe import keypoint_error

    per = {}
    if len(hands) > 1 and not probe.reads_two_hands:  # it would confuse the two hands in one frame
        return None, per
    for hand in hands:
        if probe.knows(hand):
            r = keypoint_error(probe, frames, joints, embodiment=hand)
            per[hand] = {"mean_px": r["mean_px"], "pck@5px": r["pck@5px"], "n_joints": r["n_joints"]}
    scores = [v["pck@5px"] for v in per.values() if not math.isnan(v["pck@5px"])]
    return (float(np.mean(scores)) if scores else None), per


def imagine_episodes(pipe, probe, sources: list[SourceEpisode], items: list[WorkItem], cfg: ImagineConfig,
                     report: ShardReport, on_batch: Callable[[int], None] | None = None) -> Iterator:
    """Sample ``items`` in batches of ``cfg.batch_size`` and yield them as dataset episodes (with provenance and
    quality), dropping those under ``cfg.min_quality``."""
    from sim_bridge.lerobot_io import Episode
    from worldmodel.evaluation.video import to_uint8

    d = pipe.defaults
    H, W = cfg.height or d.height, cfg.width or d.width
    checkpoint = model_label(cfg, pipe)
    for b in range(0, len(items), cfg.batch_size):
        batch = items[b:b + cfg.batch_size]
        inputs = [item_inputs(it, sources, cfg) for it in batch]
        prompts = [cfg.prompt if cfg.prompt is not None else sources[it.episode].episode.task for it in batch]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(all|every) joint")
            outs = pipe.sample_batch([i[0] for i in inputs], [i[1] for i in inputs], seeds=[it.seed for it in batch],
                                     prompts=prompts, height=H, width=W, num_inference_steps=cfg.steps,
                                     guidance_scale=cfg.guidance)
        for it, (ref, joints, params), out in zip(batch, inputs, outs, strict=True):
            src = sources[it.episode].episode
            frames = to_uint8(out.frames)
            h0, w0 = ref.shape[:2]
            joints = joints.replace(K=scale_intrinsics(joints.K, W / w0, H / h0))
            score, per_hand = quality(probe, frames, joints, src.hands)
            if cfg.min_quality is not None:
                if score is None:
                    why = "in one frame (it was trained on one-hand frames)" if len(src.hands) > 1 else \
                        "(it knows none of them)"
                    raise ValueError(f"--min-quality: the keypoint probe cannot score {'+'.join(src.hands)} {why}; "
                                     "drop --min-quality or pass --probe DIR")
                if score < cfg.min_quality:
                    report.dropped.append((it.key, score))
                    continue
            info = {"provenance": {"source_dataset": sources[it.episode].dataset,
                                   "source_episode": sources[it.episode].index, "source_id": it.key.split("|")[0],
                                   "seed": it.seed, "edit": params, "reference_episode":
                                   None if it.reference is None else sources[it.reference].index,
                                   "embodiment": "+".join(src.hands), "checkpoint": checkpoint,
                                   "swapped_from": sources[it.episode].swapped_from,
                                   "steps": cfg.steps or d.num_inference_steps, "size": [H, W]},
                    "quality": score, "probe": per_hand}
            yield Episode(frames=frames, joints=joints, q=src.q, action=src.action, task=src.task, source=it.key,
                          T_cam_root=src.T_cam_root if params is None else None, info=info)
        if on_batch:
            on_batch(len(batch))


def run_shard(cfg: ImagineConfig, rank: int = 0, world: int = 1, pipe=None, probe=None) -> ShardReport:
    """Imagine shard ``rank`` of ``world`` (all items when world is 1, written straight into ``cfg.out``; otherwise
    into the rank's shard dataset). Items already in the output or any shard are skipped."""
    from tqdm import tqdm

    from sim_bridge.lerobot_io import export_lerobot
    from worldmodel.evaluation.probe import load_probe

    if cfg.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    out = Path(cfg.out)
    if pipe is None and cfg.checkpoint is None:  # the sources' hands choose the shipped model
        sources, items = prepare(cfg, shipped_defaults())
        pipe = load_pipeline(cfg, source_hands(sources))
    else:
        pipe = pipe or load_pipeline(cfg)
        sources, items = prepare(cfg, pipe.defaults)
    done = done_keys(out, rank if world > 1 else None)
    mine = [it for it in shard(items, rank, world) if it.key not in done]
    report = ShardReport(skipped=len(shard(items, rank, world)) - len(mine), planned=len(items))
    if not mine:
        return report
    probe = probe or load_probe(cfg.probe)
    root = out if world == 1 else shard_root(out, rank)
    with tqdm(total=len(mine), desc=f"imagine {rank}/{world}" if world > 1 else "imagine", unit="ep",
              disable=not cfg.progress, position=rank) as bar:
        eps = imagine_episodes(pipe, probe, sources, mine, cfg, report, on_batch=bar.update)
        rep = export_lerobot(eps, cfg.repo, root, camera=cfg.camera, commit_every=cfg.batch_size)
    report.written = len(rep.written)
    return report
