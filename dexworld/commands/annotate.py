"""``dexworld annotate DETECTIONS… -o clips/``: hand detections + videos → tracked, filtered training clips."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from .. import argtypes as at


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``annotate`` subcommand."""
    p = subparsers.add_parser(
        "annotate", help="turn per-frame hand detections of egocentric videos into tracked, filtered training clips",
        description="Track two hands through per-frame detections (JSON/NPZ/HDF5, see docs/annotation.md), drop "
                    "low-quality clips, mirror right-hand clips into the canonical space and write HDF5 clips.")
    p.add_argument("detections", nargs="+", help="detections files (.json, .npz, .h5)")
    p.add_argument("--video", help="video file (overrides the path in the detections; only with one video)")
    p.add_argument("-o", "--out", required=True, help="output folder for the clips and annotation_report.json")
    p.add_argument("--workers", type=at.positive_int, default=1, help="parallel processes (default 1)")
    p.add_argument("--ray", action="store_true", help="run videos as Ray tasks (needs ray installed)")
    p.add_argument("--ray-address", default=None, help="Ray cluster address, e.g. 'auto' (with --ray)")
    p.add_argument("--clip-frames", type=at.frames, default=81, help="frames per clip (default 81)")
    p.add_argument("--clip-stride", type=at.positive_int, default=None,
                   help="source frames between clip starts (default: clip length × frame step, no overlap)")
    p.add_argument("--frame-step", type=at.positive_int, default=1, help="take every n-th source frame (default 1)")
    p.add_argument("--mirror", choices=("none", "right_only", "right_dominant"), default="right_only",
                   help="canonical mirroring of right-hand clips (default right_only)")
    p.add_argument("--mano-dir", default=None, help="folder with MANO_LEFT.pkl / MANO_RIGHT.pkl (for MANO-only "
                                                    "detections)")
    p.add_argument("--prompt", default="", help="text prompt stored in every clip")
    p.add_argument("--dry-run", action="store_true",
                   help="decide every clip and print the table, but read no video and write nothing (no clip, no "
                        "report)")
    g = p.add_argument_group("tracking")
    g.add_argument("--handedness-weight", type=at.nonnegative_float, default=0.05, help="λ, metres (default 0.05)")
    g.add_argument("--swap-margin", type=at.nonnegative_float, default=0.02, help="τ_swap, metres (default 0.02)")
    g.add_argument("--max-gap", type=at.nonnegative_int, default=10, help="τ_gap, frames (default 10)")
    g.add_argument("--new-track-cost", type=at.nonnegative_float, default=0.15, help="cost of opening a track, metres")
    g = p.add_argument_group("filters")
    g.add_argument("--min-hand-presence", type=at.probability, default=0.20, help="default 0.20")
    g.add_argument("--min-mano-density", type=at.probability, default=0.05, help="default 0.05")
    g.add_argument("--max-extra-hands", type=at.probability, default=0.25,
                   help="largest fraction of frames with more than two hands (default 0.25)")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace):
    from sim_bridge.annotation import AnnotationConfig, FilterConfig, TrackerConfig

    return AnnotationConfig(
        clip_frames=args.clip_frames, clip_stride=args.clip_stride, frame_step=args.frame_step, mirror=args.mirror,
        prompt=args.prompt, mano_dir=args.mano_dir,
        tracker=TrackerConfig(handedness_weight=args.handedness_weight, swap_margin=args.swap_margin,
                              max_gap=args.max_gap, new_track_cost=args.new_track_cost),
        filters=FilterConfig(min_hand_presence=args.min_hand_presence, min_mano_density=args.min_mano_density,
                             max_extra_hand_fraction=args.max_extra_hands))


def run(args: argparse.Namespace) -> int:
    """Annotate; print a summary table. Returns 1 if any video failed (its error is listed), else 0."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from embodiments.io_utils import atomic_path
    from sim_bridge.annotation import DROP_REASONS, annotate_videos, load_detections

    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    config = _config(args)
    videos = [v for path in args.detections for v in load_detections(path)]
    if args.video:
        if len(videos) != 1:
            raise ValueError(f"--video names one video but the detections hold {len(videos)}; put the paths in "
                             "the detections files instead")
        videos = [dataclasses.replace(videos[0], video=args.video)]
    if args.ray:
        from sim_bridge.annotation.ray_adapter import _ray

        try:
            _ray()
        except ImportError as e:  # reported as a one-line user error, not a traceback
            raise ValueError(str(e)) from None
    out = Path(args.out)
    console = Console(stderr=True)
    with Progress(TextColumn("annotating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[last]}"), console=console, transient=True) as progress:
        task = progress.add_task("videos", total=len(videos), last="")

        def done(rep) -> None:
            progress.update(task, advance=1, last=f"{rep.video_id}: {rep.kept} kept")

        if args.ray:
            from sim_bridge.annotation.ray_adapter import annotate_with_ray

            reports = annotate_with_ray(videos, out, config, address=args.ray_address, write=not args.dry_run,
                                        on_done=done)
        else:
            reports = annotate_videos(videos, out, config, workers=args.workers, write=not args.dry_run,
                                      on_done=done)

    if not args.dry_run:  # a dry run writes nothing, not even the report
        with atomic_path(out / "annotation_report.json") as tmp:
            tmp.write_text(json.dumps({"config": dataclasses.asdict(config),
                                       "videos": [dataclasses.asdict(r) for r in reports]}, indent=1))

    dropped = {r: 0 for r in DROP_REASONS}
    for rep in reports:
        for reason, n in rep.dropped_by_reason().items():
            dropped[reason] += n
    kept = sum(r.kept for r in reports)
    table = Table(title=f"dexworld annotate: {len(reports)} videos → {out}")
    table.add_column("outcome")
    table.add_column("clips", justify="right")
    table.add_row("kept" + (" (dry run, not written)" if args.dry_run else ""), str(kept))
    for reason, n in dropped.items():
        table.add_row(f"dropped: {reason}", str(n))
    table.add_row("mirrored (canonical)", str(sum(c.mirrored for r in reports for c in r.clips)))
    table.add_row("hands dropped for NaN/inf", str(sum(r.nonfinite_hands for r in reports)))
    table.add_row("frames with NaN/inf hands", str(sum(r.nonfinite_frames for r in reports)))
    table.add_row("identity swaps taken / refused", f"{sum(r.swaps for r in reports)} / "
                                                    f"{sum(r.swaps_blocked for r in reports)}")
    failed = [r for r in reports if r.error]
    table.add_row("videos failed", str(len(failed)))
    Console().print(table)
    for r in failed:
        console.print(f"[red]{r.video_id}[/red]: {r.error}", soft_wrap=True, markup=True, highlight=False)
    print("dry run: nothing written" if args.dry_run else f"report: {out / 'annotation_report.json'}")
    return 1 if failed else 0
