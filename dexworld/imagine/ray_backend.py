"""``imagine --backend ray``: one Ray task per shard, on a running cluster (``--ray-address``) or a local one."""

from __future__ import annotations

import dataclasses

from .runner import ImagineConfig, ShardReport, run_shard


def _task(cfg: ImagineConfig, rank: int, world: int) -> ShardReport:
    return run_shard(dataclasses.replace(cfg, progress=False), rank, world)


def run_ray(cfg: ImagineConfig, address: str | None = None, shards: int | None = None,
            gpus_per_task: float | None = None) -> list[ShardReport]:
    """Run every shard as a Ray task and return their reports (the caller merges). Uses the running Ray session
    if there is one, else ``ray.init(address=address)``."""
    import ray
    from tqdm import tqdm

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    resources = ray.cluster_resources()
    cluster_gpus = int(resources.get("GPU", 0))
    gpus = (1.0 if cluster_gpus else 0.0) if gpus_per_task is None else float(gpus_per_task)
    world = shards or cluster_gpus or 2
    if world < 1:
        raise ValueError(f"--shards must be >= 1, got {world}")
    if gpus and cfg.device is None:
        cfg = dataclasses.replace(cfg, device="cuda")
    elif not gpus and cfg.device is None:
        cfg = dataclasses.replace(cfg, device="cpu")
    remote = ray.remote(num_cpus=1, num_gpus=gpus)(_task)
    pending = [remote.remote(cfg, r, world) for r in range(world)]
    reports = []
    with tqdm(total=world, desc="imagine (ray shards)", unit="shard", disable=not cfg.progress) as bar:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            reports += ray.get(ready)
            bar.update(len(ready))
    return reports
