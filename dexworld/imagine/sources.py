"""Source episodes of ``dexworld imagine``: a LeRobot dataset of robot episodes or a folder of training clips.

Every read of a source goes through this module (LeRobot datasets through ``sim_bridge.lerobot_io.import_lerobot``,
clips through ``sim_bridge.clips.episode_from_clip``), so a change of the source readers touches one place.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from sim_bridge.clips import take_frames
from sim_bridge.lerobot_io import Episode


@dataclasses.dataclass
class SourceEpisode:
    """A source episode cut to the frames imagined: ``dataset`` and ``index`` say where it came from."""

    id: str
    dataset: str
    index: int
    episode: Episode


def load_sources(path: Path, num_frames: int, hands: list[str] | None = None, camera: str | None = None,
                 robot: str | None = None, episodes: list[int] | None = None) -> list[SourceEpisode]:
    """The first ``num_frames`` frames of every episode of a LeRobot dataset (folder with ``meta/info.json``) or of
    every clip (``.h5``) under a folder. Episodes shorter than ``num_frames`` raise a ValueError."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"SOURCE {path} does not exist")
    if (path / "meta" / "info.json").exists():
        from sim_bridge.lerobot_io import import_lerobot

        eps = import_lerobot(path, hands=hands, camera=camera, robot=robot, episodes=episodes)
        indexed = zip(episodes if episodes is not None else range(10**9), eps, strict=False)
    else:
        from embodiments.clip import find_clips
        from sim_bridge.clips import episode_from_clip

        clips = find_clips(path)
        if not clips:
            raise ValueError(f"SOURCE {path} is neither a LeRobot dataset (meta/info.json) nor a folder of clips")
        indexed = ((i, episode_from_clip(c)) for i, c in enumerate(clips)
                   if episodes is None or i in episodes)
    out = []
    for index, ep in indexed:
        if len(ep.frames) < num_frames:
            raise ValueError(f"SOURCE episode {index} ({ep.source}) has {len(ep.frames)} frames, fewer than "
                             f"--num-frames {num_frames}")
        cut = take_frames(ep, np.arange(num_frames), ep.joints.fps)
        out.append(SourceEpisode(id=f"{path.name}#{index}", dataset=str(path.resolve()), index=int(index),
                                 episode=cut))
    if not out:
        raise ValueError(f"SOURCE {path} holds no episodes")
    return out
