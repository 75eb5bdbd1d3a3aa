"""The paper's ablation table in miniature, on held-out synthetic MuJoCo clips.

Every variant trains the tiny-sim model with one budget (same steps, seed, data, trained VAE and the same random
transformer init: the ``base`` folder of the shipped tiny-sim run), then generates each held-out clip from its first
frame + SparseJoints + K and is scored against the simulation (``worldmodel.evaluation.evaluate``, frame 0 excluded):
probe 2D joint error (px) and PCK@5px (shipped keypoint probe), PSNR / SSIM.

Variants (``HandControlModule`` switches):
  control off  the full variant's model with every joint invalid (zero control volume and motion features; the
               mode it was trained in through whole-sample control dropout)
  2D tracks    Wan-Move style: the reference latent's features copied along 2D point tracks, no control volume
  OCA          occlusion-gated source features, propagation without depth order, no 3D geometric embedding
  OCA+OP       + depth-weighted propagation (softmax over joints with λ·disparity)
  full         + 3D geometric embeddings (OCA+OP+3DGE)

    .venv/bin/python benchmarks/ablation.py --steps 120 --clips 8            # train + evaluate all, print table
    .venv/bin/python benchmarks/ablation.py --variants tracks2d oca          # a subset (e.g. two processes)
    .venv/bin/python benchmarks/ablation.py --report --write-docs            # table from saved metrics

Baseline for the ratios: control off.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS: dict[str, dict] = {
    "tracks2d": {"point_tracks_2d": True},
    "oca": {"use_depth_weighting": False, "use_geometric_embedding": False},
    "oca_op": {"use_geometric_embedding": False},
    "full": {},
}
LABELS = {"off": "control off", "tracks2d": "2D point tracks (Wan-Move style)", "oca": "OCA",
          "oca_op": "OCA+OP", "full": "OCA+OP+3DGE (full)"}
ORDER = ["off", "tracks2d", "oca", "oca_op", "full"]
METRICS = ("joint_error_px", "pck@5px", "psnr", "ssim")


def train_variant(name: str, args) -> Path:
    """Train one variant from the shared base; returns its final checkpoint folder."""
    from worldmodel.training.trainer import TrainConfig, Trainer
    from worldmodel.wan.presets import TRAIN_DEFAULTS

    defaults = {k: v for k, v in TRAIN_DEFAULTS["tiny-sim"].items() if k != "vae"}
    cfg = TrainConfig.from_dict({
        **defaults, "data": args.data, "out": str(Path(args.out) / name), "preset": "tiny-sim",
        "base_path": str(Path(args.base).resolve()), "control": VARIANTS[name], "steps": args.steps,
        "warmup_steps": min(defaults["warmup_steps"], args.steps // 5), "seed": args.seed,
        "checkpoint_every": 0, "progress": not args.quiet,
    })
    trainer = Trainer(cfg)
    trainer.train()
    return trainer.save_checkpoint()


def evaluate_variant(name: str, checkpoint: Path, paths, probe, args) -> dict:
    """Per-clip metrics of one checkpoint (and of control off for the full variant)."""
    from tiny_sim_eval import control_off, generate

    from embodiments.clip import read_clip
    from worldmodel.evaluation.report import evaluate
    from worldmodel.wan.pipeline import HandControlPipeline

    pipe = HandControlPipeline.from_pretrained(checkpoint)
    pipe.set_progress_bar_config(disable=True)
    modes = [(name, False)] + ([("off", True)] if name == "full" else [])
    out = {m: [] for m, _ in modes}
    for path in paths:
        clip = read_clip(path)
        for mode, off in modes:
            joints = control_off(clip.joints) if off else clip.joints
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                video = generate(pipe, clip, joints, args.eval_seed, None)
            rep = evaluate(video, clip, probe=probe, exclude_first=True).to_dict()
            k = rep.get("keypoints") or {}
            out[mode].append({"clip": str(path), "psnr": rep["psnr"], "ssim": rep["ssim"],
                              "joint_error_px": k.get("mean_px"), "pck@5px": k.get("pck@5px"),
                              "probe_heldout": k.get("probe_heldout")})
    return out


def summarise(rows: list[dict]) -> dict:
    s = {}
    for key in METRICS:
        vals = np.array([r[key] for r in rows if r.get(key) is not None], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        s[key] = float(vals.mean()) if vals.size else None
        s[key + "_sem"] = float(vals.std(ddof=1) / np.sqrt(vals.size)) if vals.size > 1 else None
    s["clips"] = len(rows)
    return s


def table(results: dict) -> str:
    head = "| variant | joint error (px) ↓ | PCK@5px ↑ | PSNR (dB) ↑ | SSIM ↑ | joint error / control off |"
    lines = [head, "|---|---|---|---|---|---|"]
    base = results.get("off", {}).get("joint_error_px")
    for v in ORDER:
        if v not in results:
            continue
        s = results[v]

        def f(key, fmt, s=s):
            if s.get(key) is None:
                return "–"
            sem = s.get(key + "_sem")
            return fmt.format(s[key]) + (f" ± {fmt.format(sem)}" if sem is not None else "")

        ratio = f"{s['joint_error_px'] / base:.2f}" if base and s.get("joint_error_px") is not None else "–"
        lines.append(f"| {LABELS[v]} | {f('joint_error_px', '{:.2f}')} | {f('pck@5px', '{:.3f}')} | "
                     f"{f('psnr', '{:.2f}')} | {f('ssim', '{:.3f}')} | {ratio} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="outputs/tiny_sim/data/train")
    ap.add_argument("--heldout", default="outputs/tiny_sim/data/heldout")
    ap.add_argument("--base", default="outputs/tiny_sim/run/base",
                    help="trained VAE + random transformer init shared by every variant")
    ap.add_argument("--out", default="outputs/ablation")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0, help="training seed (control init, data order, noise)")
    ap.add_argument("--eval-seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--clips", type=int, default=8, help="held-out clips, split evenly over embodiments")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--report", action="store_true", help="only build the table from saved metrics")
    ap.add_argument("--write-docs", default=None, nargs="?", const="docs/results.md",
                    help="append the table to this markdown file")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    if not args.report:
        from embodiments.clip import find_clips
        from worldmodel.evaluation.probe import load_probe

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        probe = load_probe()
        by_emb: dict[str, list] = {}
        for p in find_clips(args.heldout):
            by_emb.setdefault(Path(p).parent.name, []).append(p)
        per = max(1, args.clips // max(1, len(by_emb)))
        paths = [p for group in by_emb.values() for p in sorted(group)[:per]]
        for name in args.variants:
            t0 = time.perf_counter()
            ckpt = train_variant(name, args)
            t_train = time.perf_counter() - t0
            rows = evaluate_variant(name, ckpt, paths, probe, args)
            for mode, r in rows.items():
                rec = {"variant": mode, "control": VARIANTS[name], "steps": args.steps, "seed": args.seed,
                       "eval_seed": args.eval_seed, "train_seconds": round(t_train, 1),
                       "eval_seconds": round(time.perf_counter() - t0 - t_train, 1),
                       "summary": summarise(r), "clips": r}
                (out / f"{mode}.json").write_text(json.dumps(rec, indent=2))
                print(f"{LABELS[mode]}: {rec['summary']}  (train {t_train:.0f} s)")
    results, meta = {}, {}
    for v in ORDER:
        f = out / f"{v}.json"
        if f.exists():
            rec = json.loads(f.read_text())
            results[v] = rec["summary"]
            meta[v] = rec
    text = table(results)
    print(text)
    if args.write_docs and results:
        any_rec = next(iter(meta.values()))
        secs = sum(m["train_seconds"] + m["eval_seconds"] for k, m in meta.items() if k != "off")
        doc = Path(args.write_docs)
        doc.write_text(doc.read_text().rstrip("\n") + "\n\n" + _section(text, any_rec, secs, len(meta)) + "\n")
        print(f"appended to {doc}")
    return 0


def _section(text: str, rec: dict, seconds: float, n: int) -> str:
    return "\n".join([
        "## Ablation", "",
        f"{n} rows; each trained variant: {rec['steps']} steps of stage 2 (batch 8, tiny-sim recipe otherwise) from "
        "the same trained VAE and the same random transformer init (`outputs/tiny_sim/run/base`), training seed "
        f"{rec['seed']}, sampling seed {rec['eval_seed']}; {rec['summary']['clips']} held-out clips (never trained "
        f"on). Mean ± standard error over clips, frame 0 excluded. Total {seconds / 60:.1f} min on 2 shared CPU cores.",
        "", text, ""])


if __name__ == "__main__":
    raise SystemExit(main())
