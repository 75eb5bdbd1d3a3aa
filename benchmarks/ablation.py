"""The paper's ablation table in miniature, on an ordinary and an occlusion held-out split, over training seeds.

Every variant trains the tiny-sim model with one budget (same steps, data, trained VAE and the same random
transformer init: the ``base`` folder of a tiny-sim run; or, with ``--prior``, a trained model's video model with a
new control module of the variant, as ``dexworld train --init PRIOR --fresh-control`` starts) from one encoding
cache of the training clips (ordinary and occlusion-split clips together), then generates each held-out clip from
its first frame + SparseJoints + K and is scored against the simulation (``worldmodel.evaluation.evaluate``, frame 0
excluded): the keypoint probe's 2D joint error on all joints and on the joints the reference render hides (the
clips' ``visible`` extra), PCK@5px, PSNR and SSIM. Each seed's figure is the mean over clips; the tables give mean ±
std over seeds.

Variants (``HandControlModule`` switches):
  control off  the full variant's model with every joint invalid (zero control volume and motion features; the
               mode it was trained in through whole-sample control dropout)
  tracks2d     Wan-Move style: the reference latent's features copied along 2D point tracks, no control volume
  oca          occlusion-gated source features, propagation without depth order, no 3D geometric embedding
  oca_op       + depth-weighted propagation (softmax over joints with λ·disparity)
  full         + 3D geometric embeddings (OCA+OP+3DGE), dexworld's default ``soft`` mode
  paper        the full module in ``paper`` mode (the equations as written)
  upstream     the full module in ``upstream`` mode (the authors' published module)

    .venv/bin/python benchmarks/ablation.py --steps 100 --seeds 0 1 2          # train + evaluate, print tables
    .venv/bin/python benchmarks/ablation.py --seeds 1 --variants oca full      # a subset (e.g. a second process)
    .venv/bin/python benchmarks/ablation.py --prior worldmodel/checkpoints/tiny-sim-bimanual --steps 200 \
        --heldout outputs/tiny_sim/data/heldout_scenes --out outputs/ablation_prior   # from a trained video prior
    .venv/bin/python benchmarks/ablation.py --report                           # tables from saved metrics
    .venv/bin/python benchmarks/ablation.py --crossings                        # OP's weights at the crossings
    .venv/bin/python benchmarks/ablation.py --probe-floor                      # the probe on the simulation

Work already done (a checkpoint, a metrics file) is kept and skipped on a rerun. Baseline for the ratios: control off.
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
    "paper": {"occlusion": "paper"},
    "upstream": {"occlusion": "upstream"},
}
LABELS = {"off": "control off", "tracks2d": "2D point tracks (Wan-Move style)", "oca": "OCA",
          "oca_op": "OCA+OP", "full": "OCA+OP+3DGE (full, soft mode)", "paper": "full, paper mode",
          "upstream": "full, upstream mode"}
ORDER = ["off", "tracks2d", "oca", "oca_op", "full", "paper", "upstream"]
METRICS = ("joint_error_px", "joint_error_occluded_px", "pck@5px", "psnr", "ssim")
SPLITS = {"ordinary": "outputs/tiny_sim/data/heldout", "occlusion": "outputs/tiny_sim/data/heldout_occlusion"}


def training_cache(args) -> Path:
    """One encoding cache of every training clip, shared by all variants and seeds (built once)."""
    from embodiments.clip import find_clips
    from worldmodel.training.cache import build_cache, load_encoders
    from worldmodel.training.trainer import TrainConfig, start_from_pipeline

    cache = Path(args.out) / "cache"
    if (cache / "manifest.json").exists():
        return cache
    # the cache reads one folder: file links to the clips of every training folder (names keep them apart)
    links = Path(args.out) / "train_clips"
    links.mkdir(parents=True, exist_ok=True)
    for folder in args.data:
        for clip in find_clips(folder):
            link = links / f"{Path(folder).name}__{clip.parent.name}__{clip.name}"
            if not link.exists():
                link.symlink_to(clip.resolve())
    if args.prior:  # the encoders exactly as `train --init` builds them (`dexworld cache --init`)
        encoders = start_from_pipeline(TrainConfig(out=str(cache), preset="tiny-sim", init=args.prior))[0]
        encoders.transformer = None
    else:
        encoders = load_encoders(args.base)
    return build_cache(encoders, links, cache, progress=not args.quiet)


def train_variant(name: str, seed: int, cache: Path, args) -> Path:
    """Train one variant from the shared base; returns its final checkpoint folder (kept and reused on a rerun)."""
    from worldmodel.training.trainer import TrainConfig, Trainer
    from worldmodel.wan.presets import TRAIN_DEFAULTS

    run = Path(args.out) / f"seed{seed}" / name
    done = sorted(run.glob("checkpoint-*"))
    if done and (done[-1] / "model_index.json").exists() and done[-1].name.endswith(f"{args.steps:06d}"):
        return done[-1]
    defaults = {k: v for k, v in TRAIN_DEFAULTS["tiny-sim"].items() if k not in ("vae", "tiny")}
    start = {"base_path": str(Path(args.base).resolve())}
    if args.prior:  # the prior's video model, a new control module of the variant (`train --init --fresh-control`);
        # the transformer at the continued cycles' LR and cosine (docs/results.md), the control at the recipe's
        start = {"init": str(Path(args.prior).resolve()), "fresh_control": True, "lr_lora": 2.5e-4,
                 "lr_lora_schedule": "cosine"}
    cfg = TrainConfig.from_dict({
        **defaults, "cache": str(cache), "out": str(run), "preset": "tiny-sim", **start,
        "control": VARIANTS[name], "steps": args.steps,
        "warmup_steps": min(defaults["warmup_steps"], args.steps // 5), "seed": seed,
        "checkpoint_every": args.steps, "progress": not args.quiet,
    })
    trainer = Trainer(cfg, overwrite=True)
    trainer.train()
    return trainer.save_checkpoint()


def evaluate_variant(name: str, checkpoint: Path, paths: list, probe, args) -> dict:
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
            out[mode].append({"clip": str(path), "psnr": rep["psnr"], "ssim": rep["ssim"], **keypoint_row(rep),
                              "probe_heldout": (rep.get("keypoints") or {}).get("probe_heldout")})
    return out


def keypoint_row(rep: dict) -> dict:
    """The probe's figures in one ``evaluate(...).to_dict()``: joint error on all and on occluded joints, PCK@5px."""
    k = rep.get("keypoints") or {}
    occ = k.get("occluded") or {}
    return {"joint_error_px": k.get("mean_px"), "pck@5px": k.get("pck@5px"),
            "joint_error_occluded_px": occ.get("mean_px"), "occluded_joints": occ.get("n_joints")}


def clip_mean(rows: list[dict]) -> dict:
    """Mean over clips of each metric (None where no clip has it)."""
    s = {}
    for key in METRICS:
        vals = np.array([r[key] for r in rows if r.get(key) is not None], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        s[key] = float(vals.mean()) if vals.size else None
    s["clips"] = len(rows)
    s["occluded_joints"] = int(sum(r.get("occluded_joints") or 0 for r in rows))
    return s


def seed_stats(per_seed: list[dict]) -> dict:
    """Mean and std (ddof 1; None for one seed) over seeds of each metric's clip mean."""
    s = {"seeds": len(per_seed)}
    for key in METRICS:
        vals = np.array([p[key] for p in per_seed if p.get(key) is not None], dtype=np.float64)
        s[key] = float(vals.mean()) if vals.size else None
        s[key + "_std"] = float(vals.std(ddof=1)) if vals.size > 1 else None
    return s


def table(results: dict) -> str:
    head = ("| variant | joint error, all (px) ↓ | joint error, occluded (px) ↓ | PCK@5px ↑ | PSNR (dB) ↑ | SSIM ↑ "
            "| joint error / control off |")
    lines = [head, "|---|---|---|---|---|---|---|"]
    base = results.get("off", {}).get("joint_error_px")
    for v in ORDER:
        if v not in results:
            continue
        s = results[v]

        def f(key, fmt, s=s):
            if s.get(key) is None:
                return "–"
            std = s.get(key + "_std")
            return fmt.format(s[key]) + (f" ± {fmt.format(std)}" if std is not None else "")

        ratio = f"{s['joint_error_px'] / base:.2f}" if base and s.get("joint_error_px") is not None else "–"
        lines.append(f"| {LABELS[v]} | {f('joint_error_px', '{:.2f}')} | {f('joint_error_occluded_px', '{:.2f}')} | "
                     f"{f('pck@5px', '{:.3f}')} | {f('psnr', '{:.2f}')} | {f('ssim', '{:.3f}')} | {ratio} |")
    return "\n".join(lines)


def heldout_paths(folder: str, clips: int) -> list:
    """``clips`` held-out clips of ``folder``, split evenly over its embodiment subfolders."""
    from embodiments.clip import find_clips

    by_emb: dict[str, list] = {}
    for p in find_clips(folder):
        by_emb.setdefault(Path(p).parent.name, []).append(p)
    per = max(1, clips // max(1, len(by_emb)))
    return [p for group in by_emb.values() for p in sorted(group)[:per]]


def summaries(out: Path, metrics: str, split: str, variant: str) -> dict[str, dict]:
    """Seed folder name → the clip-mean summary of ``variant`` on ``split`` (``seed*/<metrics>/<split>/``)."""
    return {f.parts[-4]: json.loads(f.read_text())["summary"]
            for f in sorted(out.glob(f"seed*/{metrics}/{split}/{variant}.json"))}


def seed_results(out: Path, metrics: str = "metrics") -> dict[str, dict]:
    """Per split and variant, mean ± std over seeds from the metrics files under ``out``."""
    results: dict[str, dict] = {}
    for split in SPLITS:
        for v in ORDER:
            per_seed = list(summaries(out, metrics, split, v).values())
            if per_seed:
                results.setdefault(split, {})[v] = seed_stats(per_seed)
    return results


def plot(out: Path, picture: Path, metrics: str = "metrics") -> Path:
    """Bar chart of the joint error (all joints, occluded joints) per variant and split, seed std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from embodiments.io_utils import atomic_path

    results = seed_results(out, metrics)
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for ax, (split, res) in zip(axes[0], results.items(), strict=True):
        names = [v for v in ORDER if v in res]
        x = np.arange(len(names))
        for off, key, label in ((-0.2, "joint_error_px", "all joints"), (0.2, "joint_error_occluded_px", "occluded")):
            ax.bar(x + off, [res[v][key] for v in names], 0.4, yerr=[res[v][key + "_std"] or 0 for v in names],
                   capsize=3, label=label)
        seeds = res[names[0]]["seeds"]
        ax.set(title=f"{split} split ({seeds} training seeds)", ylabel="probe joint error (px) ↓")
        ax.set_xticks(x, [LABELS[v].replace(" (", "\n(") for v in names], rotation=30, ha="right", fontsize=7)
        ax.legend(fontsize=8)
    fig.tight_layout()
    picture.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(picture) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return picture


PAIRS = (("oca", "oca_op"), ("oca_op", "full"), ("full", "paper"), ("full", "upstream"), ("full", "tracks2d"))


def paired_gains(out: Path, metrics: str = "metrics") -> str:
    """Per split, each seed's joint-error gain of one variant over another on the same clips and sampling seed.

    The variants of one seed share their clips and initial noise, so a difference per seed is a paired comparison:
    a gain of the same sign in every seed is a firmer finding than two means whose stds overlap.
    """
    lines = ["| split | step | gain, all joints (px) per seed | gain, occluded joints (px) per seed |",
             "|---|---|---|---|"]
    for split in SPLITS:
        for a, b in PAIRS:
            sa, sb = summaries(out, metrics, split, a), summaries(out, metrics, split, b)
            seeds = sorted(sa.keys() & sb.keys())
            cols = [", ".join(f"{sa[s][key] - sb[s][key]:+.2f}" for s in seeds
                              if sa[s][key] is not None and sb[s][key] is not None)
                    for key in ("joint_error_px", "joint_error_occluded_px")]
            if cols[0]:
                lines.append(f"| {split} | {LABELS[a]} → {LABELS[b]} | {cols[0]} | {cols[1]} |")
    return "\n".join(lines)


def report(out: Path, metrics: str = "metrics") -> dict[str, str]:
    """Tables (markdown) per split from the metrics files under ``out`` (``seed*/<metrics>/<split>/``)."""
    tables = {}
    for split, results in seed_results(out, metrics).items():
        seeds = sorted({f.parts[-4] for f in out.glob(f"seed*/{metrics}/{split}/*.json")})
        tables[split] = f"**{split} split** ({', '.join(seeds)})\n\n" + table(results)
    return tables


def probe_floor(paths: list, probe) -> dict:
    """The probe on the simulated clips themselves (frame 0 excluded): what the table's joint errors cannot go below."""
    from embodiments.clip import read_clip
    from worldmodel.evaluation.report import evaluate

    rows = []
    for path in paths:
        clip = read_clip(path)
        rows.append(keypoint_row(evaluate(clip.frames, clip, probe=probe, exclude_first=True).to_dict()))
    return {key: v for key, v in clip_mean(rows).items() if v is not None}


def module_default(name: str) -> float:
    """A default of ``HandControlModule``'s config (λ ``propagate_scale``, ``disparity_scale``)."""
    import inspect

    from worldmodel.control.module import HandControlModule

    return float(inspect.signature(HandControlModule.__init__).parameters[name].default)


def crossing_shares(folder: str, depth_scales: dict[str, float], cell_px: float = 8.0) -> dict:
    """What depth-weighted propagation (OP) can do at the crossings of the occlusion split.

    A crossing: a joint the reference render hides and a visible joint of the same frame whose projections fall in
    the same latent cell (within ``cell_px``, the VAE's 8× downsampling). OP's softmax over joints weighs them by
    (H_k + ε)·exp(λ·d_k), d = disparity_scale/z; at a point where both heatmaps are equal the nearer joint's
    share is sigmoid(λ·|d_i − d_j|) (without OP: 0.5). Returns the depth gaps and, per λ, the share's quartiles.
    """
    from embodiments.clip import find_clips, read_clip

    scale = module_default("disparity_scale")
    gaps, lead = [], []
    for path in find_clips(folder):
        clip = read_clip(path)
        visible = clip.extra.get("visible")
        if visible is None:
            continue
        uvd, ok = clip.joints.project()
        z = np.asarray(clip.joints.positions, np.float64)[..., 2]
        near = np.linalg.norm(uvd[:, :, None, :2] - uvd[:, None, :, :2], axis=-1) < cell_px  # (T, N, N)
        t, i, j = np.nonzero(near & (ok & ~visible)[:, :, None] & (ok & visible)[:, None, :])  # hidden i, shown j
        gaps.append(np.abs(z[t, i] - z[t, j]))
        lead.append(np.abs(scale / z[t, i] - scale / z[t, j]))
    gaps = np.concatenate(gaps) if gaps else np.zeros(0)
    lead = np.concatenate(lead) if lead else np.zeros(0)
    out = {"crossings": int(len(lead)),
           "depth_gap_mm": [float(np.percentile(gaps, q)) * 1000 for q in (25, 50, 75)] if len(gaps) else None}
    for name, lam in depth_scales.items():
        share = 1.0 / (1.0 + np.exp(-lam * lead)) if len(lead) else np.array([np.nan])
        out[name] = {"lambda": float(lam), "near_share": [float(np.percentile(share, q)) for q in (25, 50, 75)]}
    return out


def trained_depth_scales(out: Path) -> dict[str, float]:
    """λ of the initial module and of every trained full-variant checkpoint under ``out``."""
    from safetensors.torch import load_file

    scales = {"initial": module_default("propagate_scale")}
    for f in sorted(out.glob("seed*/full/checkpoint-*/control/diffusion_pytorch_model.safetensors")):
        scales[f"trained, {f.parts[-5]}"] = float(load_file(f)["depth_scale"])
    return scales


def main(argv=None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+",
                    default=["outputs/tiny_sim/data/train", "outputs/tiny_sim/data/train_occlusion"],
                    help="training clip folders (all variants train on all of them)")
    ap.add_argument("--heldout", default=SPLITS["ordinary"], help="held-out clips of the ordinary split")
    ap.add_argument("--heldout-occlusion", default=SPLITS["occlusion"],
                    help="held-out clips of the occlusion split (`dexworld synth --occlusion`)")
    ap.add_argument("--base", default="outputs/tiny_sim/run/base",
                    help="trained VAE + random transformer init shared by every variant")
    ap.add_argument("--prior", default=None,
                    help="a trained pipeline folder (e.g. worldmodel/checkpoints/tiny-sim-bimanual): every variant "
                         "starts from its video model with a new control module of its own (instead of --base)")
    ap.add_argument("--probe", default=None, help="keypoint probe folder (default: the shipped one)")
    ap.add_argument("--out", default="outputs/ablation")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="training seeds (control init, data order, noise)")
    ap.add_argument("--eval-seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--clips", type=int, default=6, help="held-out clips per split, split evenly over embodiments")
    ap.add_argument("--metrics", default="metrics",
                    help="folder name (under each seed's) for the metrics files: another name keeps an evaluation "
                         "with other --clips beside the first")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--report", action="store_true", help="only build the tables from saved metrics")
    ap.add_argument("--crossings", action="store_true",
                    help="only report what OP's depth weighting does at the occlusion split's crossings")
    ap.add_argument("--plot", default=None, help="also draw the joint errors as a bar chart (PNG) here")
    ap.add_argument("--probe-floor", action="store_true",
                    help="only score the simulated held-out clips themselves with the probe (the floor of the table)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.crossings:
        print(json.dumps(crossing_shares(args.heldout_occlusion, trained_depth_scales(out)), indent=2))
        return 0
    if not args.report:
        from embodiments.io_utils import atomic_path
        from worldmodel.evaluation.probe import load_probe

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        probe = load_probe(args.probe)
        splits = {"ordinary": heldout_paths(args.heldout, args.clips),
                  "occlusion": heldout_paths(args.heldout_occlusion, args.clips)}
        if args.probe_floor:
            for split, paths in splits.items():
                print(f"{split} split, the probe on the simulation ({len(paths)} clips): "
                      f"{json.dumps(probe_floor(paths, probe))}")
            return 0
        cache = training_cache(args)
        for seed in args.seeds:
            for name in args.variants:
                t0 = time.perf_counter()
                ckpt = train_variant(name, seed, cache, args)
                t_train = time.perf_counter() - t0
                for split, paths in splits.items():
                    folder = out / f"seed{seed}" / args.metrics / split
                    if (folder / f"{name}.json").exists():
                        continue
                    t1 = time.perf_counter()
                    rows = evaluate_variant(name, ckpt, paths, probe, args)
                    folder.mkdir(parents=True, exist_ok=True)
                    for mode, r in rows.items():
                        rec = {"variant": mode, "split": split, "control": VARIANTS[name], "steps": args.steps,
                               "seed": seed, "eval_seed": args.eval_seed, "train_seconds": round(t_train, 1),
                               "eval_seconds": round(time.perf_counter() - t1, 1), "summary": clip_mean(r),
                               "clips": r}
                        with atomic_path(folder / f"{mode}.json") as tmp:
                            Path(tmp).write_text(json.dumps(rec, indent=2))
                        print(f"seed {seed} {split} {LABELS[mode]}: {rec['summary']}  (train {t_train:.0f} s)",
                              flush=True)
    for text in report(out, args.metrics).values():
        print(text + "\n")
    print("**paired gains** (the error of the first variant minus the second's; positive: the second is better)\n")
    print(paired_gains(out, args.metrics) + "\n")
    if args.plot:
        print(f"wrote {plot(out, Path(args.plot), args.metrics)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
