"""Raw recordings → training clips and/or a LeRobot dataset, reading every episode once (shared by the Humanoid
Everyday and Unitree teleoperation readers)."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .lerobot_io import Episode


@dataclasses.dataclass
class IngestReport:
    episodes: list[str] = dataclasses.field(default_factory=list)
    clips: list[Path] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    lerobot_written: list[str] = dataclasses.field(default_factory=list)
    lerobot_skipped: list[str] = dataclasses.field(default_factory=list)


def write_episodes(episodes: Iterable[Episode], report: IngestReport, out_dir: str | os.PathLike | None,
                   lerobot_root: str | os.PathLike | None, repo_id: str | None, lerobot_fps: int | None,
                   fps: float | None = 16.0, num_frames: int | None = 81, stride: int | None = None,
                   skip_bad: bool = False, progress: Callable[[Episode], None] | None = None) -> IngestReport:
    """Clips (``fps``, windows of ``num_frames``) in ``out_dir`` and/or a LeRobot dataset at ``lerobot_fps`` (None:
    the episodes' own rate) in ``lerobot_root``; clip files are named after each episode's source id."""
    from .clips import write_episode_clips
    from .lerobot_io import export_lerobot

    if out_dir is None and lerobot_root is None:
        raise ValueError("nothing to write: give out_dir (clips) and/or lerobot_root")

    def stream() -> Iterator[Episode]:
        for ep in episodes:
            if out_dir is not None:
                stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", ep.source)
                report.clips += write_episode_clips(ep, out_dir, stem, fps=fps, num_frames=num_frames, stride=stride)
            if progress:
                progress(ep)
            yield ep

    if lerobot_root is not None:
        rep = export_lerobot(stream(), repo_id or f"local/{Path(lerobot_root).name}", lerobot_root,
                             fps=lerobot_fps, camera="ego", skip_bad=skip_bad)
        report.lerobot_written, report.lerobot_skipped = rep.written, rep.skipped
        report.failed += rep.failed
    else:
        for _ in stream():
            pass
    return report
