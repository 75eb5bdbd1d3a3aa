"""Is the tiny VAE limited by steps or by how many scenes it has seen? Same steps, two training sets.

The tiny-sim training clips come 8 per compiled scene (``dexworld synth --episodes-per-scene 8``, the default): 150
clips per hand are ~19 scene structures (table colour and texture, objects) per hand, appearance (lights, tints,
camera) redrawn per clip. This continues one trained VAE for the same number of steps (``train_vae``, the preset's
settings) on (a) those clips and (b) clips with one scene each (``--episodes-per-scene 1``), and scores the
reconstruction PSNR of full 17-frame clips on held-out sets: the original held-out clips (8 per hand, one scene per
hand), held-out clips with one scene each, and the ``make demo`` rollouts (5 motions × 2 hands, seed 0). Baseline:
the VAE it started from.

    .venv/bin/python benchmarks/vae_scene_diversity.py --vae outputs/tiny_sim/run/base/vae \\
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


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


@torch.no_grad()
def reconstruct(vae, frames: np.ndarray) -> np.ndarray:
    """The VAE's reconstruction (posterior mean) of uint8 frames (T, H, W, 3), in [0, 1]."""
    x = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
    y = vae.decode(vae.encode(x).latent_dist.mode()).sample[0].permute(1, 2, 3, 0).clamp(-1, 1)
    return ((y + 1) / 2).numpy()


def demo_clips() -> list[np.ndarray]:
    """The frames of ``dexworld demo``'s physics rollouts (seed 0) for every built-in motion on both hands."""
    import embodiments
    import retarget
    import sim_bridge
    from dexworld.demo import wrist_path
    from dexworld.scene_presets import SCENE_PRESETS

    out = []
    for hand in ("inspire_right", "dex3_right"):
        emb = embodiments.get(hand)
        for motion in ("power_grasp", "pinch", "point", "wave", "open"):
            human = embodiments.human_motion(motion, side=emb.side, fps=16.0, frames=17, seed=0)
            q = retarget.Retargeter(f"mano_{emb.side}", hand, "dexpilot").retarget(human)
            scene = sim_bridge.build_scene(emb, sim_bridge.SceneConfig(**SCENE_PRESETS["tiny-sim"], hand_style="auto"),
                                           seed=0)
            sim = sim_bridge.rollout(emb, q, wrist_path(emb, 17), mode="physics", size=(128, 128), seed=0, fps=16.0,
                                     scene=scene)
            out.append(sim.frames)
    return out


def score(vae, demo: list[np.ndarray]) -> dict:
    import h5py

    vae.eval()
    res = {}
    for name, folder in HELDOUT.items():
        vals = []
        for p in sorted(Path(folder).glob("*/*.h5")):
            with h5py.File(p) as f:
                frames = f["frames"][:]
            vals.append(psnr(reconstruct(vae, frames), frames / 255.0))
        res[name] = float(np.mean(vals))
    res["demo rollouts"] = float(np.mean([psnr(reconstruct(vae, f), f / 255.0) for f in demo]))
    return res


def main() -> None:
    from diffusers import AutoencoderKLWan

    from embodiments.io_utils import atomic_dir
    from worldmodel.training.vae import VaeTrainConfig, train_vae
    from worldmodel.wan.presets import TINY_SIM_DEFAULTS, TRAIN_DEFAULTS

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
            vae = AutoencoderKLWan.from_pretrained(a.vae)
            opts = {**TRAIN_DEFAULTS["tiny-sim"]["vae"], "steps": a.steps, "long_steps": a.long_steps, "lr": a.lr,
                    "progress": False}
            (a.out / name).mkdir(parents=True, exist_ok=True)
            d = TINY_SIM_DEFAULTS
            train_vae(vae, arms[name], d.height, d.width, VaeTrainConfig.from_dict(opts),
                      log=a.out / name / "vae_loss.jsonl")
            with atomic_dir(a.out / name / "vae") as tmp:
                vae.save_pretrained(tmp)
        res = {"arm": name, "data": arms.get(name), "steps": 0 if name == "start" else a.steps,
               "long_steps": 0 if name == "start" else a.long_steps, "psnr": score(vae, demo)}
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps(res, indent=1))
    rows = [json.loads(p.read_text()) for p in sorted(a.out.glob("*/psnr.json"))]
    base = next((r for r in rows if r["arm"] == "start"), None)
    print(f"{'arm':<8} {'data':<40} " + " ".join(f"{k:>30}" for k in rows[0]["psnr"]))
    for r in rows:
        cells = [f"{v:6.2f} dB" + (f" ({v - base['psnr'][k]:+.2f})" if base and r is not base else "")
                 for k, v in r["psnr"].items()]
        print(f"{r['arm']:<8} {str(r['data']):<40} " + " ".join(f"{c:>30}" for c in cells))


if __name__ == "__main__":
    main()
