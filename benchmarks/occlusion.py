"""How much occlusion clip folders hold, and of which kind: the share of in-image joint-frames hidden, split into
hidden by the hand's own palm (curled fingers under a palm-down hand) and between parts (another finger, the other
hand, an object), and the share of clips with sustained occlusion between parts (>= 3 joints in >= 50 % of frames).
Clips need the ``occluded_by`` extra (``dexworld synth --visibility`` or ``--occlusion``).

    .venv/bin/python benchmarks/occlusion.py data/ordinary data/occlusion ...
"""

from __future__ import annotations

import argparse

import numpy as np

from embodiments.clip import find_clips, read_clip
from sim_bridge.visibility import OWN_PALM, hidden_by, sustained_occlusion


def folder_stats(folder: str) -> dict[str, float]:
    counts = {"any": 0, "palm": 0, "parts": 0, "in_image": 0}
    per_frame, sustained = [], []
    for path in find_clips(folder):
        clip = read_clip(path)
        if "occluded_by" not in clip.extra:
            raise ValueError(f"{path}: no 'occluded_by' extra; synthesise with --visibility or --occlusion")
        code = np.asarray(clip.extra["occluded_by"])
        parts = hidden_by(code)
        counts["any"] += int((code > 0).sum())
        counts["palm"] += int((code == OWN_PALM).sum())
        counts["parts"] += int(parts.sum())
        counts["in_image"] += int((code >= 0).sum())
        per_frame.append(parts.sum(-1))
        sustained.append(sustained_occlusion(parts))
    n = max(counts["in_image"], 1)
    return {"clips": len(sustained), "any": counts["any"] / n, "palm": counts["palm"] / n,
            "parts": counts["parts"] / n, "parts_per_frame": float(np.concatenate(per_frame).mean()),
            "sustained": float(np.mean(sustained))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+")
    args = ap.parse_args()
    print("| folder | clips | hidden (any) | by own palm | between parts | part-hidden joints / frame "
          "| clips with sustained occlusion |")
    print("|---|---|---|---|---|---|---|")
    for f in args.folders:
        s = folder_stats(f)
        print(f"| {f} | {s['clips']} | {s['any']:.1%} | {s['palm']:.1%} | {s['parts']:.1%} | "
              f"{s['parts_per_frame']:.1f} | {s['sustained']:.0%} |")


if __name__ == "__main__":
    main()
