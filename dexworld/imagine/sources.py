"""Source episodes of ``dexworld imagine``: a LeRobot dataset of robot episodes, a folder of training clips, or human
motions (``motion:NAME[,NAME…]`` built-in, or SparseJoints files of MANO hands) retargeted to a robot hand and rolled
out kinematically in MuJoCo for the reference frame and the camera-frame joints.

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
    swapped_from: str | None = None  # the source's hands ("dex3_left+dex3_right") when swapped to another hand


def swap_embodiment(src: SourceEpisode, family: str, method: str = "vector") -> SourceEpisode:
    """The episode with each hand replaced by ``family``'s hand of the same side (``inspire`` / ``dex3``): joint
    angles retargeted from the source's camera-frame sparse joints, the new hand placed by fitting its joints to
    them (Kabsch over the shared slots). The reference frame stays the source's."""
    import retarget
    from embodiments import registry
    from sim_bridge.hand_pose import fit_root_pose, hands_in_camera

    ep = src.episode
    q, roots = {}, {}
    for hand in ep.hands:
        target = f"{family}_{registry.get(hand).side}"
        if target not in registry.names():
            raise ValueError(f"--swap-to {family}: no registered hand {target!r}")
        if target == hand:
            raise ValueError(f"--swap-to {family}: source episode {src.id} already has {hand}")
        q[target] = retarget.Retargeter(hand, target, method).retarget(ep.joints)
        roots[target] = fit_root_pose(target, q[target], ep.joints)[0]
    joints = hands_in_camera(q, roots, ep.joints.K, fps=ep.joints.fps)
    swapped = Episode(frames=ep.frames, joints=joints, q=q, action=None, task=ep.task, source=ep.source,
                      T_cam_root=roots)
    return dataclasses.replace(src, episode=swapped, swapped_from="+".join(ep.hands))


MOTION_PREFIX = "motion:"


def human_sources(spec: str, to: str | None, num_frames: int, size: tuple[int, int], fps: float = 16.0,
                  method: str = "dexpilot") -> list[SourceEpisode]:
    """Human motions retargeted to robot hand ``to``: built-in names (``motion:power_grasp,pinch``) or SparseJoints
    files (``.npz``) of a MANO hand (``a.npz,b.npz``), each rolled out kinematically (the demo's wrist path)."""
    import embodiments
    import retarget
    import sim_bridge
    from dexworld.demo import wrist_path
    from embodiments.sparse import SparseJoints
    from sim_bridge.clips import episode_from_rollout

    if to is None:
        raise ValueError("human motions need --to ROBOT_HAND (e.g. inspire_right, dex3_right)")
    emb = embodiments.get(to)
    names = spec[len(MOTION_PREFIX):].split(",") if spec.startswith(MOTION_PREFIX) else spec.split(",")
    out = []
    for i, name in enumerate(names):
        if spec.startswith(MOTION_PREFIX):
            human = embodiments.human_motion(name, side=emb.side, fps=fps, frames=num_frames)
            dataset = f"builtin:{name}"
        else:
            if not Path(name).exists():
                raise FileNotFoundError(f"SOURCE motion file {name} does not exist")
            human = SparseJoints.load(name)
            if len(human) < num_frames:
                raise ValueError(f"SOURCE {name} has {len(human)} frames, fewer than --num-frames {num_frames}")
            human = human[:num_frames]
            dataset = str(Path(name).resolve())
        q = retarget.Retargeter(f"mano_{emb.side}", emb.name, method).retarget(human)
        sim = sim_bridge.rollout(emb, q, wrist_path(emb, num_frames), mode="kinematic", size=size, fps=fps)
        ep = episode_from_rollout(sim, task=f"a robot {emb.side} hand: {Path(name).stem} retargeted to {emb.name}",
                                  source=f"{Path(name).stem}")
        out.append(SourceEpisode(id=f"{Path(name).stem}>{emb.name}#{i}", dataset=dataset, index=i, episode=ep))
    return out


def load_sources(path: Path, num_frames: int, hands: list[str] | None = None, camera: str | None = None,
                 robot: str | None = None, episodes: list[int] | None = None, to: str | None = None,
                 size: tuple[int, int] = (128, 128), swap_to: str | None = None) -> list[SourceEpisode]:
    """The first ``num_frames`` frames of every episode of a LeRobot dataset (folder with ``meta/info.json``), of
    every clip (``.h5``) under a folder, or of human motions (see :func:`human_sources`; rendered at ``size``);
    with ``swap_to`` each robot hand is replaced by that family's (:func:`swap_embodiment`).
    Episodes shorter than ``num_frames`` raise a ValueError."""
    out = _load(path, num_frames, hands, camera, robot, episodes, to, size)
    return [swap_embodiment(s, swap_to) for s in out] if swap_to else out


def _load(path, num_frames, hands, camera, robot, episodes, to, size) -> list[SourceEpisode]:
    spec = str(path)
    if spec.startswith(MOTION_PREFIX) or spec.split(",")[0].endswith(".npz"):
        return human_sources(spec, to, num_frames, size)
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
