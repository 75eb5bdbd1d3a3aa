"""Continue a run's stage-1 VAE on long windows only (``VaeTrainConfig`` phase 1), in place in ``RUN/base/vae``.

What ``dexworld train --preset tiny-sim`` does after its short-window phase, for a run whose base was written
before the long-window phase existed (the shipped tiny-sim run):

    .venv/bin/python scripts/vae_long_windows.py --run outputs/tiny_sim/run --data outputs/tiny_sim/data/train \
        --steps 400
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    from dexworld.argtypes import positive_int

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="run folder whose base/vae is continued")
    ap.add_argument("--data", required=True, help="training clips")
    ap.add_argument("--steps", type=positive_int, required=True, help="long-window steps")
    args = ap.parse_args(argv)
    from worldmodel.training.vae import continue_vae

    folder = args.run / "base" / "vae"
    if not (folder / "config.json").is_file():
        raise SystemExit(f"--run {args.run}: no stage-1 VAE at {folder} (expected a tiny-sim run folder)")
    continue_vae(folder, folder, args.data, log=args.run / "vae_loss.jsonl", steps=0, long_steps=args.steps)
    print(json.dumps({"continued": str(folder), "long_steps": args.steps}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
