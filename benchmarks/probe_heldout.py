"""Score several keypoint probes on the same held-out renders, so probes trained with different held-out seeds
(each stage of ``train-probe --init`` draws its own) can be compared on one footing.

For every held-out seed given, renders ``--renders`` frames per hand (``render_heldout``: scenes no training
stage shares, the mixed hand style) and prints each probe's mean error at 128² on all, visible and hidden joints.
The first probe is the baseline of the printed ratio. ``--embodiment`` scores other hands than the ones the first
probe was trained for, e.g. the left hands, which a probe trained on right hands reads through their mirror twins.
``--per-joint`` adds each joint's error, how often the render hides it and the error when hidden or seen, which is
where the mean comes from (hidden fingertips, above all the Dex3 thumb tip). ``--by-occluder`` groups the joints
by what hides them (own palm, own finger, object, environment) with each group's share of the mean.
``--test-time-sizes`` also scores each probe reading every frame at those sizes (positions averaged; ``128``
alone is the plain reading at the working size) and prints how long each reading takes against the probe as saved.

    MUJOCO_GL=egl .venv/bin/python benchmarks/probe_heldout.py --probe worldmodel/checkpoints/probe \\
        --probe outputs/probe4/probe --seed 1000003 --seed 1000004 --seed 1000005
    MUJOCO_GL=egl .venv/bin/python benchmarks/probe_heldout.py --probe worldmodel/checkpoints/probe \\
        --embodiment inspire_left --embodiment dex3_left --seed 1000003 --seed 1000004 --seed 1000005
    MUJOCO_GL=egl .venv/bin/python benchmarks/probe_heldout.py --probe worldmodel/checkpoints/probe \\
        --seed 1000005 --per-joint
    MUJOCO_GL=egl .venv/bin/python benchmarks/probe_heldout.py --probe worldmodel/checkpoints/probe \\
        --seed 1000003 --seed 1000004 --seed 1000005 --seed 1000006 --seed 1000007 --by-occluder
    MUJOCO_GL=egl .venv/bin/python benchmarks/probe_heldout.py --probe outputs/probe7/probe \
        --test-time-sizes 128 --test-time-sizes 112,128,144 --test-time-sizes 112,128,144,160 \
        --seed 1000003 --seed 1000004 --seed 1000005 --seed 1000006 --seed 1000007
"""

from __future__ import annotations

import argparse
import copy
import time

from dexworld.argtypes import sides16
from sim_bridge.probe_renders import render_heldout
from sim_bridge.visibility import OCCLUDER_NAMES
from worldmodel.evaluation.probe import load_probe
from worldmodel.evaluation.probe_training import evaluate_probe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--probe", action="append", required=True, help="probe folder (repeat; the first is the baseline)")
    ap.add_argument("--seed", action="append", type=int, required=True, help="held-out render seed (repeatable)")
    ap.add_argument("--renders", type=int, default=256, help="held-out renders per hand and seed (default 256)")
    ap.add_argument("--embodiment", action="append",
                    help="hand to score (repeatable; default: the ones the first probe was trained for)")
    ap.add_argument("--per-joint", action="store_true", help="also print each joint's error, visible and hidden")
    ap.add_argument("--by-occluder", action="store_true",
                    help="also print the error by what hides the joint (own palm, own finger, object, ...) and how "
                         "much of the mean each group makes")
    ap.add_argument("--test-time-sizes", action="append", type=sides16, default=[], metavar="S1,S2,...",
                    help="also score each probe reading at these sizes, positions averaged (repeatable)")
    a = ap.parse_args()
    probes = []
    for path in a.probe:
        probe = load_probe(path)
        probes.append((path, probe))
        for sizes in a.test_time_sizes:
            other = copy.deepcopy(probe)
            other.register_to_config(test_time_sizes=list(sizes))
            probes.append((f"{path} @ {','.join(map(str, sizes))}", other))
    names = a.embodiment or list(probes[0][1].config.embodiments)
    for path, probe in probes:
        for name in names:
            if not probe.knows(name):
                ap.error(f"--embodiment {name}: probe {path} reads {', '.join(probe.config.embodiments)} and their "
                         "mirror twins only")
    size = int(probes[0][1].config.size)
    for seed in a.seed:
        for name in names:
            data = render_heldout(name, a.renders, size, seed, progress=False, hand_style="mixed")
            base = base_s = None
            print(f"seed {seed}, {name}: {int(data.valid.sum())} joints")
            for path, probe in probes:
                t0 = time.perf_counter()
                r = evaluate_probe(probe, data, (size,), per_joint=a.per_joint, by_occluder=a.by_occluder)[str(size)]
                ms = 1000 * (time.perf_counter() - t0) / len(data.images)
                base, base_s = base or r["mean_px"], base_s or ms
                print(f"  {path:<40} all {r['mean_px']:.3f} px  visible {r['visible_mean_px']:.3f}  "
                      f"hidden {r['occluded_mean_px']:.3f}  PCK@5px {r['pck@5px']:.3f}  "
                      f"ratio {r['mean_px'] / base:.3f}  {ms:.1f} ms/frame ({ms / base_s:.2f}×)")
                for code, g in r.get("by_occluder", {}).items():
                    print(f"    {OCCLUDER_NAMES[code]:<12} {g['share']:6.1%} of joints  {g['mean_px']:5.2f} px  "
                          f"adds {g['adds_px']:.3f} px")
                for joint, jr in r.get("per_joint", {}).items():
                    print(f"    {joint:<11} {jr['mean_px']:5.2f} px  hidden in {jr['occluded_fraction']:4.0%}: "
                          f"{_px(jr['occluded_mean_px'])}  seen: {_px(jr['visible_mean_px'])}")


def _px(value: float | None) -> str:
    return "    – px" if value is None else f"{value:5.2f} px"


if __name__ == "__main__":
    main()
