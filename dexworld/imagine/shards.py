"""Shard datasets of a multi-process ``imagine`` run and their merge into the output dataset.

Each rank (or Ray task) appends to its own LeRobot dataset ``.<name>.shards/shard-<rank>`` beside the output
folder ``<name>`` (the same place ``sim_bridge.lerobot_io`` keeps its staging copy and lock). The merge aggregates the
output dataset (when it exists) and every shard with lerobot's ``aggregate_datasets`` into a staging folder, adds the
concatenated dexworld sidecar, swaps it in with two renames and only then deletes the shards. A killed merge leaves
either the old output plus the shards (redone on the next run) or the merged output plus shards whose episodes it
already holds (those shards are deleted, not merged twice).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from embodiments.io_utils import atomic_path
from sim_bridge.lerobot_io import SIDECAR, _failpoint, _ffmpeg_warnings_only, _quiet_lerobot, read_sidecar, recover


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


def done_keys(root: Path) -> set[str]:
    """Keys of the episodes already written: in the output dataset and in every shard."""
    recover(root)
    keys = set(_keys(root))
    for s in _shards(root):
        keys.update(_keys(s))
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
