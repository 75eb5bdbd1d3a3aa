"""Run the per-video annotation on a Ray cluster: Ray tasks, or a Ray Data ``flat_map`` over detection files.

The work is the same :func:`~sim_bridge.annotation.pipeline.annotate_video` the process pool runs; only the
scheduling differs. ``out_dir`` must be a filesystem every node sees (NFS, a mounted bucket), because each task
writes its clips itself. ``ray`` is optional and imported only here.

Tasks (from a driver holding the parsed detections)::

    reports = annotate_with_ray(videos, "clips/", AnnotationConfig(), address="auto")

Ray Data (detections files listed in a dataset, one output row per video)::

    ds = ray.data.from_items([{"detections": p} for p in paths])
    summary = ds.flat_map(RayDataAnnotator("clips/", AnnotationConfig())).take_all()
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

from .pipeline import AnnotationConfig, VideoReport, _run_one
from .schema import VideoDetections, load_detections


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError("the Ray adapter needs Ray: pip install 'ray[data]' (or run without --ray to use local "
                          "processes)") from None
    return ray


def annotate_with_ray(videos: Sequence[VideoDetections], out_dir: str | os.PathLike,
                      config: AnnotationConfig | None = None, *, address: str | None = None, num_cpus: float = 1,
                      write: bool = True, on_done: Callable[[VideoReport], None] | None = None) -> list[VideoReport]:
    """Annotate videos as Ray tasks (one per video, ``num_cpus`` each); reports come back in input order.

    Connects to ``address`` (e.g. ``"auto"``) or starts a local Ray if none is running.
    """
    ray = _ray()
    cfg = config or AnnotationConfig()
    if not ray.is_initialized():
        ray.init(address=address)
    remote = ray.remote(num_cpus=num_cpus)(_run_one)
    refs = [remote.remote(v, str(out_dir), cfg, write) for v in videos]
    index = {ref: n for n, ref in enumerate(refs)}
    reports: list[VideoReport | None] = [None] * len(refs)
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            reports[index[ref]] = rep = ray.get(ref)
            if on_done:
                on_done(rep)
    return reports  # type: ignore[return-value]


class RayDataAnnotator:
    """Callable for ``Dataset.flat_map``: a row ``{"detections": path[, "video": path]}`` → one summary row per
    video in the file (``video_id``, ``kept``, ``dropped``, ``error`` and the per-clip records as JSON)."""

    def __init__(self, out_dir: str | os.PathLike, config: AnnotationConfig | None = None, write: bool = True):
        self.out_dir, self.config, self.write = str(out_dir), config or AnnotationConfig(), write

    def __call__(self, row: dict) -> list[dict]:
        import json

        try:
            videos = load_detections(row["detections"])
        except (ValueError, KeyError, FileNotFoundError, OSError) as e:
            return [{"video_id": "", "detections": str(row.get("detections")), "kept": 0, "dropped": 0,
                     "error": f"{type(e).__name__}: {e}", "clips": "[]"}]
        if row.get("video"):
            if len(videos) != 1:
                raise ValueError(f"{row['detections']}: 'video' given but the file holds {len(videos)} videos")
            videos = [dataclasses.replace(videos[0], video=str(row["video"]))]
        out = []
        for v in videos:
            rep = _run_one(v, self.out_dir, self.config, self.write)
            out.append({"video_id": rep.video_id, "detections": str(row["detections"]), "kept": rep.kept,
                        "dropped": len(rep.clips) - rep.kept, "error": rep.error or "",
                        "clips": json.dumps([dataclasses.asdict(c) for c in rep.clips])})
        return out
