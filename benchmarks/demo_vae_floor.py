"""The VAE's floor on the default demo clip: probe joint error, PSNR and hand region of each VAE's reconstruction.

A generated video can be no sharper than its VAE's reconstruction of the simulated rollout, so this scores that
reconstruction (``dexworld demo``'s default motion, hand and seed; frame 0 excluded, the shipped probe) for every
``--vae``. With ``--picture`` it also writes frames 4 and 12 as simulated | reconstruction | imagined (the demo's
control-on video from ``--checkpoint``), labelled — docs/seventh_attempt_demo.png. With ``--all`` it scores every
clip of ``benchmarks/demo_variance.py`` (5 motions × 2 hands × 3 seeds) and prints each VAE's mean ± std and in how
many clips it beats the first ``--vae``: one clip says little about which VAE a new user's demo is better on.

    MUJOCO_GL=egl .venv/bin/python benchmarks/demo_vae_floor.py --vae worldmodel/checkpoints/tiny-sim/vae \\
        outputs/vae7/w8/vae
    MUJOCO_GL=egl .venv/bin/python benchmarks/demo_vae_floor.py --vae outputs/vae7/w8/vae \\
        --checkpoint outputs/candW --picture docs/seventh_attempt_demo.png
    MUJOCO_GL=egl .venv/bin/python benchmarks/demo_vae_floor.py --all --vae worldmodel/checkpoints/tiny-sim/vae \\
        outputs/vae_anchor4/vae
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# benchmarks/retarget.py would shadow the retarget package: keep this folder off the path until it is imported.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import AutoencoderKLWan  # noqa: E402

from dexworld import demo  # noqa: E402
from embodiments.io_utils import atomic_path  # noqa: E402
from worldmodel.evaluation.report import evaluate  # noqa: E402
from worldmodel.evaluation.video import side_by_side, to_uint8  # noqa: E402

sys.path.append(str(HERE))
from demo_variance import HANDS, MOTIONS, SEEDS  # noqa: E402
from tiny_sim_eval import vae_reconstruction  # noqa: E402


def demo_rollout(cfg: demo.DemoConfig):
    """The demo's physics rollout for ``cfg``, the probe that reads its hand, and the hands it rolled out."""
    embs = demo.demo_hands(cfg.embodiment)
    return demo.simulate(cfg, embs, demo.retargeted(cfg, embs)), demo.probe_for(cfg.embodiment), embs


def score(vae: AutoencoderKLWan, sim, probe):
    """The VAE's reconstruction of the rollout (uint8) and its report against it, frame 0 excluded."""
    rec = to_uint8(vae_reconstruction(vae, sim.frames))
    return rec, evaluate(rec, sim, probe=probe, exclude_first=True)


def floor_over_clips(vaes: dict[str, AutoencoderKLWan], configs: list[demo.DemoConfig]) -> dict[str, np.ndarray]:
    """Probe joint error (px), PSNR and hand-region PSNR (dB) of each VAE's reconstruction, one row per clip."""
    from tqdm import tqdm

    rows = {path: [] for path in vaes}
    for cfg in tqdm(configs, desc="demo clips", unit="clip"):
        sim, probe, _ = demo_rollout(cfg)
        for path, vae in vaes.items():
            r = score(vae, sim, probe)[1]
            rows[path].append((r.keypoints["mean_px"], r.psnr, r.hand_psnr))
    return {path: np.array(r) for path, r in rows.items()}


def print_floor(table: dict[str, np.ndarray]) -> None:
    """Mean ± std per VAE over the clips, and the clips where it is closer to the joints than the first VAE."""
    base = next(iter(table.values()))
    for i, (path, t) in enumerate(table.items()):
        wins = int((t[:, 0] < base[:, 0]).sum())
        versus = f"; closer than the first in {wins} of {len(t)} (paired {np.mean(t[:, 0] - base[:, 0]):+.2f} px)"
        print(f"{path}: joint error {t[:, 0].mean():.2f} ± {t[:, 0].std():.2f} px, PSNR {t[:, 1].mean():.2f} ± "
              f"{t[:, 1].std():.2f} dB, hand region {t[:, 2].mean():.2f} ± {t[:, 2].std():.2f} dB"
              + (versus if i else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vae", nargs="+", required=True, help="VAE folders (config.json + safetensors)")
    ap.add_argument("--checkpoint", help="pipeline folder whose imagined frames go into --picture")
    ap.add_argument("--picture", help="PNG to write (needs --checkpoint; the first --vae is shown)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--all", action="store_true",
                    help="every clip of benchmarks/demo_variance.py (5 motions x 2 hands x 3 seeds), not the default")
    args = ap.parse_args(argv)
    if args.picture and not args.checkpoint:
        ap.error("--picture needs --checkpoint (the model whose imagined frames are shown)")
    if args.picture and args.all:
        ap.error("--picture shows the default clip: leave out --all")
    if args.threads:
        torch.set_num_threads(args.threads)
    vaes = {path: AutoencoderKLWan.from_pretrained(path).eval() for path in args.vae}
    if args.all:
        configs = [demo.DemoConfig(embodiment=h, motion=m, seed=k, progress=False)
                   for h in HANDS for m in MOTIONS for k in SEEDS]
        print_floor(floor_over_clips(vaes, configs))
        return 0

    cfg = demo.DemoConfig()
    sim, probe, embs = demo_rollout(cfg)
    print(f"default demo clip ({cfg.embodiment}, {cfg.motion}, seed {cfg.seed}); the probe on the rollout itself: "
          f"{evaluate(sim.frames, sim, probe=probe, exclude_first=True).keypoints['mean_px']:.2f} px")
    recs = []
    for path, vae in vaes.items():
        rec, r = score(vae, sim, probe)
        print(f"{path}: joint error {r.keypoints['mean_px']:.2f} px, PSNR {r.psnr:.2f} dB, hand region "
              f"{r.hand_psnr:.2f} dB")
        recs.append(rec)
    if args.picture:
        from worldmodel.wan.pipeline import HandControlPipeline

        pipe = HandControlPipeline.from_pretrained(args.checkpoint)
        imagined = demo.imagine(pipe, sim, demo.demo_prompt(embs, cfg.motion), cfg.steps, cfg.seed)
        frames = [4, 12]
        panels = side_by_side(sim.frames[frames], recs[0][frames], imagined[frames],
                              titles=["simulated", f"VAE {Path(args.vae[0]).parent.name} reconstruction",
                                      f"imagined ({Path(args.checkpoint).name})"])
        image = np.kron(np.concatenate(list(panels), 0), np.ones((2, 2, 1), np.uint8))  # 2× for reading
        import imageio.v3 as iio

        with atomic_path(args.picture, suffix=".png") as tmp:
            iio.imwrite(tmp, image)
        print(f"wrote {args.picture}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
