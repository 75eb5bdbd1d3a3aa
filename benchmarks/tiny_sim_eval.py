"""Does the shipped tiny-sim model follow the joints? Control on vs the same model with control off.

For each held-out synthetic clip (``dexworld synth ... --seed 1000``, never seen in training): generate the clip from
its first frame + its SparseJoints + K (control on), and again with every joint marked invalid (control off: zero
control volume and zero motion features, a mode the model was trained in through whole-sample control dropout),
same seed. Both are scored against the simulated frames with ``worldmodel.evaluation.evaluate`` (PSNR/SSIM, and the
keypoint probe's 2D joint error / PCK@5px when a probe is available), plus the error inside the hand region (pixels
within 6 px of the commanded skeleton, frames 1…T−1), which needs no probe, and generated frame 0 against
the reference image it was given. The VAE's own reconstruction
of each clip is scored too (the ceiling the video model cannot beat), and with a probe the joint error on the
simulated renders and on their VAE reconstructions: what the probe reads from the simulation's own latents.

    .venv/bin/python benchmarks/tiny_sim_eval.py --data outputs/tiny_sim/data/heldout --out outputs/tiny_sim/eval
    .venv/bin/python benchmarks/tiny_sim_eval.py --vae-only --vae outputs/vae_decoder/vae --out outputs/vae_check
    .venv/bin/python benchmarks/tiny_sim_eval.py --data outputs/tiny_sim/data/heldout_scenes \\
        --videos outputs/videos/w2_scenes --probe outputs/probe7/probe --out outputs/probe7/w2_rescored

``--videos DIR`` keeps the generated videos (one folder per checkpoint, seed and step count) and reuses them, so
scoring the same videos with another probe skips generation (48 clips: 3 min instead of 9 on 2 cores).

Prints a table and the ratios control-on / control-off (baseline: control off); writes ``metrics.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def control_off(joints):
    """The same joints with every slot invalid: the pipeline then applies no hand control."""
    return joints.replace(valid=np.zeros_like(joints.valid))


def generate(pipe, clip, joints, seed: int, steps: int | None, shift: float | None = None) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*invalid.*")
        out = pipe(clip.frames[0], joints, prompt=clip.prompt, seed=seed, num_inference_steps=steps, shift=shift,
                   progress=False)
    return np.asarray(out.frames, dtype=np.float32)  # (T, H, W, 3) in [0, 1]


@torch.no_grad()
def vae_reconstruction(vae, frames: np.ndarray) -> np.ndarray:
    """The VAE's reconstruction (posterior mean) of uint8 frames (T, H, W, 3), in [0, 1]."""
    x = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
    z = vae.encode(x).latent_dist.mode()
    y = vae.decode(z).sample[0].permute(1, 2, 3, 0).clamp(-1, 1)
    return ((y + 1) / 2).numpy()


def same_encoder(a, b) -> bool:
    """Whether two VAEs map frames to the same latents: equal encoder and quant_conv weights and latent statistics."""
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if k.startswith(("encoder.", "quant_conv."))]
    return (all(k in sb and torch.equal(sa[k], sb[k]) for k in keys)
            and list(a.config.latents_mean or []) == list(b.config.latents_mean or [])
            and list(a.config.latents_std or []) == list(b.config.latents_std or []))


def kept_video(video_dir: Path | None, clip_path, name: str, make) -> np.ndarray:
    """``make()``, or the copy of it kept in ``video_dir`` (written there the first time) when a folder is given."""
    if video_dir is None:
        return make()
    # clips of several hands share file names (dex3_right/episode_000000.h5, inspire_right/episode_000000.h5): the
    # kept video is named by the clip's stem and a digest of its full path
    where = hashlib.sha1(str(Path(clip_path).resolve()).encode()).hexdigest()[:10]
    path = Path(video_dir) / f"{Path(clip_path).stem}-{where}-{name}.npy"
    if path.is_file():
        return np.load(path)
    video = make()
    from embodiments.io_utils import atomic_path

    with atomic_path(path) as tmp:
        np.save(tmp, video)
    return video


def check_video_dir(video_dir: Path, made_by: dict) -> None:
    """Refuse a ``--videos`` folder whose kept videos came from another checkpoint, seed or step count."""
    from embodiments.io_utils import atomic_path, read_json

    record = video_dir / "videos.json"
    if record.is_file():
        before = read_json(record, "--videos record")
        if before != made_by:
            raise SystemExit(f"--videos {video_dir}: its videos were made by {before}, not {made_by}; give another "
                             "folder")
        return
    video_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(record) as tmp:
        tmp.write_text(json.dumps(made_by))


def evaluate_clips(pipe, paths, probe=None, seed: int = 0, steps: int | None = None, progress: bool = True,
                   videos: bool = True, video_dir: Path | None = None, shift: float | None = None) -> dict:
    """Per-clip and mean metrics for control on / off and the VAE reconstruction (``videos=False``: only the VAE
    figures, a check of a VAE in minutes, before a video model is trained on it). ``video_dir``: keep the generated
    videos there and reuse those already kept (see :func:`kept_video`)."""
    from tqdm.auto import tqdm

    from embodiments.clip import read_clip
    from worldmodel.evaluation.metrics import color_cast, psnr
    from worldmodel.evaluation.report import HAND_RADIUS_PX, evaluate

    def cast_figures(video, ref) -> dict:
        # frame 0 (the causal VAE encodes it alone) and frames 1…T−1 apart: PSNR, and PSNR once each frame's mean
        # colour error is removed (frames 1…T−1 pooled: the PSNR of their mean squared error), with that error's
        # size (largest channel, 0–255 levels)
        c = color_cast(video, ref)
        later_mse = np.mean(10 ** (-c["psnr_without_cast"][1:] / 10))
        return {"frame0_psnr": psnr(video[:1], ref[:1]), "frame0_psnr_without_cast": float(c["psnr_without_cast"][0]),
                "frame0_cast": float(c["cast"][0]), "later_psnr_without_cast": float(-10 * np.log10(later_mse)),
                "later_cast": float(c["cast"][1:].mean())}

    rows = []
    for path in tqdm(paths, desc="eval", disable=not progress):
        clip = read_clip(path)
        ref = clip.frames.astype(np.float32) / 255.0
        row = {"clip": str(path), "embodiment": clip.joints.embodiment}
        recon = vae_reconstruction(pipe.vae, clip.frames)
        row["vae_psnr"] = psnr(recon, ref)
        row["vae_hand_psnr"] = evaluate(recon, clip, exclude_first=True).to_dict()["hand_psnr"]
        row["vae_color"] = cast_figures(recon, ref)
        if probe is not None and probe.knows(clip.joints.embodiment):
            # the probe on the VAE's own reconstruction of the simulated clip (what a video model that produced
            # exactly the simulation's latents would score) and on the render itself (the probe's own floor)
            from worldmodel.evaluation.probe import keypoint_error

            for key, frames in (("vae_joint_error_px", recon), ("render_joint_error_px", clip.frames)):
                row[key] = keypoint_error(probe, frames, clip.joints, frames_scored=slice(1, None))["mean_px"]
        for name, joints in (("on", clip.joints), ("off", control_off(clip.joints))) if videos else ():
            video = kept_video(video_dir, path, name, lambda c=clip, j=joints: generate(pipe, c, j, seed, steps, shift))
            rep = evaluate(video, clip, probe=probe, exclude_first=True).to_dict()
            hand = rep["hand_psnr"]  # frames 1…T−1 (exclude_first), evaluate's hand region
            row[name] = {"psnr": rep["psnr"], "ssim": rep["ssim"], "frame0_psnr": rep["frame0_psnr"],
                         "hand_psnr": hand, "hand_mse": None if hand is None else 10 ** (-hand / 10)}
            cast = cast_figures(video, ref)
            row[name].update({k: cast[k] for k in ("later_psnr_without_cast", "later_cast")})
            if rep.get("keypoints"):
                k = rep["keypoints"]
                row[name].update({"joint_error_px": k["mean_px"], "pck@5px": k.get("pck@5px"),
                                  "probe_heldout": k.get("probe_heldout")})
                if k.get("occluded") and k["occluded"]["n_joints"]:
                    row[name]["joint_error_occluded_px"] = k["occluded"]["mean_px"]
        rows.append(row)

    def mean(key, sub=None):
        vals = [r[sub].get(key) if sub else r[key] for r in rows]
        vals = [v for v in vals if v is not None and np.isfinite(v)]
        return float(np.mean(vals)) if vals else None

    summary = {"clips": len(rows), "seed": seed, "radius_px": HAND_RADIUS_PX, "vae_psnr": mean("vae_psnr"),
               "vae_hand_psnr": mean("vae_hand_psnr"), "vae_joint_error_px": mean("vae_joint_error_px"),
               "render_joint_error_px": mean("render_joint_error_px"),
               "vae_color": {k: mean(k, "vae_color") for k in rows[0]["vae_color"]} if rows else {}}
    if not videos:
        return {"summary": summary, "clips": rows}
    for name in ("on", "off"):
        summary[name] = {k: mean(k, name) for k in ("psnr", "ssim", "frame0_psnr", "hand_mse", "hand_psnr",
                                                     "joint_error_px", "joint_error_occluded_px", "pck@5px",
                                                     "later_psnr_without_cast", "later_cast")}
    summary["hand_mse_ratio_on_off"] = summary["on"]["hand_mse"] / summary["off"]["hand_mse"]
    if summary["on"]["joint_error_px"] is not None:
        summary["joint_error_ratio_on_off"] = summary["on"]["joint_error_px"] / summary["off"]["joint_error_px"]
    per_emb = {}
    for e in sorted({r["embodiment"] for r in rows}):
        sel = [r for r in rows if r["embodiment"] == e]
        per_emb[e] = {f"{k}_{n}": float(np.nanmean([r[n][k] if r[n].get(k) is not None else np.nan for r in sel]))
                      for n in ("on", "off") for k in ("hand_mse", "psnr", "joint_error_px")}
    summary["per_embodiment"] = per_emb
    return {"summary": summary, "clips": rows}


def _read_log(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []


def _smooth(y, k: int = 25) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    k = max(1, min(k, len(y)))
    return np.convolve(y, np.ones(k) / k, mode="valid")


def plot_training(run: str | Path, out: str | Path, vae_logs: list[tuple[str, Path]] = (),
                  marks: list[tuple[int, str]] = ()) -> Path:
    """Loss curves of both stages as one PNG: the run folder's ``vae_loss.jsonl`` followed by ``vae_logs`` (label,
    ``vae_loss.jsonl`` of a later VAE fine-tune, in order; each a labelled segment), and its ``loss.jsonl`` with a
    labelled line at each of ``marks`` (step, label: e.g. where stage 2 moved onto a new VAE's latents)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run)
    own = _read_log(run / "vae_loss.jsonl")
    segments = ([("stage 1", own)] if own else []) + [(label, _read_log(Path(f))) for label, f in vae_logs]
    video = _read_log(run / "loss.jsonl")
    has_vae = any(log for _, log in segments)
    fig, axes = plt.subplots(1, 2 if has_vae else 1, figsize=(11 if has_vae else 6, 3.8), squeeze=False)
    axes = axes[0]
    ax, offset = axes[0], 0
    for i, (label, log) in enumerate(s for s in segments if s[1]):
        psnr = [r["psnr"] for r in log]
        x = offset + np.arange(1, len(log) + 1)
        ax.plot(x, psnr, alpha=0.25, color=f"C{i}")
        sm = _smooth(psnr)
        ax.plot(x[len(x) - len(sm):], sm, color=f"C{i}", label=f"{label} ({len(log)})")
        if offset:
            ax.axvline(offset, color="grey", lw=0.6, ls="--")
        offset += len(log)
    if offset:
        ax.set(title="VAE: crop PSNR (64² crops, 5 then 17 frames)", xlabel="step (runs in sequence)",
               ylabel="PSNR (dB)")
        if len(segments) > 1:
            ax.legend(fontsize=7, loc="lower right")
    if video:
        ax = axes[-1]
        ax.plot([r["step"] for r in video], [r["loss"] for r in video], alpha=0.25, color="C1")
        sm = _smooth([r["loss"] for r in video], 10)
        ax.plot(np.arange(len(sm)) + len(video) - len(sm) + 1, sm, color="C1")
        for step, label in marks:
            ax.axvline(step, color="grey", lw=0.6, ls="--")
            ax.annotate(label, (step, 0.97), xycoords=("data", "axes fraction"), fontsize=7, rotation=90,
                        ha="right", va="top")
        ax.set(title="stage 2: flow-matching loss (batch 8, 128²×17)", xlabel="step", ylabel="MSE", yscale="log")
        lrs = [r.get("lr_lora") for r in video]
        if all(v is not None for v in lrs) and len(set(lrs)) > 1:  # a scheduled transformer LR: show its curve
            lr_ax = ax.twinx()
            lr_ax.plot([r["step"] for r in video], lrs, color="grey", lw=0.8, ls=":")
            lr_ax.set_ylabel("transformer LR (dotted)", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from embodiments.io_utils import atomic_path

    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out


def _pair(text: str, first=str) -> tuple:
    """``A=B`` → (first(A), B); argparse type of --vae-log and --mark."""
    a, sep, b = text.partition("=")
    if not sep or not a or not b:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return first(a), b
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None


def main(argv=None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="outputs/tiny_sim/data/heldout", help="folder of held-out .h5 clips")
    ap.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped tiny-sim model)")
    ap.add_argument("--vae", default=None,
                    help="use this VAE folder instead of the checkpoint's (one with the same encoder, e.g. from "
                         "scripts/vae_finetune_decoder.py)")
    ap.add_argument("--vae-only", action="store_true",
                    help="score only the VAE's reconstructions (PSNR, hand region, probe): no video generation")
    ap.add_argument("--probe", default=None, help="keypoint probe folder (default: the shipped one, if present)")
    ap.add_argument("--no-probe", action="store_true")
    ap.add_argument("--out", default="outputs/tiny_sim/eval", help="folder for metrics.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    ap.add_argument("--shift", type=float, default=None, help="flow-matching sigma shift (default: the model's)")
    ap.add_argument("--limit", type=int, default=None, help="at most this many clips")
    ap.add_argument("--videos", type=Path, default=None,
                    help="keep the generated videos in this folder and reuse the ones kept there (one folder per "
                         "checkpoint, seed and steps): re-scoring with another --probe then generates nothing")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--plot-run", default=None, help="also plot this run folder's loss curves")
    ap.add_argument("--plot-out", default="docs/tiny_sim_training.png")
    ap.add_argument("--vae-log", type=_pair, action="append", default=[], metavar="LABEL=FILE",
                    help="with --plot-run: a later VAE fine-tune's vae_loss.jsonl, plotted after the run's own "
                         "(repeatable, in order)")
    ap.add_argument("--mark", type=lambda t: _pair(t, int), action="append", default=[], metavar="STEP=LABEL",
                    help="with --plot-run: a labelled line on the stage-2 curve (repeatable)")
    ap.add_argument("--plot-only", action="store_true", help="with --plot-run: write the plot, evaluate nothing")
    args = ap.parse_args(argv)
    if not args.plot_run and (args.plot_only or args.vae_log or args.mark):
        ap.error("--plot-only, --vae-log and --mark need --plot-run RUN")
    for _, f in args.vae_log:
        if not Path(f).is_file():
            ap.error(f"--vae-log {f}: no such file (expected a vae_loss.jsonl)")
    if args.plot_run:
        print(f"wrote {plot_training(args.plot_run, args.plot_out, args.vae_log, args.mark)}")
        if args.plot_only:
            return 0
    if args.threads:
        torch.set_num_threads(args.threads)

    from embodiments.clip import find_clips
    from worldmodel.wan.pipeline import HandControlPipeline

    pipe = HandControlPipeline.from_pretrained(args.checkpoint or "tiny-sim")
    pipe.set_progress_bar_config(disable=True)
    if args.vae:
        from diffusers import AutoencoderKLWan

        vae = AutoencoderKLWan.from_pretrained(args.vae).eval()
        if not args.vae_only and not same_encoder(pipe.vae, vae):
            raise SystemExit(f"--vae {args.vae}: its encoder differs from the checkpoint's, so the video model's "
                             "latents mean something else to it; use --vae-only, or a decoder-only fine-tune")
        pipe.vae = vae
    probe = None
    if not args.no_probe:
        from worldmodel.evaluation.probe import load_probe

        try:
            probe = load_probe(args.probe)
        except FileNotFoundError as e:
            print(f"note: {e}; reporting the hand-region proxy only")
    paths = find_clips(args.data)[: args.limit]
    if args.videos is not None and not args.vae_only:
        check_video_dir(args.videos, {"checkpoint": str(Path(args.checkpoint).resolve()) if args.checkpoint
                                      else "shipped tiny-sim", "vae": args.vae, "seed": args.seed,
                                      "steps": args.steps, **({"shift": args.shift} if args.shift else {})})
    t0 = time.perf_counter()
    result = evaluate_clips(pipe, paths, probe=probe, seed=args.seed, steps=args.steps, videos=not args.vae_only,
                            video_dir=None if args.vae_only else args.videos, shift=args.shift)
    result["summary"]["seconds"] = round(time.perf_counter() - t0, 1)
    result["summary"]["checkpoint"] = args.checkpoint or "shipped tiny-sim"
    result["summary"]["vae"] = args.vae or "the checkpoint's"
    result["summary"]["sampling"] = {"steps": args.steps, "shift": args.shift}  # None: the model's own
    from embodiments.io_utils import atomic_path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    s = result["summary"]
    print(f"{s['clips']} held-out clips, seed {s['seed']}; VAE reconstruction PSNR {s['vae_psnr']:.2f} dB, "
          f"hand region {s['vae_hand_psnr']:.2f} dB")
    c = s["vae_color"]
    print(f"  VAE frame 0 {c['frame0_psnr']:.2f} dB, {c['frame0_psnr_without_cast']:.2f} dB without its colour cast "
          f"({c['frame0_cast']:.1f} levels); frames 1…T−1 {c['later_psnr_without_cast']:.2f} dB without theirs "
          f"({c['later_cast']:.1f} levels)")
    if s["vae_joint_error_px"] is not None:
        print(f"probe joint error, frames 1…T−1: on the simulated renders {s['render_joint_error_px']:.2f} px, on the "
              f"VAE's reconstructions {s['vae_joint_error_px']:.2f} px (what the simulation's latents score)")
    if args.vae_only:
        return 0
    print(f"{'':22s}{'control on':>12s}{'control off':>13s}")
    for key in ("psnr", "ssim", "frame0_psnr", "hand_psnr", "hand_mse", "joint_error_px", "joint_error_occluded_px",
                "pck@5px", "later_psnr_without_cast", "later_cast"):
        a, b = s["on"][key], s["off"][key]
        if a is not None:
            print(f"{key:22s}{a:12.4f}{b:13.4f}")
    print(f"hand-region MSE ratio on/off (baseline control off): {s['hand_mse_ratio_on_off']:.3f}")
    if "joint_error_ratio_on_off" in s:
        print(f"probe joint error ratio on/off (baseline control off): {s['joint_error_ratio_on_off']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
