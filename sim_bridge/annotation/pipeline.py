"""Detections of one video → tracked, filtered, canonicalised training clips on disk.

Per video (:func:`annotate_video`, a pure top-level function so it runs in worker processes and Ray tasks):

1. joints per detection: the supplied 21 joints, or MANO parameters through :mod:`embodiments.mano` when the user
   has the model files (``MANO_LEFT.pkl`` / ``MANO_RIGHT.pkl`` in ``mano_dir``);
2. two-slot tracking on the wrists (:mod:`.tracking`) and per-hand plausibility (:mod:`.filters`);
3. clips of ``clip_frames`` frames (81 by default) every ``clip_stride`` source frames, each sampling every
   ``frame_step``-th frame; each clip is filtered and the kept ones are written with
   :func:`embodiments.clip.write_clip` (frames read once, in order, with imageio's pyav plugin, or its ffmpeg
   plugin where PyAV is not installed);
4. canonical mirroring (the paper maps right hands into the canonical space by mirroring across X): a clip whose
   only hand is the right one (``mirror="right_only"``; ``"right_dominant"`` also mirrors clips where the right hand
   is present in more frames than the left) is mirrored with :meth:`SparseJoints.mirror` (x → −x, left/right
   slots swapped, ``mirrored=True``), its frames are flipped horizontally and its principal point reflected
   (cx → W − 1 − cx), so joints and pixels still agree and :func:`mirror_clip` undoes it exactly.

:func:`annotate_videos` runs the per-video function over many videos with a process pool on one machine;
:mod:`.ray_adapter` runs the same function as Ray tasks on a cluster.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from embodiments.io_utils import plain_name
from embodiments.layout import NUM_HAND_JOINTS, NUM_SLOTS, SIDES
from embodiments.sparse import SparseJoints

from .filters import FilterConfig, FilterResult, evaluate_clip, plausible_hands
from .schema import VideoDetections
from .tracking import TrackerConfig, Tracks, track

MIRROR_POLICIES = ("none", "right_only", "right_dominant")


@dataclasses.dataclass(frozen=True)
class AnnotationConfig:
    """How clips are cut, canonicalised and written.

    Attributes:
        clip_frames: frames per clip (81: Wan's 4k+1 length).
        clip_stride: source frames between the starts of consecutive clips (default: ``clip_frames * frame_step``,
            i.e. back to back; smaller values overlap).
        frame_step: take every n-th source frame (e.g. 2 turns 30 fps into 15 fps clips).
        mirror: canonical mirroring policy, one of ``"none"``, ``"right_only"``, ``"right_dominant"``.
        prompt: text prompt stored in every clip.
        mano_dir: folder with ``MANO_LEFT.pkl`` / ``MANO_RIGHT.pkl``; needed only for MANO-only detections.
        tracker, filters: thresholds of :mod:`.tracking` and :mod:`.filters`.
    """

    clip_frames: int = 81
    clip_stride: int | None = None
    frame_step: int = 1
    mirror: str = "right_only"
    prompt: str = ""
    mano_dir: str | None = None
    tracker: TrackerConfig = dataclasses.field(default_factory=TrackerConfig)
    filters: FilterConfig = dataclasses.field(default_factory=FilterConfig)

    def __post_init__(self) -> None:
        for name in ("clip_frames", "frame_step"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"AnnotationConfig.{name} must be a positive integer, got {v!r}")
        if self.clip_stride is not None and not (isinstance(self.clip_stride, int) and self.clip_stride >= 1):
            raise ValueError(f"AnnotationConfig.clip_stride must be a positive integer, got {self.clip_stride!r}")
        if self.mirror not in MIRROR_POLICIES:
            raise ValueError(f"AnnotationConfig.mirror must be one of {MIRROR_POLICIES}, got {self.mirror!r}")

    @property
    def stride(self) -> int:
        return self.clip_stride if self.clip_stride is not None else self.clip_frames * self.frame_step


@dataclasses.dataclass
class ClipRecord:
    """One candidate clip: where it starts, whether it was kept (and why not), where it was written."""

    start: int
    kept: bool
    reasons: tuple[str, ...]
    hand_presence: float
    mano_density: float
    extra_hand_fraction: float
    mirrored: bool = False
    path: str | None = None


@dataclasses.dataclass
class VideoReport:
    """What happened to one video; ``error`` is set (and ``clips`` empty) when it could not be processed."""

    video_id: str
    video: str
    num_frames: int = 0
    clips: list[ClipRecord] = dataclasses.field(default_factory=list)
    nonfinite_frames: int = 0
    nonfinite_hands: int = 0
    swaps: int = 0
    swaps_blocked: int = 0
    resets: int = 0
    error: str | None = None

    @property
    def kept(self) -> int:
        return sum(c.kept for c in self.clips)

    def dropped_by_reason(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.clips:
            if not c.kept:
                out[c.reasons[0]] = out.get(c.reasons[0], 0) + 1
        return out


# ====================================================================== joints
def load_mano_models(mano_dir: str | os.PathLike) -> dict[str, object]:
    """The MANO models found in ``mano_dir`` (``MANO_LEFT.pkl``, ``MANO_RIGHT.pkl``), by side."""
    from embodiments.mano import ManoModel

    mano_dir = Path(mano_dir)
    if not mano_dir.is_dir():
        raise FileNotFoundError(f"MANO folder {mano_dir} does not exist (it should hold MANO_LEFT.pkl / "
                                "MANO_RIGHT.pkl from the MANO website)")
    models = {side: ManoModel.load(mano_dir / f"MANO_{side.upper()}.pkl") for side in SIDES
              if (mano_dir / f"MANO_{side.upper()}.pkl").exists()}
    if not models:
        raise FileNotFoundError(f"no MANO_LEFT.pkl or MANO_RIGHT.pkl in {mano_dir}")
    return models


def detection_joints(det: VideoDetections, mano_models: dict[str, object] | None = None) -> VideoDetections:
    """Fill the joints of detections that carry only MANO parameters (batched per side through the MANO model).

    Supplied joints are kept as they are. Raises a ValueError naming the video and the missing model file when
    MANO-only detections exist but no model for their side is available.
    """
    need = det.has_mano & ~det.has_joints
    if not need.any():
        return det
    joints = det.joints.copy()
    for s, side in enumerate(SIDES):
        rows = np.flatnonzero(need & (det.handedness == s))
        if not rows.size:
            continue
        model = (mano_models or {}).get(side)
        if model is None:
            raise ValueError(f"video '{det.video_id}': {rows.size} {side} hands (first in frame "
                             f"{int(det.frame[rows[0]])}) carry only MANO parameters, and no MANO_{side.upper()}.pkl "
                             "was given; pass --mano-dir with the MANO model files, or supply 'joints'")
        joints[rows] = mano_joints(model, {k: v[rows] for k, v in det.mano.items()})
    return det.with_joints(joints)


def mano_joints(model, mano: dict[str, np.ndarray], batch: int = 4096) -> np.ndarray:
    """(B, 21, 3) float32 joints (MANO/OpenPose order, camera frame) from MANO arrays through ``model.forward``."""
    import torch

    n = len(mano["pose"])
    out = np.empty((n, NUM_HAND_JOINTS, 3), np.float32)
    with torch.no_grad():
        for a in range(0, n, batch):
            args = {k: torch.as_tensor(np.asarray(mano[k][a:a + batch], np.float32))
                    for k in ("pose", "betas", "global_orient", "transl")}
            res = model.forward(**args)  # pose is absolute (zeros = flat hand), as HaMeR/WiLoR-style fits give
            j = res.joints if hasattr(res, "joints") else res[1]
            j = j.detach().cpu().numpy() if hasattr(j, "detach") else np.asarray(j)
            if j.shape != (len(args["pose"]), NUM_HAND_JOINTS, 3):
                raise ValueError(f"MANO model returned joints of shape {j.shape}, expected "
                                 f"({len(args['pose'])}, {NUM_HAND_JOINTS}, 3)")
            out[a:a + batch] = j
    return out


def tracks_to_joints(det: VideoDetections, tracks: Tracks, plausible: np.ndarray) -> SparseJoints:
    """The whole video's (T, 42, 3) camera-frame joints: each slot's tracked hand, valid where plausible."""
    T = det.num_frames
    pos = np.zeros((T, NUM_SLOTS, 3), np.float32)
    valid = np.zeros((T, NUM_SLOTS), bool)
    for s in range(2):
        rows = tracks.assignment[:, s]
        has = rows >= 0
        t = np.flatnonzero(has)
        sl = slice(s * NUM_HAND_JOINTS, (s + 1) * NUM_HAND_JOINTS)
        pos[t, sl] = det.joints[rows[has]]
        valid[t, sl] = plausible[rows[has], None]
    return SparseJoints(positions=pos, valid=valid, frame="camera", fps=det.fps, embodiment="human", K=det.K)


# ====================================================================== mirroring
def mirror_clip(frames: np.ndarray, joints: SparseJoints) -> tuple[np.ndarray, SparseJoints]:
    """Mirror a clip across the camera's X axis: frames flipped left↔right, joints through
    :meth:`SparseJoints.mirror` (x → −x, slots swapped, ``mirrored`` toggled), principal point cx → W − 1 − cx
    (OpenCV pixel centres) so the mirrored joints project onto the flipped pixels. Applying it twice is the
    identity.
    """
    frames = np.asarray(frames)
    W = frames.shape[2]
    K = joints.K.copy()
    K[..., 0, 2] = (W - 1) - K[..., 0, 2]
    return frames[:, :, ::-1].copy(), joints.mirror().replace(K=K)


def _should_mirror(joints: SparseJoints, policy: str) -> bool:
    if policy == "none":
        return False
    left = joints.valid[:, :NUM_HAND_JOINTS].any(1).sum()
    right = joints.valid[:, NUM_HAND_JOINTS:].any(1).sum()
    if policy == "right_only":
        return bool(right > 0 and left == 0)
    return bool(right > left)


# ====================================================================== clips
def clip_starts(num_frames: int, config: AnnotationConfig) -> list[int]:
    """Source-frame starts of every full clip in a video of ``num_frames`` frames."""
    span = (config.clip_frames - 1) * config.frame_step + 1
    return list(range(0, max(num_frames - span + 1, 0), config.stride))


def video_plugin() -> str:
    """imageio plugin for decoding: ``pyav`` when PyAV is installed, else the ffmpeg plugin (imageio-ffmpeg)."""
    import importlib.util

    return "pyav" if importlib.util.find_spec("av") is not None else "FFMPEG"


def read_frames(path: str | os.PathLike, indices: Iterable[int]):
    """Yield ``(index, frame)`` for the wanted frame indices (ascending), decoding the video once in order.

    Stops after the last wanted index; raises ValueError if the video ends before it.
    """
    import imageio.v3 as iio

    wanted = sorted(set(indices))
    if not wanted:
        return
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video file {path} does not exist")
    k, i = 0, -1
    for i, frame in enumerate(iio.imiter(path, plugin=video_plugin())):
        if i == wanted[k]:
            yield i, frame
            k += 1
            if k == len(wanted):
                return
    raise ValueError(f"video {path} has {i + 1} frames but the detections need frame "
                     f"{wanted[k]}; the detections and the video do not match")


def annotate_video(det: VideoDetections, out_dir: str | os.PathLike, config: AnnotationConfig | None = None,
                   mano_models: dict[str, object] | None = None, write: bool = True) -> VideoReport:
    """Track, filter, cut, mirror and write the clips of one video. See the module docstring.

    ``write=False`` decides every clip without reading the video or writing files (a dry run).
    """
    cfg = config or AnnotationConfig()
    plain_name(det.video_id, f"video '{det.video}': video_id")  # it names the clip files inside out_dir
    report = VideoReport(video_id=det.video_id, video=det.video, num_frames=det.num_frames,
                         nonfinite_frames=len(det.nonfinite_frames), nonfinite_hands=det.nonfinite_hands)
    if mano_models is None and cfg.mano_dir and (det.has_mano & ~det.has_joints).any():
        mano_models = load_mano_models(cfg.mano_dir)
    det = detection_joints(det, mano_models)
    has_j = det.has_joints
    if not has_j.all():  # rows without any usable joints cannot be tracked on wrists
        keep = np.flatnonzero(has_j)
        det = dataclasses.replace(det, frame=det.frame[keep], handedness=det.handedness[keep],
                                  handedness_conf=det.handedness_conf[keep], bbox=det.bbox[keep],
                                  joints=det.joints[keep], mano={k: v[keep] for k, v in det.mano.items()})
    tracks = track(det.translations(), det.frame, det.handedness, det.num_frames, cfg.tracker)
    report.swaps, report.swaps_blocked, report.resets = tracks.swaps, tracks.swaps_blocked, len(tracks.resets)
    plausible = plausible_hands(det.joints, det.mano, det.has_mano, cfg.filters)
    full = tracks_to_joints(det, tracks, plausible)
    assigned = tracks.assigned()
    cell_ok = np.zeros_like(assigned)
    for s in range(2):
        rows = tracks.assignment[:, s]
        cell_ok[rows >= 0, s] = plausible[rows[rows >= 0]]  # no rows at all when every hand was NaN
    span = (cfg.clip_frames - 1) * cfg.frame_step + 1
    todo: list[tuple[int, SparseJoints, FilterResult]] = []
    for start in clip_starts(det.num_frames, cfg):
        sl = slice(start, start + span, cfg.frame_step)
        result = evaluate_clip(assigned[sl], cell_ok[sl], tracks.detections_per_frame[sl], cfg.filters)
        report.clips.append(ClipRecord(start=start, kept=result.kept, reasons=result.reasons,
                                       hand_presence=result.hand_presence, mano_density=result.mano_density,
                                       extra_hand_fraction=result.extra_hand_fraction))
        if result.kept:
            todo.append((len(report.clips) - 1, full[sl], result))
    if write and todo:
        _write_clips(det, todo, report, Path(out_dir), cfg)
    return report


def _write_clips(det: VideoDetections, todo: list, report: VideoReport, out_dir: Path,
                 cfg: AnnotationConfig) -> None:
    from embodiments.clip import write_clip

    index_sets = [range(report.clips[n].start, report.clips[n].start + len(j) * cfg.frame_step, cfg.frame_step)
                  for n, j, _ in todo]
    last_needed = {}
    for k, idx in enumerate(index_sets):
        for i in idx:
            last_needed[i] = k
    buffer: dict[int, np.ndarray] = {}
    k = 0  # next clip to write (clips complete in start order)
    for i, frame in read_frames(det.video, last_needed):
        buffer[i] = frame
        while k < len(todo) and i == index_sets[k][-1]:
            n, joints, result = todo[k]
            frames = np.stack([buffer[j] for j in index_sets[k]])
            rec = report.clips[n]
            if _should_mirror(joints, cfg.mirror):
                frames, joints = mirror_clip(frames, joints)
            path = out_dir / f"{det.video_id}_{rec.start:06d}.h5"
            write_clip(path, frames, joints, prompt=cfg.prompt, source_video=str(det.video),
                       video_id=det.video_id, source_start=rec.start, frame_step=cfg.frame_step,
                       source_fps=det.fps, hand_presence=result.hand_presence, mano_density=result.mano_density,
                       extra_hand_fraction=result.extra_hand_fraction)
            rec.mirrored, rec.path = joints.mirrored, str(path)
            k += 1
            for j in [j for j in buffer if j < (index_sets[k][0] if k < len(todo) else i + 1)]:
                del buffer[j]


# ====================================================================== many videos
def _run_one(det: VideoDetections, out_dir: str, config: AnnotationConfig, write: bool) -> VideoReport:
    """Per-video work with user errors turned into a report (one bad video must not stop a batch)."""
    try:
        return annotate_video(det, out_dir, config, write=write)
    except (ValueError, KeyError, FileNotFoundError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        return VideoReport(video_id=det.video_id, video=det.video, num_frames=det.num_frames,
                           nonfinite_frames=len(det.nonfinite_frames), nonfinite_hands=det.nonfinite_hands,
                           error=f"{type(e).__name__}: {msg}")


def annotate_videos(videos: Sequence[VideoDetections], out_dir: str | os.PathLike,
                    config: AnnotationConfig | None = None, workers: int = 1, write: bool = True,
                    on_done: Callable[[VideoReport], None] | None = None) -> list[VideoReport]:
    """Annotate many videos, in parallel over ``workers`` processes; reports come back in input order.

    Errors in one video are recorded in its report (``error``) and the others go on. ``on_done`` is called in
    the calling process as each video finishes (for progress bars).
    """
    cfg = config or AnnotationConfig()
    out_dir = str(out_dir)
    ids = [v.video_id for v in videos]
    dup = {i for i, n in collections.Counter(ids).items() if n > 1}
    if dup:
        raise ValueError(f"video ids must be unique (they name the clip files); repeated: {sorted(dup)}")
    reports: list[VideoReport | None] = [None] * len(videos)
    if workers <= 1 or len(videos) <= 1:
        for n, v in enumerate(videos):
            reports[n] = _run_one(v, out_dir, cfg, write)
            if on_done:
                on_done(reports[n])
        return reports  # type: ignore[return-value]
    # spawn, not fork: the parent may hold torch/h5py threads, which fork does not copy safely.
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(_run_one, v, out_dir, cfg, write): n for n, v in enumerate(videos)}
        for fut in cf.as_completed(futures):
            n = futures[fut]
            reports[n] = fut.result()
            if on_done:
                on_done(reports[n])
    return reports  # type: ignore[return-value]
