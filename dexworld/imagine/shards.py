"""Shard datasets of a multi-process ``imagine`` run and their merge into the output dataset.

Each rank (or Ray task) appends to its own LeRobot dataset ``.<name>.shards/shard-<rank>`` beside the output
folder ``<name>`` (the same place ``sim_bridge.lerobot_io`` keeps its staging copy and lock). The merge aggregates the
output dataset (when it exists) and every shard with lerobot's ``aggregate_datasets`` into a staging folder, adds the
concatenated dexworld sidecar, swaps it in with two renames and only then deletes the shards. A killed merge leaves
either the old output plus the shards (redone on the next run) or the merged output plus shards whose episodes it
already holds (those shards are deleted, not merged twice).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from embodiments.io_utils import atomic_path
from sim_bridge.lerobot_io import SIDECAR, _failpoint, read_sidecar, recover


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


def _cleanup(root: Path) -> None:
    d = shards_dir(root)
    if d.exists():
        for p in d.iterdir():  # lock files of finished shards
            if p.name.startswith(".shard-") and p.name.endswith(".lock"):
                p.unlink()
        if not any(d.iterdir()):
            d.rmdir()
