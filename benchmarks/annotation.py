"""Benchmark: the annotation pipeline's hot paths, each against a named baseline run in the same process.

* tracking: frames per second of ``track`` on a long synthetic two-hand stream (with flicker and dropouts);
* frame reading: ``read_frames`` (decode once, in order, keep the wanted frames) vs the naive per-frame random
  access ``imageio.v3.imread(path, index=i)`` for every frame of overlapping clips;
* videos in parallel: ``annotate_videos(workers=W)`` vs ``workers=1`` on a dry run (decisions only).

    .venv/bin/python benchmarks/annotation.py [--frames 100000] [--videos 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from sim_bridge.annotation import AnnotationConfig, VideoDetections, annotate_videos, track
from sim_bridge.annotation.pipeline import clip_starts, read_frames, video_plugin


def synthetic(T: int, seed: int, video_id: str = "v") -> VideoDetections:
    """Two hands on smooth random paths, 5 % dropouts, 2 % label flips, 21 joints each (wrist + offsets)."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None]
    wrists = np.stack([np.c_[x + 0.05 * np.sin(t / 40 + x), 0.05 * np.cos(t / 25 + x), 0.45 + 0 * t]
                       for x in (-0.12, 0.12)], 1)  # (T, 2, 3)
    keep = rng.random((T, 2)) > 0.05
    frame, side = np.nonzero(keep)
    labels = np.where(rng.random(side.size) < 0.02, 1 - side, side)
    offsets = 0.02 * rng.standard_normal((21, 3))
    offsets[0] = 0
    joints = wrists[frame, side][:, None] + offsets
    D = frame.size
    return VideoDetections(video=f"{video_id}.mp4", fps=30.0, K=np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]]),
                           num_frames=T, frame=frame, handedness=labels.astype(np.int8),
                           handedness_conf=np.ones(D, np.float32), bbox=np.zeros((D, 4), np.float32),
                           joints=joints.astype(np.float32), mano={}, video_id=video_id)


def bench_tracking(frames: int) -> None:
    det = synthetic(frames, 0)
    t0 = time.perf_counter()
    tr = track(det.translations(), det.frame, det.handedness, det.num_frames)
    dt = time.perf_counter() - t0
    print(f"tracking: {frames} frames, {det.num_detections} detections in {dt:.2f} s = {frames / dt:,.0f} frames/s "
          f"(swaps taken {tr.swaps}, refused {tr.swaps_blocked})")


def bench_reading(tmp: Path) -> None:
    import imageio.v3 as iio

    T, clip, stride = 300, 81, 40
    rng = np.random.default_rng(0)
    path = tmp / "bench.mp4"
    iio.imwrite(path, rng.integers(0, 255, (T, 256, 256, 3), dtype=np.uint8), plugin=video_plugin(), codec="libx264",
                fps=30)
    cfg = AnnotationConfig(clip_frames=clip, clip_stride=stride)
    wanted = [s + i for s in clip_starts(T, cfg) for i in range(clip)]  # overlapping clips: frames repeat
    t0 = time.perf_counter()
    got = {i: f for i, f in read_frames(path, wanted)}
    ours = time.perf_counter() - t0
    n_naive = 20  # the baseline is slow; time a sample of its reads and scale to all of them
    t0 = time.perf_counter()
    for i in wanted[:: len(wanted) // n_naive][:n_naive]:
        f = iio.imread(path, index=i, plugin=video_plugin())
    naive = (time.perf_counter() - t0) / n_naive * len(wanted)
    assert np.array_equal(f, got[i])
    print(f"frame reading: {len(wanted)} clip frames ({len(set(wanted))} distinct) of a {T}-frame 256x256 video: "
          f"read_frames {ours:.2f} s vs per-frame imread(index=i) ≈{naive:.1f} s → {naive / ours:.1f}x")


def bench_pool(videos: int, frames: int, workers: int, tmp: Path) -> None:
    dets = [synthetic(frames, s, f"v{s}") for s in range(videos)]
    cfg = AnnotationConfig()
    t0 = time.perf_counter()
    seq = annotate_videos(dets, tmp, cfg, workers=1, write=False)
    t_seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    par = annotate_videos(dets, tmp, cfg, workers=workers, write=False)
    t_par = time.perf_counter() - t0
    assert [r.kept for r in seq] == [r.kept for r in par]
    print(f"videos in parallel: {videos} videos × {frames} frames (dry run): workers=1 {t_seq:.2f} s, "
          f"workers={workers} {t_par:.2f} s (process start-up included) → {t_seq / t_par:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--video-frames", type=int, default=20_000)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        bench_tracking(a.frames)
        bench_reading(Path(d))
        bench_pool(a.videos, a.video_frames, a.workers, Path(d))


if __name__ == "__main__":
    main()
