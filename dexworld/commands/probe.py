"""``dexworld train-probe``: train the robot-hand keypoint probe; ``dexworld measure-probe``: measure a trained one
again; ``dexworld evaluate``: score a video vs a clip."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from .. import argtypes as at

TRAIN_HELP = "train the keypoint probe (2D joints of robot hands) on MuJoCo renders and save it with its accuracy"
MEASURE_HELP = ("measure a trained keypoint probe again on held-out renders, optionally reading each frame at several "
                "sizes (test-time augmentation), and save it with the new accuracy")
EVAL_HELP = "score a generated video against a simulated clip: PSNR, SSIM and the probe's 2D joint error / PCK"


def register(subparsers) -> None:
    p = subparsers.add_parser("train-probe", help=TRAIN_HELP, description=TRAIN_HELP)
    p.add_argument("--embodiment", action="append", required=True,
                   help="robot hand to cover; repeat for several (e.g. --embodiment inspire_right "
                        "--embodiment dex3_right)")
    p.add_argument("--renders", type=at.positive_int, default=4000,
                   help="training renders per embodiment (default 4000)")
    p.add_argument("--heldout", type=at.positive_int, default=256, help="held-out renders per embodiment (default 256)")
    p.add_argument("--size", type=at.side, default=128,
                   help="working size S of the probe (frames S×S, default 128)")
    p.add_argument("--head-stride", type=int, choices=(2, 4), default=2,
                   help="heatmap stride in working pixels (default 2: finger-level cells; 4 is cheaper)")
    p.add_argument("--widths", type=at.int_list(4, 4, 1024), default=None,
                   help="channels at strides 2, 4, 8, 16, comma-separated (default 16,32,64,96; with --init: "
                        "the init probe's)")
    p.add_argument("--hand-style", choices=("simple", "detailed", "mixed"), default="mixed",
                   help="hand geometry of the renders (default mixed: simple and detailed scenes alternate, so the "
                        "probe reads clips of either style)")
    p.add_argument("--two-hands", type=at.probability, default=0.0,
                   help="fraction of training scenes that also hold each hand's mirror twin as a distractor, so the "
                        "probe reads one hand of a pair (default 0: one-hand frames only); adds a two-hand held-out "
                        "set")
    p.add_argument("--hidden-weight", type=at.positive_float, default=1.0,
                   help="weight of the coordinate loss on joints the camera does not see (default 1: all alike); "
                        "other than 1, training renders also get visibility flags (depth + segmentation)")
    p.add_argument("--sample-weight", action="append", default=[], metavar="EMBODIMENT=W",
                   help="draw this embodiment's renders W times as often as one of weight 1 (default 1 each); "
                        "repeat per embodiment, e.g. --sample-weight dex3_right=1.5")
    p.add_argument("--steps", type=at.positive_int, default=2500, help="optimisation steps (default 2500)")
    p.add_argument("--batch-size", type=at.positive_int, default=32, help="batch size (default 32)")
    p.add_argument("--lr", type=at.positive_float, default=3e-3, help="peak learning rate (default 3e-3)")
    p.add_argument("--seed", type=at.seed, default=0, help="seed of renders and training (default 0)")
    p.add_argument("--init", type=Path, default=None,
                   help="continue from this trained probe folder (its widths and head stride; same embodiments and "
                        "size) with a new learning-rate cycle of --steps")
    p.add_argument("--out", type=Path, required=True, help="output folder (weights, config.json, accuracy.json)")
    p.add_argument("--save-every", type=at.int_range(0), default=500,
                   help="save the training state to OUT/train_state.pt every this many steps, so a killed run can "
                        "--resume (default 500; 0: never); removed once the probe is saved")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out (same command otherwise): renders again from the "
                        "seed, then trains from its last saved step")
    p.add_argument("--test-time-sizes", type=at.sides16, default=None, metavar="S1,S2,...",
                   help="sizes the probe reads each frame at, positions averaged, e.g. 128,144,160 (default: "
                        "with --init the init probe's, else the working size alone)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_train)

    m = subparsers.add_parser("measure-probe", help=MEASURE_HELP, description=MEASURE_HELP)
    m.add_argument("--probe", type=Path, required=True, help="trained probe folder (from `dexworld train-probe`)")
    m.add_argument("--out", type=Path, required=True,
                   help="folder to save the probe with its new accuracy in (may be --probe itself)")
    m.add_argument("--test-time-sizes", type=at.sides16, default=None, metavar="S1,S2,...",
                   help="sizes to read each frame at, positions averaged, e.g. 128,144,160 (default: the probe's "
                        "own; its working size alone, e.g. 128, reads it plainly)")
    m.add_argument("--heldout", type=at.positive_int, default=None,
                   help="held-out renders per embodiment (default: as many as the probe was measured on)")
    m.add_argument("--seed", type=at.seed, default=None,
                   help="seed of the held-out renders (default: the probe's own held-out seed, so the figures "
                        "compare with the ones it was saved with)")
    m.add_argument("--no-progress", action="store_true", help="no progress bars")
    m.set_defaults(func=run_measure)

    e = subparsers.add_parser("evaluate", help=EVAL_HELP, description=EVAL_HELP)
    e.add_argument("--video", type=Path, required=True, help="generated video (.mp4/.gif) or frames (.npy (T,H,W,3))")
    e.add_argument("--clip", type=Path, required=True,
                   help="reference clip (.h5 from `dexworld synth`): simulated frames + commanded joints with K")
    e.add_argument("--probe", type=Path, default=None,
                   help="keypoint probe folder (default: the shipped worldmodel/checkpoints/probe)")
    e.add_argument("--no-probe", action="store_true", help="skip the keypoint probe (PSNR/SSIM only)")
    e.add_argument("--device", type=at.device, default=None, help="torch device of the keypoint probe (default cpu)")
    e.add_argument("--out", type=Path, default=Path("metrics.json"),
                   help="metrics file to write (default metrics.json)")
    e.set_defaults(func=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from sim_bridge.probe_renders import render_probe_sets, render_two_hand_heldout
    from worldmodel.evaluation.probe import DEFAULT_WIDTHS, eval_sizes_for, load_probe
    from worldmodel.evaluation.probe_training import init_mismatch, train_probe

    init = None
    if args.init is not None:
        from embodiments import get

        init = load_probe(args.init)
        if (bad := init_mismatch(init, [get(e).name for e in args.embodiment], args.size)) is not None:
            raise ValueError(f"--init {args.init}: that {bad}; give the same --embodiment list and --size")
        if args.widths is not None and list(args.widths) != list(init.config.widths):
            raise ValueError(f"--widths {','.join(map(str, args.widths))}: --init {args.init} has widths "
                             f"{','.join(map(str, init.config.widths))}; leave --widths out to continue it")
    sample_weights = _sample_weights(args.sample_weight, args.embodiment)
    _check_resume(args, sample_weights)
    eval_sizes = eval_sizes_for(args.size)
    train, heldout, info = render_probe_sets(args.embodiment, args.renders, args.heldout, args.size, max(eval_sizes),
                                             seed=args.seed, progress=not args.no_progress,
                                             hand_style=args.hand_style, two_hands=args.two_hands,
                                             visibility=args.hidden_weight != 1.0)
    pairs = None
    if args.two_hands > 0:
        pairs = render_two_hand_heldout(args.embodiment, args.heldout, args.size, seed=args.seed,
                                        progress=not args.no_progress, hand_style=args.hand_style)
    report = train_probe(train, heldout, size=args.size, steps=args.steps, out_dir=args.out, seed=args.seed,
                         batch_size=args.batch_size, lr=args.lr, progress=not args.no_progress,
                         eval_sizes=eval_sizes, data_info=info, head_stride=args.head_stride, init=init,
                         widths=args.widths or DEFAULT_WIDTHS, heldout_two_hands=pairs,
                         hidden_weight=args.hidden_weight, sample_weights=sample_weights,
                         save_every=args.save_every, resume=args.resume, test_time_sizes=args.test_time_sizes)
    _print_probe_table(report.heldout, report.size)
    for emb, m in (report.model.config.train_info.get("two_hand_heldout") or {}).items():
        print(f"{emb} beside its mirror twin (two-hand held-out renders, {report.size}²): {m['mean_px']:.2f} px, "
              f"PCK@5px {m['pck@5px']:.3f}")
    print(f"{report.num_parameters:,} parameters; rendering {report.render_seconds:.0f} s, training "
          f"{report.train_seconds:.0f} s; loss {report.loss_first:.3f} → {report.loss_last:.3f}; saved to {args.out}")
    return 0


def run_measure(args: argparse.Namespace) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from sim_bridge.probe_renders import HELDOUT_RENDERS_PER_SCENE, render_heldout
    from worldmodel.evaluation.probe import ACCURACY_FILE, eval_sizes_for, load_probe
    from worldmodel.evaluation.probe_training import measure_probe, save_probe

    probe = load_probe(args.probe)
    info = probe.config.train_info or {}
    last = {**info, **info.get("measured", {})}  # the renders its recorded figures come from
    seed = args.seed if args.seed is not None else last.get("heldout_seed")
    num = args.heldout or last.get("num_heldout")
    if seed is None or num is None:
        raise ValueError(f"--probe {args.probe}: its config records no held-out seed and count; give --seed and "
                         "--heldout")
    style = info.get("hand_style", "simple")
    names = list(probe.config.embodiments)
    t0 = time.perf_counter()
    held = [render_heldout(e, num, max(eval_sizes_for(probe.config.size)), seed, not args.no_progress, style)
            for e in names]
    pairs = None
    if "two_hand_heldout" in info:
        pairs = [render_heldout(e, num, probe.config.size, seed, not args.no_progress, style, two_hands=1.0)
                 for e in names]
    record = {"heldout_seed": int(seed), "num_heldout": int(num), "heldout_renders_per_scene":
              HELDOUT_RENDERS_PER_SCENE, "hand_style": style, "render_seconds": round(time.perf_counter() - t0, 1)}
    sizes = args.test_time_sizes or probe.config.get("test_time_sizes")
    table = measure_probe(probe, held, record, sizes, pairs)
    kept = {}
    if (args.probe / ACCURACY_FILE).exists():  # the training log and loss curve stay with the weights
        old = json.loads((args.probe / ACCURACY_FILE).read_text())
        kept = {k: old[k] for k in ("loss_first", "loss_last", "num_parameters", "log") if k in old}
    save_probe(probe, args.out, accuracy_extra=kept)
    _print_probe_table(table, int(probe.config.size))
    print(f"read at {', '.join(map(str, sizes)) if sizes else probe.config.size}; held-out seed {seed}, {num} renders "
          f"per hand; saved to {args.out}")
    return 0


def _check_resume(args: argparse.Namespace, sample_weights: list[float] | None) -> None:
    """Before any rendering: --out holds an interrupted run exactly when --resume is given, and it is this run."""
    from embodiments import get
    from worldmodel.evaluation.probe_resume import (
        TRAIN_STATE_FILE,
        read_train_state,
        resume_mismatch,
        train_fingerprint,
    )

    state = read_train_state(args.out) if args.out.is_dir() else None
    if state is None:
        if args.resume:
            raise ValueError(f"--resume: no interrupted run in --out {args.out} (no {TRAIN_STATE_FILE})")
        return
    done = f"step {state['step']} of {state['fingerprint'].get('steps')}"
    if not args.resume:
        raise ValueError(f"--out {args.out} holds an interrupted run's {TRAIN_STATE_FILE} ({done}): add --resume "
                         "to continue it, or choose another --out")
    now = train_fingerprint([get(e).name for e in args.embodiment], args.size, args.renders, args.steps,
                            args.batch_size, args.lr, args.seed, args.hidden_weight, sample_weights,
                            args.hand_style, args.two_hands)
    if (bad := resume_mismatch(state, now)) is not None:
        raise ValueError(f"--resume: the run in --out {args.out} ({done}) was started with {bad}; give the same "
                         "options to continue it")
    print(f"resuming the run in {args.out} at {done}")


def _sample_weights(items: list[str], embodiments: list[str]) -> list[float] | None:
    """``--sample-weight NAME=W`` entries as one weight per ``--embodiment`` (1 where not given), or None."""
    if not items:
        return None
    from embodiments import get

    names = [get(e).name for e in embodiments]
    weights = dict.fromkeys(names, 1.0)
    for item in items:
        name, sep, value = item.partition("=")
        try:
            w = float(value)
        except ValueError:
            w = 0.0
        if not sep or not 0 < w < float("inf"):
            raise ValueError(f"--sample-weight {item}: expected EMBODIMENT=W with W a positive number")
        try:
            key = get(name).name
        except KeyError:
            key = name
        if key not in weights:
            raise ValueError(f"--sample-weight {item}: {name} is not one of the --embodiment hands "
                             f"({', '.join(names)})")
        weights[key] = w
    return [weights[n] for n in names]


def _print_probe_table(heldout: dict, size: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"keypoint probe, held-out renders (working size {size}²)")
    for col in ("embodiment", "frame size", "mean px", "median px", "visible px", "hidden px", "PCK@5px",
                "visibility acc", "joints (hidden)"):
        table.add_column(col, justify="left" if col == "embodiment" else "right")

    def px(v) -> str:
        return "—" if v is None else f"{v:.2f}"

    for emb, by_size in heldout.items():
        for s, m in sorted(by_size.items(), key=lambda kv: int(kv[0])):
            hidden = m.get("occluded_fraction")
            joints = str(m["n"]) if hidden is None else f"{m['n']} ({hidden:.0%})"
            table.add_row(emb, f"{s}²", px(m["mean_px"]), px(m["median_px"]), px(m.get("visible_mean_px")),
                          px(m.get("occluded_mean_px")), f"{m['pck@5px']:.3f}", f"{m['visibility_acc']:.3f}",
                          joints)
    Console().print(table)


def _read_video(path: Path):
    import numpy as np

    if not path.exists():
        raise FileNotFoundError(f"no video at {path}")
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    import imageio.v3 as iio

    frames = np.asarray(iio.imread(path, index=None))
    if frames.ndim == 4 and frames.shape[-1] == 4:
        frames = frames[..., :3]
    return frames


def run_evaluate(args: argparse.Namespace) -> int:
    from embodiments.clip import read_clip
    from embodiments.io_utils import atomic_path
    from worldmodel.evaluation.report import evaluate

    video = _read_video(args.video)
    clip = read_clip(args.clip)
    probe = None
    if not args.no_probe:
        from worldmodel.evaluation.probe import load_probe

        probe = load_probe(args.probe)
        if args.device:
            probe.to(args.device)
    report = evaluate(video, clip, probe=probe)
    metrics = report.to_dict()
    metrics.update({"video": str(args.video), "clip": str(args.clip)})
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    from rich.console import Console

    Console().print(report.table())
    print(f"wrote {args.out}")
    return 0
