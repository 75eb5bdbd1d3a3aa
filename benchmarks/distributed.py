"""Tiny-preset training: 2 CPU processes × batch 1 (gloo, torchrun; DDP and FSDP) against 1 process × batch 2.

Prints the median step time, the peak RSS per process and the ratio 2-process / 1-process. All runs go through
``torchrun -m dexworld.cli train`` in subprocesses (same data, seeds and global batch), so they are comparable.
Usage: .venv/bin/python benchmarks/distributed.py [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(tmp: Path, nproc: int, batch: int, steps: int, *extra: str) -> dict:
    out = tmp / f"run_{nproc}x{batch}{''.join(extra)}"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
           str(_port()), "-m", "dexworld.cli", "train", "--config", str(tmp / "cfg.json"), "--data",
           str(tmp / "clips"), "--out", str(out), "--batch-size", str(batch), "--steps", str(steps), *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    recs = [json.loads(ln) for ln in (out / "loss.jsonl").read_text().splitlines()]
    return {"step_s": statistics.median(r["seconds"] for r in recs[1:]), "wall_s": wall,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "losses": [r["loss"] for r in recs]}


def main() -> None:
    from _wm_helpers import CONTROL, SMALL_TINY, make_frames, make_joints

    from embodiments.clip import write_clip

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for i in range(8):
            write_clip(tmp / "clips" / f"c{i}.h5", make_frames(5, seed=i), make_joints(5, seed=i), prompt=f"g {i}")
        (tmp / "cfg.json").write_text(json.dumps({"tiny": SMALL_TINY, "control": CONTROL, "lora_rank": 4,
                                                  "checkpoint_every": 0, "progress": False}))
        base = run(tmp, 1, 2, args.steps)  # baseline first: RUSAGE_CHILDREN is a running maximum
        two = run(tmp, 2, 1, args.steps)
        fsdp = run(tmp, 2, 1, args.steps, "--fsdp")
    print(f"baseline 1 process x batch 2 : median step {base['step_s'] * 1e3:.0f} ms, wall {base['wall_s']:.1f} s, "
          f"peak RSS {base['peak_rss_mib']:.0f} MiB")
    print(f"2 processes x batch 1 (gloo) : median step {two['step_s'] * 1e3:.0f} ms, wall {two['wall_s']:.1f} s, "
          f"peak RSS (max so far) {two['peak_rss_mib']:.0f} MiB")
    print(f"2 processes x batch 1, FSDP  : median step {fsdp['step_s'] * 1e3:.0f} ms, wall {fsdp['wall_s']:.1f} s")
    print(f"step-time ratio 2-proc / 1-proc: DDP {two['step_s'] / base['step_s']:.2f}, "
          f"FSDP {fsdp['step_s'] / base['step_s']:.2f}")
    for name, r in (("DDP", two), ("FSDP", fsdp)):
        print(f"max |loss difference| {name} vs baseline over {args.steps} steps: "
              f"{max(abs(a - b) for a, b in zip(base['losses'], r['losses'], strict=True)):.2e}")


if __name__ == "__main__":
    main()
