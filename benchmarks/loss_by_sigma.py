"""Where along the noise schedule a video model errs: its flow-matching error on held-out clips at fixed noise levels.

Training draws σ from a shifted logit-normal (shift 5 by default, Wan's): half the draws lie above σ ≈ 0.83 and
about 1.4 % below 0.36, where a 10-step sampler takes its last step to a clean frame. This reports, for each
checkpoint and each σ of ``--sigmas``, the mean squared error of the predicted flow over held-out clips, with the
joints (control on) and with every joint invalid (control off), on the whole latent and on the latent cells that see
the hand (the stage-2 hand loss's cells). Every checkpoint sees the same noise (drawn from the trainer's per-sample
generators, seed 0), so the columns compare the models, not the draws. The control-on / control-off ratio per σ
shows where the joints matter::

    .venv/bin/python benchmarks/loss_by_sigma.py --checkpoints shipped outputs/c15_s2_x \\
        --data outputs/tiny_sim/data/heldout_scenes --limit 16
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHIPPED = "worldmodel/checkpoints/tiny-sim"
DEFAULT_SIGMAS = (0.05, 0.1, 0.2, 0.36, 0.5, 0.7, 0.83, 0.95)


def _subset(data: Path, n: int | None, root: Path) -> Path:
    """``n`` clips spread evenly over ``data`` (all of them without ``n``), as symlinks in ``root``."""
    from embodiments.clip import find_clips

    paths = find_clips(data)
    if n is not None and n < len(paths):
        paths = [paths[round(i * len(paths) / n)] for i in range(n)]
    root.mkdir(parents=True)
    for i, p in enumerate(paths):
        (root / f"{i:06d}_{p.name}").symlink_to(p.resolve())
    return root


def errors_by_sigma(checkpoint: str, data: Path, sigmas: list[float], batch_size: int, tmp: Path) -> dict:
    """{σ: {"on", "off", "hand_on", "hand_off"}} mean squared flow error of ``checkpoint`` on the clips in ``data``."""
    from worldmodel.training.data import collate_clips
    from worldmodel.training.hand_loss import hand_term
    from worldmodel.training.trainer import TrainConfig, Trainer

    cfg = TrainConfig(preset="tiny-sim", init=checkpoint, data=str(data), out=str(tmp / "run"), steps=1,
                      batch_size=1, joint_mask_prob=0.0, control_dropout=0.0, checkpoint_every=0, progress=False)
    tr = Trainer(cfg)
    tr.model.eval()
    n = len(tr.dataset)
    sums = {s: {"on": 0.0, "off": 0.0, "hand_on": 0.0, "hand_off": 0.0} for s in sigmas}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*every joint is invalid.*")
        for lo in range(0, n, batch_size):
            batch = collate_clips([tr.dataset[i] for i in range(lo, min(lo + batch_size, n))])
            off = {**batch, "valid": torch.zeros_like(batch["valid"])}
            cells = None
            for s in sigmas:
                sigma = torch.full((len(batch["index"]),), s)
                for name, b in (("on", batch), ("off", off)):
                    sq, _ = tr.squared_error(b, sigma)
                    if cells is None:  # the commanded hand's cells, the same for the control-off pass
                        cells = tr.hand_cells(batch, sq.shape[2:])
                    sums[s][name] += float(sq.flatten(1).mean(1).sum())
                    sums[s][f"hand_{name}"] += float(hand_term(sq, cells).sum())
    return {s: {k: v / n for k, v in d.items()} for s, d in sums.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoints", nargs="+", default=["shipped"],
                    help="saved pipeline folders ('shipped': worldmodel/checkpoints/tiny-sim)")
    ap.add_argument("--data", required=True, help="folder of held-out .h5 clips")
    ap.add_argument("--limit", type=int, default=None, help="this many clips, spread evenly over the folder")
    ap.add_argument("--sigmas", type=float, nargs="+", default=list(DEFAULT_SIGMAS))
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the library's default)")
    ap.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    if not Path(args.data).is_dir():
        raise SystemExit(f"--data {args.data}: not a folder of clips")
    if any(not 0.0 < s <= 1.0 for s in args.sigmas):
        raise SystemExit(f"--sigmas: each must be in (0, 1], got {args.sigmas}")
    if args.threads:
        torch.set_num_threads(args.threads)
    from dexworld.progress import quiet_library_progress

    quiet_library_progress()
    names = [SHIPPED if c == "shipped" else c for c in args.checkpoints]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = _subset(Path(args.data), args.limit, Path(tmp) / "clips")
        for i, c in enumerate(names):
            results[c] = errors_by_sigma(c, data, args.sigmas, args.batch_size, Path(tmp) / f"m{i}")
            print(f"{c}: done", flush=True)
    first = results[names[0]]
    print(f"\nflow MSE per noise level, control on (off); hand cells on (off); ratio to {names[0]} in brackets")
    for c in names:
        print(f"\n{c}")
        print("  σ      all, on      all, off    hand, on     hand, off   on/off (hand)")
        for s in args.sigmas:
            r, b = results[c][s], first[s]
            print(f"  {s:<5g} {r['on']:.4f} [{r['on'] / b['on']:.3f}] {r['off']:.4f}  {r['hand_on']:.4f} "
                  f"[{r['hand_on'] / b['hand_on']:.3f}] {r['hand_off']:.4f}  {r['on'] / r['off']:.3f} "
                  f"({r['hand_on'] / r['hand_off']:.3f})")
    if args.out:
        from embodiments.io_utils import atomic_path

        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps({"data": args.data, "limit": args.limit, "results": {
                c: {str(s): v for s, v in r.items()} for c, r in results.items()}}, indent=1))


if __name__ == "__main__":
    main()
