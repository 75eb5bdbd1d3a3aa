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


def encode_mp4(path: Path, frames: np.ndarray, fps: int = FPS, codec: str = "libaom-av1") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"cpu-used": "8"} if codec == "libaom-av1" else {}
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


def write_he_copy(root: Path, episodes: list[dict[str, np.ndarray]], robot_type: str = "g1",
                  category: str = "basic_manipulation", task: str = "pick_up_the_cup",
                  description: str = "Pick up the cup") -> Path:
    """A Humanoid Everyday LeRobot copy as their ``scripts/he2lerobot.py`` writes it: codebase_version "2.0.1",
    shapes [-1], ``video_info``, videos in ``videos/chunk-000/egocentric/`` (libx264), integer task references,
    inclusive ``dataset_to_index``, empty per-episode stats, per-episode ``index``. ``episodes[e]`` holds
    ``observation.arm_joints`` / ``leg_joints`` / ``hand_joints`` and ``action`` (T, n)."""
    from datasets import Array2D, Dataset, Features, Sequence, Value

    vec = ("observation.imu.quaternion", "observation.imu.accelerometer", "observation.imu.gyroscope",
           "observation.imu.rpy", "observation.odometry.position", "observation.odometry.velocity",
           "observation.odometry.rpy", "observation.odometry.quat", "observation.arm_joints",
           "observation.leg_joints", "observation.hand_joints", "action")
    hf = Features({"observation.depth.egocentric": Array2D(dtype="float32", shape=(480, 640)),
                   "observation.lidar": Sequence(Sequence(Value("float32"))),
                   **{k: Sequence(Value("float32")) for k in vec},
                   "observation.tactile": Array2D(dtype="float32", shape=(-1, 4)),
                   "timestamp": Value("float32"), "frame_index": Value("int64"), "episode_index": Value("int64"),
                   "index": Value("int64"), "task_index": Value("int64"), "next.done": Value("bool")})
    (root / "meta").mkdir(parents=True)
    cursor, rows = 0, []
    for e, ep in enumerate(episodes):
        T = len(ep["action"])
        recs = []
        for i in range(T):
            rec = {k: [0.0] * (4 if k.endswith(("quaternion", "quat")) else 3) for k in vec}
            rec.update({k: np.asarray(v[i], np.float32).tolist() for k, v in ep.items()})
            rec.update({"observation.depth.egocentric": np.full((480, 640), 800.0, np.float32),
                        "observation.lidar": [[1.0, 2.0, 3.0]], "observation.tactile": [[0.0, 1.0, 2.0, 3.0]],
                        "timestamp": i / FPS, "frame_index": i, "episode_index": e, "index": i, "task_index": 0,
                        "next.done": i == T - 1})
            recs.append(rec)
        path = root / f"data/chunk-000/episode_{e:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        Dataset.from_list(recs, features=hf).to_parquet(str(path))
        frames = np.stack([np.full((H, W, 3), 30 + 20 * t + 5 * e, np.uint8) for t in range(T)])
        encode_mp4(root / f"videos/chunk-000/egocentric/episode_{e:06d}.mp4", frames, codec="libx264")
        rows.append({"episode_index": e, "tasks": [0], "length": T, "dataset_from_index": cursor,
                     "dataset_to_index": cursor + T - 1, "robot_type": robot_type, "instruction": description})
        cursor += T
    shape = {k: [-1] for k in vec} | {k: [4] for k in ("observation.imu.quaternion", "observation.odometry.quat")}
    feats = {"observation.images.egocentric": {
        "dtype": "video", "shape": [480, 640, 3], "names": ["height", "width", "channel"],
        "video_info": {"video.fps": float(FPS), "video.codec": "h264", "video.pix_fmt": "yuv420p",
                       "video.is_depth_map": False, "has_audio": False}},
        "observation.depth.egocentric": {"dtype": "float32", "shape": [480, 640], "names": ["height", "width"]},
        "observation.lidar": {"dtype": "float32", "shape": [-1, 3]},
        **{k: {"dtype": "float32", "shape": shape.get(k, [3])} for k in vec},
        "observation.tactile": {"dtype": "float32", "shape": [-1, -1]},
        "timestamp": {"dtype": "float32", "shape": [1]}, "frame_index": {"dtype": "int64", "shape": [1]},
        "episode_index": {"dtype": "int64", "shape": [1]}, "index": {"dtype": "int64", "shape": [1]},
        "next.done": {"dtype": "bool", "shape": [1]}, "task_index": {"dtype": "int64", "shape": [1]}}
    for k in ("observation.arm_joints", "observation.leg_joints", "observation.hand_joints", "action"):
        feats[k]["shape"] = [-1]
    info = {"codebase_version": "2.0.1", "robot_type": robot_type, "total_episodes": len(episodes),
            "total_frames": cursor, "total_tasks": 1, "total_videos": len(episodes), "total_chunks": 1,
            "chunks_size": 1000, "fps": FPS,
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/egocentric/episode_{episode_index:06d}.mp4",
            "features": feats}
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    (root / "meta/tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": f"{category}/{task}",
                                                       "category": category, "description": description}) + "\n")
    (root / "meta/episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "meta/episodes_stats.jsonl").write_text("".join(
        json.dumps({"episode_index": r["episode_index"], "stats": {}}) + "\n" for r in rows))
    (root / "meta/stats.json").write_text(json.dumps({robot_type: {"action_min": [], "action_max": []}}))
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Relative path → (size, mtime_ns) of every file under ``root``: to check a source is left untouched."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file()}
