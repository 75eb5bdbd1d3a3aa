"""How much does the ``make demo`` figure depend on the one clip it shows? The demo over motions × hands × seeds.

``dexworld demo`` scores one physics rollout (inspire_right, power_grasp, seed 0). A checkpoint that is better on
the held-out clips can still lose on that one clip by chance; this runs the same demo (``dexworld.demo.run_demo``,
the code ``make demo`` runs) for every combination and every checkpoint given, and prints, per checkpoint, the mean
± std over combinations of the probe's joint error with control on and off, their ratio, hand-region and frame-0
PSNR, and how often it beats the first checkpoint (baseline) on the same combination.

    .venv/bin/python benchmarks/demo_variance.py --checkpoints shipped outputs/tiny_sim2/run \\
        --out outputs/demo_variance                     # 2 checkpoints × 5 motions × 2 hands × 3 seeds
    .venv/bin/python benchmarks/demo_variance.py --out outputs/demo_variance --report
    .venv/bin/python benchmarks/demo_variance.py --checkpoints outputs/candW --guidance 2 --seeds 0 \
        --out outputs/demo_variance_probe4              # sampled with CFG 2 instead of the model's own (<label>_g2)

Each run's metrics are kept in ``--out/<checkpoint>/<hand>-<motion>-seed<k>.json``; a rerun skips them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MOTIONS = ("power_grasp", "pinch", "point", "wave", "open")
HANDS = ("inspire_right", "dex3_right")
SEEDS = (0, 1, 2)


def _label(checkpoint: str, guidance: float | None = None) -> str:
    name = "shipped" if checkpoint == "shipped" else Path(checkpoint).parent.name + "_" + Path(checkpoint).name
    return name if guidance is None else f"{name}_g{guidance:g}"


def figures(m: dict) -> dict:
    """The demo's figures from one ``metrics.json``."""
    on, off = m["imagined"], m["control_off"]
    return {"err_on": on["keypoints"]["mean_px"], "err_off": off["keypoints"]["mean_px"],
            "ratio": on["keypoints"]["mean_px"] / off["keypoints"]["mean_px"], "hand_on": on["hand_psnr"],
            "hand_off": off["hand_psnr"], "frame0": on["frame0_psnr"], "psnr": on["psnr"]}


def run(checkpoints: list[str], out: Path, motions, hands, seeds, guidance: float | None = None) -> None:
    from tqdm import tqdm

    from dexworld.demo import DemoConfig, run_demo
    from embodiments.io_utils import atomic_path

    jobs = [(c, h, m, s) for c in checkpoints for h in hands for m in motions for s in seeds]
    for c, h, m, s in tqdm(jobs, desc="demo runs", unit="run"):
        path = out / _label(c, guidance) / f"{h}-{m}-seed{s}.json"
        if path.exists():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            metrics = run_demo(DemoConfig(out=Path(tmp), embodiment=h, motion=m, seed=s, progress=False,
                                          guidance=guidance, checkpoint=None if c == "shipped" else Path(c)))
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp_file:  # a killed run leaves no half-written figure that a rerun would skip
            tmp_file.write_text(json.dumps(metrics, indent=1))


def report(out: Path) -> None:
    runs = {d.name: {p.stem: figures(json.loads(p.read_text())) for p in sorted(d.glob("*.json"))}
            for d in sorted(out.iterdir()) if d.is_dir()}
    names = sorted(runs, key=lambda n: n != "shipped")  # the shipped model is the baseline
    base = runs[names[0]]
    print(f"{'checkpoint':<24} {'n':>3} {'err on px':>12} {'err off px':>12} {'on/off':>12} {'hand on dB':>12} "
          f"{'hand off dB':>12} {'frame0 dB':>11} {'wins':>6}")
    for n in names:
        r = runs[n]
        keys = sorted(r)
        col = {k: np.array([r[c][k] for c in keys]) for k in next(iter(r.values()))}
        common = [c for c in keys if c in base]
        wins = sum(r[c]["err_on"] < base[c]["err_on"] for c in common)
        print(f"{n:<24} {len(keys):>3} " + " ".join(f"{col[k].mean():>6.2f}±{col[k].std():<5.2f}" for k in
              ("err_on", "err_off", "ratio", "hand_on", "hand_off", "frame0")) + f" {wins:>3}/{len(common)}")
    print("\nper combination (joint error on px, on/off ratio):")
    for c in sorted(base):
        print(f"  {c:<34} " + "  ".join(f"{n}: {runs[n][c]['err_on']:5.1f} {runs[n][c]['ratio']:.2f}"
                                         for n in names if c in runs[n]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoints", nargs="+", default=["shipped"],
                    help="'shipped' (the shipped tiny-sim) or a run folder / checkpoint folder")
    ap.add_argument("--out", type=Path, default=Path("outputs/demo_variance"))
    ap.add_argument("--motions", nargs="+", default=list(MOTIONS))
    ap.add_argument("--hands", nargs="+", default=list(HANDS))
    ap.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    ap.add_argument("--guidance", type=float, default=None,
                    help="guidance scale for every run (default: each model's own); results go to <label>_g<scale>")
    ap.add_argument("--report", action="store_true", help="only print the tables from the saved runs")
    a = ap.parse_args()
    if not a.report:
        run(a.checkpoints, a.out, a.motions, a.hands, a.seeds, a.guidance)
    report(a.out)


if __name__ == "__main__":
    main()
