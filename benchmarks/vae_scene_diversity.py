"""Is the tiny VAE limited by steps or by how many scenes it has seen? Same steps, two training sets.

The tiny-sim training clips come 8 per compiled scene (``dexworld synth --episodes-per-scene 8``, the default): 150
clips per hand are ~19 scene structures (table colour and texture, objects) per hand, appearance (lights, tints,
camera) redrawn per clip. This continues one trained VAE for the same number of steps (``train_vae``, the preset's
settings) on (a) those clips and (b) clips with one scene each (``--episodes-per-scene 1``), and scores the
reconstruction PSNR of full 17-frame clips on held-out sets: the original held-out clips (8 per hand, one scene per
hand), held-out clips with one scene each, and the ``make demo`` rollouts (5 motions × 2 hands, seed 0). Baseline:
the VAE it started from.

    .venv/bin/python benchmarks/vae_scene_diversity.py --vae worldmodel/checkpoints/tiny-sim/vae \\
        --arm per8=outputs/tiny_sim/data/train --arm per1=outputs/tiny_sim/data/train_scenes \\
        --steps 1500 --long-steps 150 --out outputs/vae_diversity          # one arm per process: add --only ARM

Trained VAEs go to ``--out/<arm>/vae`` (kept; a rerun only scores them) and the figures to ``--out/<arm>/psnr.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HELDOUT = {"heldout (1 scene/hand)": "outputs/tiny_sim/data/heldout",
           "heldout_scenes (1 scene/clip)": "outputs/tiny_sim/data/heldout_scenes"}


def demo_clips() -> list[np.ndarray]:
    """The frames of ``dexworld demo``'s physics rollouts (seed 0) for every built-in motion on both hands."""
    from dexworld.demo import DemoConfig, demo_hands, retargeted, simulate

    out = []
    for hand in ("inspire_right", "dex3_right"):
        embs = demo_hands(hand)
        for motion in ("power_grasp", "pinch", "point", "wave", "open"):
            cfg = DemoConfig(embodiment=hand, motion=motion)
            out.append(simulate(cfg, embs, retargeted(cfg, embs)).frames)
    return out


@torch.no_grad()
def score(vae, demo: list[np.ndarray]) -> dict:
    """Mean reconstruction PSNR of full clips of each held-out set and of the demo rollouts."""
    import h5py

    from benchmarks.tiny_sim_eval import vae_reconstruction
    from worldmodel.evaluation.metrics import psnr

    vae.eval()
    res = {}
    for name, folder in HELDOUT.items():
        vals = []
        for p in sorted(Path(folder).glob("*/*.h5")):
            with h5py.File(p) as f:
                frames = f["frames"][:]
            vals.append(psnr(vae_reconstruction(vae, frames), frames))
        res[name] = float(np.mean(vals))
    res["demo rollouts"] = float(np.mean([psnr(vae_reconstruction(vae, f), f) for f in demo]))
    return res


def main() -> None:
    from diffusers import AutoencoderKLWan

    from embodiments.io_utils import atomic_path
    from worldmodel.training.vae import continue_vae

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vae", type=Path, required=True, help="trained VAE folder every arm starts from")
    ap.add_argument("--arm", action="append", default=[], help="NAME=CLIPS_FOLDER (repeatable)")
    ap.add_argument("--only", default=None, help="train/score only this arm (or 'start' for the starting VAE)")
    ap.add_argument("--steps", type=int, default=1500, help="5-frame window steps")
    ap.add_argument("--long-steps", type=int, default=150, help="17-frame window steps")
    ap.add_argument("--lr", type=float, default=5e-4, help="peak LR of the continuation (cosine)")
    ap.add_argument("--out", type=Path, default=Path("outputs/vae_diversity"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    demo = demo_clips()
    arms = dict(s.split("=", 1) for s in a.arm)
    names = ["start", *arms]
    for name in names if a.only is None else [a.only]:
        done = a.out / name / "psnr.json"
        if done.exists():
            continue
        if name == "start":
            vae = AutoencoderKLWan.from_pretrained(a.vae)
        elif (a.out / name / "vae" / "config.json").exists():
            vae = AutoencoderKLWan.from_pretrained(a.out / name / "vae")
        else:
            (a.out / name).mkdir(parents=True, exist_ok=True)
            vae = continue_vae(a.vae, a.out / name / "vae", arms[name], log=a.out / name / "vae_loss.jsonl",
                               steps=a.steps, long_steps=a.long_steps, lr=a.lr, progress=False)
        res = {"arm": name, "data": arms.get(name), "steps": 0 if name == "start" else a.steps,
               "long_steps": 0 if name == "start" else a.long_steps, "psnr": score(vae, demo)}
        done.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(done) as tmp:
            tmp.write_text(json.dumps(res, indent=1))
    rows = [json.loads(p.read_text()) for p in sorted(a.out.glob("*/psnr.json"))]
    base = next((r for r in rows if r["arm"] == "start"), None)
    print(f"{'arm':<8} {'data':<40} " + " ".join(f"{k:>30}" for k in rows[0]["psnr"]))
    for r in rows:
        cells = [f"{v:6.2f} dB" + (f" ({v - base['psnr'][k]:+.2f})" if base and r is not base else "")
                 for k, v in r["psnr"].items()]
        print(f"{r['arm']:<8} {str(r['data']):<40} " + " ".join(f"{c:>30}" for c in cells))


if __name__ == "__main__":
    main()
