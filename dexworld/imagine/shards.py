"""Shard datasets of a multi-process ``imagine`` run and their merge into the output dataset.

Each rank (or Ray task) appends to its own LeRobot dataset ``.<name>.shards/shard-<rank>`` beside the output
folder ``<name>`` (the same place ``sim_bridge.lerobot_io`` keeps its staging copy and lock). A rank reads and
recovers only the output and its own shard: the other shards are being written by other ranks at the same time, and
recovering one would delete the staging folder under its writer. The merge aggregates the output dataset (when it
exists) and every shard with lerobot's ``aggregate_datasets`` into a staging folder, checks that the result holds
every input episode with its files, adds the concatenated dexworld sidecar, swaps it in with two renames and only then
deletes the shards. A killed merge leaves either the old output plus the shards (redone on the next run) or the
merged output plus shards whose episodes it already holds (those shards are deleted, not merged twice).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from embodiments.io_utils import atomic_path
from sim_bridge.lerobot_io import (
    SIDECAR,
    _failpoint,
    _ffmpeg_warnings_only,
    _lock,
    _quiet_lerobot,
    read_sidecar,
    recover,
)


def shards_dir(root: Path) -> Path:
    return root.parent / f".{root.name}.shards"


def shard_root(root: Path, rank: int) -> Path:
    return shards_dir(root) / f"shard-{rank:04d}"


def _shards(root: Path) -> list[Path]:
    d = shards_dir(root)
    if not d.exists():
        return []
    out = []
    for p in sorted(d.iterdir()):
        if p.name.startswith("shard-") and p.is_dir():
            recover(p)
            if (p / "meta" / "info.json").exists():
                out.append(p)
    return out


def _keys(root: Path) -> list[str]:
    side = read_sidecar(root) if (root / "meta" / "info.json").exists() else None
    return [e["source"] for e in side["episodes"]] if side else []


def done_keys(root: Path, rank: int | None = None) -> set[str]:
    """Keys of the episodes already written: in the output dataset and, with ``rank``, in that rank's shard (left by
    an interrupted or retried task of the same rank). Other shards are not touched: their ranks may be writing them
    now, and the merge that starts every run has already folded in whatever an earlier run left."""
    recover(root)
    keys = set(_keys(root))
    if rank is not None:
        own = shard_root(root, rank)
        with _lock(own):  # a still-running earlier attempt of this rank makes this a DatasetBusy error
            recover(own)
        keys.update(_keys(own))
    return keys


def merge(root: Path, repo_id: str) -> int:
    """Merge every shard into ``root`` (resumable, see the module docstring); returns the episodes added."""
    from lerobot.datasets.aggregate import aggregate_datasets

    recover(root)
    have = set(_keys(root))
    pending = []
    for s in _shards(root):
        keys = _keys(s)
        if keys and set(keys) <= have:  # merged by a run killed before it deleted its shards
            shutil.rmtree(s)
        elif have.intersection(keys):
            raise ValueError(f"shard {s} partly overlaps {root}; remove the shard or the dataset")
        elif keys:
            pending.append(s)
    if not pending:
        _cleanup(root)
        return 0
    inputs = ([root] if (root / "meta" / "info.json").exists() else []) + pending
    staging = root.parent / f".{root.name}.merging"
    if staging.exists():
        shutil.rmtree(staging)
    _quiet_lerobot()
    with _plain_arrays(), _ffmpeg_warnings_only():
        aggregate_datasets([repo_id] * len(inputs), repo_id, roots=inputs, aggr_root=staging)
    _check_merged(staging, inputs)
    sidecars = [read_sidecar(p) for p in inputs]
    merged = {**sidecars[0], "episodes": []}
    for side in sidecars:
        for e in side["episodes"]:
            merged["episodes"].append({**e, "episode_index": len(merged["episodes"])})
    with atomic_path(staging / SIDECAR) as tmp:
        tmp.write_text(json.dumps(merged, indent=1))
    _failpoint("merge.before_swap")
    backup = root.parent / f".{root.name}.backup"  # the name lerobot_io.recover restores from
    if root.exists():
        os.rename(root, backup)
    os.rename(staging, root)
    if backup.exists():
        shutil.rmtree(backup)
    _failpoint("merge.before_cleanup")
    added = sum(len(_keys(p)) for p in pending)
    for p in pending:
        shutil.rmtree(p)
    _cleanup(root)
    return added


def _check_merged(staging: Path, inputs: list[Path]) -> None:
    """Refuse (before anything is swapped or deleted) an aggregate that lost metadata, episodes, frames or files.

    Read with lerobot's own loaders on the local folder only: ``LeRobotDataset`` would fall back to the Hub for a
    missing metadata file, which hides the loss offline and downloads someone else's dataset online.
    """
    from lerobot.datasets.io_utils import load_episodes, load_info, load_tasks

    try:
        info, episodes = load_info(staging), load_episodes(staging)
        load_tasks(staging)
        want = [load_info(p) for p in inputs]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"merging {len(inputs)} datasets into {staging} lost metadata ({e}); the output and the "
                         "shards are untouched, rerun to merge again") from None
    n_eps, n_frames = sum(i.total_episodes for i in want), sum(i.total_frames for i in want)
    missing = []
    for ep in episodes:
        files = [info.data_path.format(chunk_index=ep["data/chunk_index"], file_index=ep["data/file_index"])]
        for key in (k for k, f in info.features.items() if f["dtype"] == "video"):
            files.append(info.video_path.format(video_key=key, chunk_index=ep[f"videos/{key}/chunk_index"],
                                                file_index=ep[f"videos/{key}/file_index"]))
        missing += [f for f in files if not (staging / f).is_file()]
    if (info.total_episodes, len(episodes), info.total_frames) != (n_eps, n_eps, n_frames) or missing:
        raise ValueError(f"merging {len(inputs)} datasets into {staging} gave {len(episodes)} episodes and "
                         f"{info.total_frames} frames (expected {n_eps} and {n_frames})"
                         + (f", missing {sorted(set(missing))[0]}" if missing else "")
                         + "; the output and the shards are untouched, rerun to merge again")


@contextlib.contextmanager
def _plain_arrays() -> Iterator[None]:
    """Read fixed-shape array columns (``observation.hand_joints`` …) as plain nested lists inside the block.

    lerobot's aggregation round-trips data files through pandas; with the ``datasets`` Array2D–5D pyarrow extension
    types registered, pandas gets their extension dtype, which pyarrow cannot convert back ("Did not pass
    numpy.dtype object"). Without them the columns are plain nested lists; the merged dataset is read with the
    features of its ``meta/info.json`` as before. The types are registered again on exit.
    """
    import pyarrow as pa
    from datasets.features import features as hf

    types = [hf.Array2DExtensionType((1, 2), "int64"), hf.Array3DExtensionType((1, 2, 3), "int64"),
             hf.Array4DExtensionType((1, 2, 3, 4), "int64"), hf.Array5DExtensionType((1, 2, 3, 4, 5), "int64")]
    for t in types:
        with contextlib.suppress(KeyError):
            pa.unregister_extension_type(t.extension_name)
    try:
        yield
    finally:
        for t in types:
            with contextlib.suppress(KeyError):
                pa.register_extension_type(t)


def _cleanup(root: Path) -> None:
    d = shards_dir(root)
    if d.exists():
        for p in d.iterdir():  # lock files of finished shards
            if p.name.startswith(".shard-") and p.name.endswith(".lock"):
                p.unlink()
        if not any(d.iterdir()):
            d.rmdir()
