"""How well does a keypoint probe read each hand of a two-hand frame? The check behind ``reads_two_hands``.

For every clip under ``--data`` (two-hand clips from ``dexworld synth --embodiment X_left,X_right``), the probe reads
each hand on the simulated frames themselves (frames 1…T−1) — the probe's own floor on such frames, no model
involved — and prints the mean joint error per hand pair and hand. The baseline is a one-hand figure: the probe's
recorded held-out error for that hand.

    MUJOCO_GL=egl .venv/bin/python benchmarks/probe_two_hands.py --data outputs/tiny_sim/data/heldout_pairs
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np


def main() -> None:
    from embodiments.clip import find_clips, read_clip
    from worldmodel.evaluation.probe import keypoint_error, load_probe

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="folder of two-hand clips")
    ap.add_argument("--probe", default=None, help="probe folder (default: the shipped one)")
    a = ap.parse_args()
    probe = load_probe(a.probe)
    err = defaultdict(list)
    size = None
    for path in find_clips(a.data):
        clip = read_clip(path)
        size = clip.frames.shape[1:3]
        for hand in clip.joints.embodiment.split("+"):
            r = keypoint_error(probe, clip.frames, clip.joints, embodiment=hand, frames_scored=slice(1, None))
            err[hand].append((r["mean_px"], r["n_joints"]))
    print(f"probe {a.probe or 'shipped'} (reads_two_hands={probe.reads_two_hands}) on the two-hand renders of {a.data}")
    for hand, rows in sorted(err.items()):
        e, n = np.array(rows).T
        held = probe.heldout_for(hand, size)  # the one-hand figure at the clips' frame size
        one = held["mean_px"] if held else float("nan")
        print(f"  {hand:<15} {len(rows):3d} clips  {np.average(e, weights=n):6.2f} px   one-hand held-out {one:.2f} px"
              f"   ratio {np.average(e, weights=n) / one:.1f}")


if __name__ == "__main__":
    main()
