"""Episodes ↔ training clips (``embodiments.clip`` HDF5): time resampling, windowing, and the clip extras that carry
joint states (``q``, ``action``), hand-root poses and the source id.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from embodiments import registry
from embodiments.layout import SIDES
from embodiments.transforms import invert_transform

from .hand_pose import join_names
from .lerobot_io import Episode, split_clip_state


def resample_indices(num_src: int, src_fps: float, fps: float) -> np.ndarray:
    """Source frame index nearest to each target time ``k / fps`` that lies inside the episode."""
    if not (src_fps > 0 and fps > 0):
        raise ValueError(f"fps must be positive, got source {src_fps}, target {fps}")
    duration = (num_src - 1) / src_fps
    n = int(np.floor(duration * fps + 1e-9)) + 1
    return np.minimum(np.rint(np.arange(n) * src_fps / fps).astype(int), num_src - 1)


def take_frames(ep: Episode, idx: np.ndarray, fps: float) -> Episode:
    """The episode at source frames ``idx`` (nearest-frame resampling keeps images and joints in step)."""
    j = ep.joints
    K = j.K[idx] if (j.K is not None and j.K.ndim == 3) else j.K
    joints = j.replace(positions=j.positions[idx], valid=j.valid[idx], K=K, fps=fps)

    def pick(d):
        return None if d is None else {h: np.asarray(v)[idx] for h, v in d.items()}

    roots = None
    if ep.T_cam_root is not None:
        roots = {h: (np.asarray(v)[idx] if np.ndim(v) == 3 else v) for h, v in ep.T_cam_root.items()}
    return Episode(frames=ep.frames[idx], joints=joints, q=pick(ep.q), action=pick(ep.action), task=ep.task,
                   source=ep.source, T_cam_root=roots)


def resample_episode(ep: Episode, fps: float) -> Episode:
    """The episode at ``fps`` (nearest source frame)."""
    if abs(ep.joints.fps - fps) < 1e-9:
        return ep
    return take_frames(ep, resample_indices(len(ep.frames), ep.joints.fps, fps), fps)


def windows(ep: Episode, num_frames: int | None, stride: int | None = None, keep_short: bool = True
            ) -> Iterator[tuple[int, Episode]]:
    """(start, window) pairs of ``num_frames`` frames every ``stride`` (default non-overlapping).

    ``num_frames=None`` yields the whole episode; an episode shorter than ``num_frames`` yields itself once when
    ``keep_short``.
    """
    T = len(ep.frames)
    if num_frames is None or num_frames >= T:
        if num_frames is None or keep_short or num_frames == T:
            yield 0, ep
        return
    stride = stride or num_frames
    for s in range(0, T - num_frames + 1, stride):
        yield s, take_frames(ep, np.arange(s, s + num_frames), ep.joints.fps)


def write_episode_clips(ep: Episode, out_dir: str | os.PathLike, stem: str, fps: float | None = None,
                        num_frames: int | None = None, stride: int | None = None, keep_short: bool = True
                        ) -> list[Path]:
    """Resample an episode to ``fps`` and write windows of ``num_frames`` as training clips ``<stem>_sNNNNN.h5``."""
    from embodiments.clip import write_clip

    out_dir = Path(out_dir)
    ep = resample_episode(ep, fps) if fps else ep
    paths = []
    for start, w in windows(ep, num_frames, stride, keep_short):
        hands = list(w.q)
        extra = {"q": np.concatenate([w.q[h] for h in hands], axis=1), "source": w.source, "start_frame": start}
        if w.action is not None:
            extra["action"] = np.concatenate([w.action[h] for h in hands], axis=1)
        if w.T_cam_root is not None:
            extra["T_cam_root"] = np.stack([np.broadcast_to(w.T_cam_root[h], (len(w.frames), 4, 4))
                                            for h in hands], axis=1)
        joints = w.joints.replace(embodiment=join_names(hands))
        paths.append(write_clip(out_dir / f"{stem}_s{start:05d}.h5", w.frames, joints, prompt=w.task, **extra))
    return paths


def episode_from_clip(path: str | os.PathLike) -> Episode:
    """A training clip as an :class:`Episode` (needs the joint states in the clip's ``q`` extra)."""
    from embodiments.clip import read_clip

    path = Path(path)
    clip = read_clip(path)
    if "q" not in clip.extra:
        raise ValueError(f"{path}: clip has no joint states (extra 'q', (T, D)); LeRobot export needs them")
    emb = clip.joints.embodiment
    try:
        q = split_clip_state(emb, clip.extra["q"])
        action = split_clip_state(emb, clip.extra["action"]) if "action" in clip.extra else None
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    roots = None
    if "T_cam_root" in clip.extra:
        arr = np.asarray(clip.extra["T_cam_root"], np.float64)
        roots = {h: arr[:, i] for i, h in enumerate(q)}
    source = str(clip.extra.get("source", path.stem))
    return Episode(frames=clip.frames, joints=clip.joints, q=q, action=action, task=clip.prompt,
                   source=f"{source}@{clip.extra.get('start_frame', 0)}" if "start_frame" in clip.extra else source,
                   T_cam_root=roots)


def rollout_hands(sim) -> dict[str, dict[str, np.ndarray]]:
    """Per-hand ``q``, ``q_target`` and ``T_world_hand`` of a rollout, left hand first (``"q"`` → hand → array).

    A pair rollout keeps them as dicts keyed by hand name; a one-hand rollout as arrays (keyed here by
    ``sim.hands[0]``, else the joints' embodiment). Left-then-right is the order of both halves of the 42 slots and
    of the concatenated joint vectors (``q`` of a clip, LeRobot ``observation.state``).
    """
    fields = ("q", "q_target", "T_world_hand")
    if not isinstance(sim.q, Mapping):
        hand = (getattr(sim, "hands", None) or (sim.joints.embodiment,))[0]
        return {f: {hand: np.asarray(getattr(sim, f))} for f in fields}
    hands = sorted(sim.q, key=lambda h: SIDES.index(registry.get(h).side))
    out = {}
    for f in fields:
        value = getattr(sim, f)
        if not isinstance(value, Mapping) or set(value) != set(hands):
            raise ValueError(f"rollout.{f} must be a dict keyed by the pair's hands {hands} like rollout.q, "
                             f"got {sorted(value) if isinstance(value, Mapping) else type(value).__name__}")
        out[f] = {h: np.asarray(value[h]) for h in hands}
    return out


def episode_from_rollout(sim, hand: str | None = None, task: str = "", source: str = "") -> Episode:
    """A ``sim_bridge.rollout.SimRollout`` as an :class:`Episode`: its frames, camera-frame joints with K, the
    rendered joints as state, the commanded ones as action, and camera-from-hand-root from its recorded poses.

    A pair rollout gives a two-hand episode, left hand first (its LeRobot state is the left hand's joints then the
    right's, named per hand); ``hand`` renames the one hand of a single-hand rollout and must be None for a pair.
    """
    per_hand = rollout_hands(sim)
    if len(per_hand["q"]) > 1:
        if hand is not None:
            raise ValueError(f"hand: a pair rollout ({join_names(list(per_hand['q']))}) names its own hands; "
                             f"leave hand=None, got {hand!r}")
    elif hand is not None:
        per_hand = {f: {hand: next(iter(v.values()))} for f, v in per_hand.items()}
    T_cam_world = invert_transform(np.asarray(sim.T_world_cam))
    T_cam_root = {h: T_cam_world @ T for h, T in per_hand["T_world_hand"].items()}
    joints = sim.joints
    if len(per_hand["q"]) > 1:
        joints = joints.replace(embodiment=join_names(list(per_hand["q"])))
    return Episode(frames=np.asarray(sim.frames), joints=joints, q=per_hand["q"], action=per_hand["q_target"],
                   task=task, source=source, T_cam_root=T_cam_root)
