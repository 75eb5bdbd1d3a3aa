"""Tiny LeRobot v2.1 datasets written file by file in the layout of Unitree's ``unitree_IL_lerobot`` (v2.1 has no
writer in lerobot 0.6): meta/info.json, episodes.jsonl, tasks.jsonl, episodes_stats.jsonl, one parquet and one mp4
per episode and camera. Videos are AV1 (libaom-av1 through PyAV), as Unitree's datasets are."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np

H, W = 96, 128  # 640×480 scaled by 0.2: the robot's default K scales with it
FPS = 30
# Arm pose (Unitree order, left then right) that puts both G1 hands in front of the head camera.
ARM = np.array([-0.5, 0.0, 0.0, 1.2, 0.0, 0.0, 0.0, -0.5, 0.0, 0.0, 1.2, 0.0, 0.0, 0.0])
ARM_NAMES = [f"k{s}{p}" for s in ("Left", "Right") for p in
             ("ShoulderPitch", "ShoulderRoll", "ShoulderYaw", "Elbow", "WristRoll", "WristPitch", "WristYaw")]
INSPIRE_NAMES = [f"k{s}Hand{p}" for s in ("Left", "Right") for p in
                 ("Pinky", "Ring", "Middle", "Index", "ThumbBend", "ThumbRotation")]
DEX3_NAMES = ([f"kLeftHand{p}" for p in ("Thumb0", "Thumb1", "Thumb2", "Middle0", "Middle1", "Index0", "Index1")]
              + [f"kRightHand{p}" for p in ("Thumb0", "Thumb1", "Thumb2", "Index0", "Index1", "Middle0", "Middle1")])


def encode_mp4(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libaom-av1", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"cpu-used": "8"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _stats(x: np.ndarray) -> dict:
    return {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(),
            "std": x.std(0).tolist(), "count": [len(x)]}


def unitree_columns(hand_values: list[np.ndarray], nested: bool = True, arm: np.ndarray = ARM):
    """unitree_IL_lerobot columns: state = action = 14 arm joints then the hand values; and their feature specs."""
    names = ARM_NAMES + (INSPIRE_NAMES if hand_values[0].shape[1] == 12 else DEX3_NAMES)
    vec = {"dtype": "float32", "shape": (len(names),), "names": [names] if nested else names}
    eps = []
    for e, hv in enumerate(hand_values):
        arm_t = arm + 0.02 * np.sin(np.arange(len(hv))[:, None] / 3 + e)
        state = np.concatenate([arm_t, hv], 1).astype(np.float32)
        eps.append({"observation.state": state, "action": state})
    return eps, {"observation.state": vec, "action": dict(vec)}


def write_v21(root: Path, episodes: list[dict[str, np.ndarray]], specs: dict, robot_type: str = "Unitree_G1_Dex3",
              cameras: tuple[str, ...] = ("cam_left_high", "cam_right_high"),
              tasks: tuple[str, ...] = ("pick the cube",)) -> Path:
    """A v2.1 dataset of ``episodes`` (feature → (T, n) float32), features ``specs``; camera ``c`` (index ci) of
    episode e shows frames of constant value 30 + 20·t + 5·e + 60·ci."""
    from datasets import Dataset
    from lerobot.datasets.feature_utils import get_hf_features_from_features

    scal = {k: {"dtype": t, "shape": (1,), "names": None} for k, t in
            (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"), ("index", "int64"),
             ("task_index", "int64"))}
    video = {f"observation.images.{c}": {
        "dtype": "video", "shape": (H, W, 3), "names": ["height", "width", "channel"],
        "info": {"video.fps": float(FPS), "video.height": H, "video.width": W, "video.channels": 3,
                 "video.codec": "av1", "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "has_audio": False}}
        for c in cameras}
    feats = {**specs, **video, **scal}
    hf = get_hf_features_from_features({k: v for k, v in feats.items() if v["dtype"] != "video"})
    (root / "meta").mkdir(parents=True)
    index = 0
    rows, stats = [], []
    for e, ep in enumerate(episodes):
        T = len(next(iter(ep.values())))
        task = e % len(tasks)
        cols = {**ep, "timestamp": np.arange(T, dtype=np.float32) / FPS, "frame_index": np.arange(T),
                "episode_index": np.full(T, e), "index": np.arange(index, index + T), "task_index": np.full(T, task)}
        path = root / f"data/chunk-000/episode_{e:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        Dataset.from_dict({k: list(v) for k, v in cols.items()}, features=hf).to_parquet(str(path))
        ep_stats = {k: _stats(np.asarray(v, np.float64).reshape(T, -1)) for k, v in cols.items()}
        for ci, c in enumerate(cameras):
            frames = np.stack([np.full((H, W, 3), 30 + 20 * t + 5 * e + 60 * ci, np.uint8) for t in range(T)])
            encode_mp4(root / f"videos/chunk-000/observation.images.{c}/episode_{e:06d}.mp4", frames)
            px = frames.reshape(-1, 3) / 255.0
            ep_stats[f"observation.images.{c}"] = {k: np.reshape(v, (3, 1, 1)).tolist() if k != "count" else [T]
                                                   for k, v in _stats(px).items()}
        rows.append({"episode_index": e, "tasks": [tasks[task]], "length": T})
        stats.append({"episode_index": e, "stats": ep_stats})
        index += T
    info = {"codebase_version": "v2.1", "robot_type": robot_type, "total_episodes": len(episodes),
            "total_frames": index, "total_tasks": len(tasks), "total_videos": len(episodes) * len(cameras),
            "total_chunks": 1, "chunks_size": 1000, "fps": FPS, "splits": {"train": f"0:{len(episodes)}"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": {k: {**v, "shape": list(v["shape"])} for k, v in feats.items()}}
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    (root / "meta/episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "meta/tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n"
                                                   for i, t in enumerate(tasks)))
    (root / "meta/episodes_stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stats))
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Relative path → (size, mtime_ns) of every file under ``root``: to check a source is left untouched."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file()}
