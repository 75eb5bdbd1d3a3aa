"""Does test-time augmentation (shifted copies of each frame, predictions shifted back and averaged) lower the
keypoint probe's held-out error enough to matter for the ≤ 2.5 px goal?

Renders the probe's own held-out set (``render_heldout`` with the seed and hand style recorded in the probe's
``train_info``, 256 frames per hand), predicts each frame plainly (the baseline: what ``KeypointProbe.predict``
and every reported figure use) and as the mean over 5 and 9 integer shifts (±1, ±2 px, circular, so no padding
edits the image), and prints the mean error on all, visible and hidden joints and the ratio TTA / plain.

    MUJOCO_GL=egl .venv/bin/python benchmarks/probe_tta.py
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from sim_bridge.probe_renders import render_heldout
from worldmodel.evaluation.probe import frames_to_tensor, load_probe, soft_argmax

SHIFTS = [(0, 0), (2, 0), (-2, 0), (0, 2), (0, -2), (1, 1), (-1, -1), (1, -1), (-1, 1)]


@torch.no_grad()
def shifted_predictions(probe, images: np.ndarray, embodiment: str) -> np.ndarray:
    """(len(SHIFTS), N, 21, 2): the probe's hand-local joints for each circularly shifted copy, shifted back."""
    x = frames_to_tensor(images)
    if x.shape[-1] != probe.config.size:
        raise ValueError(f"renders are {x.shape[-1]}², the probe works at {probe.config.size}²")
    out = []
    for dx, dy in SHIFTS:
        heat, _ = probe(torch.roll(x, shifts=(dy, dx), dims=(2, 3)), embodiment)
        out.append(soft_argmax(heat, probe.stride).numpy() - np.array([dx, dy]))
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--probe", default=None, help="probe folder (default: the shipped one)")
    ap.add_argument("--renders", type=int, default=None, help="held-out renders per hand (default: the probe's)")
    a = ap.parse_args()
    probe = load_probe(a.probe)
    info = probe.config.train_info or {}
    size = int(probe.config.size)
    for name in probe.config.embodiments:
        data = render_heldout(name, a.renders or int(info.get("num_heldout", 256)), size,
                              int(info.get("heldout_seed", 1000000)), progress=False,
                              hand_style=info.get("hand_style", "mixed"))
        preds = shifted_predictions(probe, data.images, name)
        seen = np.asarray(data.visible, bool)[data.valid]
        rows = {}
        for k in (1, 5, 9):
            err = np.linalg.norm(preds[:k].mean(0) - data.uv, axis=-1)[data.valid]
            rows[k] = (err.mean(), err[seen].mean(), err[~seen].mean())
        print(f"{name}: {data.valid.sum()} joints, {(~seen).mean():.0%} hidden")
        for k, (m, v, h) in rows.items():
            label = "plain (baseline)" if k == 1 else f"mean of {k} shifts"
            print(f"  {label:<18} all {m:.3f} px  visible {v:.3f}  hidden {h:.3f}  ratio {m / rows[1][0]:.3f}")


if __name__ == "__main__":
    main()
