"""Benchmark: ``imagine``'s batched sampling (``HandControlPipeline.sample_batch``, B items per call) vs the
one-at-a-time loop (one ``pipe(...)`` call per item), on the shipped tiny-sim model, in the same process.

    .venv/bin/python benchmarks/imagine.py [--items 8] [--batches 1 2 4 8] [--size 64] [--frames 9] [--steps 4]
                                           [--threads 2] [--device cpu|cuda] [--guidance 1.0] [--clock wall|cpu]

Each configuration samples the same ``--items`` work items (different images, joints and seeds). Prints
episodes/hour for the loop and for every B, the ratio against the loop, and peak memory: on CUDA
``torch.cuda.max_memory_allocated`` (reset before each run); on CPU the peak resident set size above the RSS before
the run, sampled by a thread every millisecond (/proc/self/statm). Frames are checked against the loop's
(max abs difference), so a faster configuration cannot be a wrong one. The loop runs before and after the batched
configurations and its better time is the baseline. ``--clock cpu`` times with the process's CPU time
(time.process_time), which other jobs on a shared machine disturb far less than elapsed time; use it with
``--threads 1``.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np
import torch

from embodiments.sparse import SparseJoints
from worldmodel.wan.pipeline import HandControlPipeline


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory a block adds: CUDA allocator peak, or sampled RSS above the start on CPU."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.peak = 0

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        self.base, self.peak, self._stop = _rss(), 0, threading.Event()

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, _rss() - self.base)
                time.sleep(0.001)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self._stop.set()
            self._thread.join()


def work_items(n: int, frames: int, size: int) -> tuple[list[np.ndarray], list[SparseJoints], list[int]]:
    """``n`` items: a random-ish image, a hand-sized cloud of joints drifting in front of the camera, a seed."""
    K = np.array([[size * 0.9, 0, size / 2], [0, size * 0.9, size / 2], [0, 0, 1.0]])
    images, joints = [], []
    for i in range(n):
        rng = np.random.default_rng(i)
        yy, xx = np.mgrid[0:size, 0:size]
        images.append(np.stack([(xx * 3 + 30 * i) % 256, (yy * 3) % 256, np.full_like(xx, 90)], -1).astype(np.uint8))
        base = rng.normal([0.0, 0.0, 0.45], 0.04, (42, 3))
        pos = base[None] + np.linspace(0, 0.05, frames)[:, None, None] * rng.normal(size=3)
        joints.append(SparseJoints(pos, np.ones((frames, 42), bool), K=K, frame="camera", fps=16.0))
    return images, joints, list(range(n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--guidance", type=float, default=None, help="default: the model's (tiny-sim: 1, no CFG)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = HandControlPipeline.from_pretrained("tiny-sim").to(args.device)
    pipe.set_progress_bar_config(disable=True)
    images, joints, seeds = work_items(args.items, args.frames, args.size)
    kw = dict(height=args.size, width=args.size, num_inference_steps=args.steps, guidance_scale=args.guidance)
    pipe.sample_batch(images[:1], joints[:1], seeds=seeds[:1], **kw)  # warm-up

    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    def timed(fn):
        with PeakMemory(args.device) as mem:
            t0 = clock()
            frames = fn()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = clock() - t0
        return frames, dt, mem.peak

    def loop():
        return [pipe(images[i], joints[i], seed=seeds[i], progress=False, **kw).frames for i in range(args.items)]

    ref, t_loop, m_loop = timed(loop)
    rows = []
    for B in args.batches:
        def run(B=B):
            out = []
            for s in range(0, args.items, B):
                out += [o.frames for o in pipe.sample_batch(images[s:s + B], joints[s:s + B], seeds=seeds[s:s + B],
                                                            **kw)]
            return out
        frames, dt, mem = timed(run)
        diff = max(float(np.abs(a - b).max()) for a, b in zip(frames, ref, strict=True))
        rows.append((B, dt, mem, diff))
    _, t_again, m_again = timed(loop)
    t_loop, m_loop = min(t_loop, t_again), max(m_loop, m_again)
    eph_loop = args.items / t_loop * 3600
    print(f"tiny-sim {args.size}² × {args.frames} frames, {args.steps} steps, {args.items} items, "
          f"{args.threads} thread(s) on {args.device}, {args.clock} clock")
    print(f"{'config':<12} {'episodes/h':>11} {'vs loop':>8} {'peak MiB':>9} {'max |Δ| vs loop':>16}")
    print(f"{'loop (B=1)':<12} {eph_loop:>11.0f} {1.0:>7.2f}× {m_loop / 2**20:>9.0f} {0.0:>16.1e}")
    for B, dt, mem, diff in rows:
        eph = args.items / dt * 3600
        print(f"{f'B={B}':<12} {eph:>11.0f} {eph / eph_loop:>7.2f}× {mem / 2**20:>9.0f} {diff:>16.1e}")


if __name__ == "__main__":
    main()
