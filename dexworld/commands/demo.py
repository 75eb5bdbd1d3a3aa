"""``dexworld demo``: the main job on built-in defaults (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import argtypes as at


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="human motion → robot hand → MuJoCo rollout → imagined rollout, side by side with metrics",
        description="Retarget a built-in human motion to a robot hand, simulate it in MuJoCo, let the shipped tiny "
                    "world model imagine the same rollout from its first frame and joints, and write a side-by-side "
                    "video, metrics.json and a LeRobot dataset of the imagined episode.")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out/)")
    p.add_argument("--embodiment", default="inspire_right",
                   help="robot hand (default inspire_right), or a left,right pair in one scene, e.g. "
                        "inspire_left,inspire_right (a pair or a left hand loads the shipped tiny-sim-bimanual "
                        "model, trained on pairs and left hands too)")
    p.add_argument("--motion", default="power_grasp",
                   help="human motion: open, power_grasp, pinch, point, wave, random (default power_grasp)")
    p.add_argument("--method", default="dexpilot", choices=("vector", "position", "dexpilot"))
    p.add_argument("--frames", type=at.frames_4k1, default=17, help="frames, 4k+1 (default 17)")
    p.add_argument("--size", type=at.side16, default=128, help="square frame size in pixels (default 128)")
    p.add_argument("--steps", type=at.positive_int, default=None, help="denoising steps (default: the model's own)")
    p.add_argument("--guidance", type=at.guidance, default=None,
                   help="guidance scale (default: the model's own; the shipped model's is 1, no CFG)")
    p.add_argument("--seed", type=at.seed, default=0)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="a trained checkpoint, or a training run folder (its latest; default: the shipped model)")
    p.add_argument("--device", type=at.device, default=None, help="torch device of the world model (default cpu)")
    p.add_argument("--kinematic", action="store_true", help="replay joints kinematically instead of physics")
    p.add_argument("--hand-style", choices=("auto", "detailed", "simple"), default="auto",
                   help="hand geometry of the simulation (default auto: detailed, what the shipped model was trained "
                        "on, for the built-in hands; simple for others)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from dexworld.demo import DemoConfig, run_demo

    cfg = DemoConfig(out=args.out, embodiment=args.embodiment, motion=args.motion, method=args.method,
                     frames=args.frames, size=args.size, steps=args.steps, guidance=args.guidance, seed=args.seed,
                     checkpoint=args.checkpoint, device=args.device, physics=not args.kinematic,
                     hand_style=args.hand_style, progress=not args.no_progress)
    report = run_demo(cfg)
    table = Table(title=f"{report['motion']} on {report['embodiment']}",
                  caption="vs the simulation, frame 0 excluded")
    table.add_column("metric")
    table.add_column("imagined", justify="right")
    table.add_column("control off", justify="right")
    on, off = report["imagined"], report["control_off"]
    table.add_row("PSNR vs simulation (dB)", f"{on['psnr']:.2f}", f"{off['psnr']:.2f}")
    table.add_row("SSIM vs simulation", f"{on['ssim']:.3f}", f"{off['ssim']:.3f}")
    for key, label in (("hand_psnr", "hand-region PSNR (dB)"), ("frame0_psnr", "frame 0 PSNR (dB, given image)")):
        if on.get(key) is not None and off.get(key) is not None:
            table.add_row(label, f"{on[key]:.2f}", f"{off[key]:.2f}")
    console = Console()
    if on.get("keypoints") and off.get("keypoints"):
        k_on, k_off = on["keypoints"], off["keypoints"]
        table.add_row("probe joint error (px)", f"{k_on['mean_px']:.2f}", f"{k_off['mean_px']:.2f}")
        table.add_row("probe PCK@5px", f"{k_on['pck@5px']:.3f}", f"{k_off['pck@5px']:.3f}")
        for hand, h_on in k_on.get("hands", {}).items():
            table.add_row(f"  {hand} joint error (px)", f"{h_on['mean_px']:.2f}",
                          f"{k_off['hands'][hand]['mean_px']:.2f}")
    console.print(table)
    if on.get("keypoints"):
        from worldmodel.evaluation.probe import describe_heldout

        console.print(describe_heldout(on["keypoints"].get("probe_heldout")))
    for note in on.get("notes", []):
        console.print(note)
    console.print(f"wrote {cfg.out}/side_by_side.mp4, side_by_side.gif, metrics.json, lerobot/ (replacing the "
                  "previous run's, if any)")
    return 0
