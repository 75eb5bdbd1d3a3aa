"""Multi-process training helpers on top of accelerate: the accelerator, per-sample randomness, micro-batches.

accelerate does the process-group set-up, DDP/FSDP wrapping, per-rank data sharding (``prepare`` on the
DataLoader: rank r of P takes batches r, r + P, …) and mixed precision; the launch recipe lives in
``configs/accelerate/*.yaml`` and docs/scaling.md. What is ours:

- randomness per *sample*, not per process: noise, σ and joint masks of a sample are a pure function of
  (seed, optimiser step, dataset index), so P processes × batch b draw exactly what 1 process × batch P·b draws and
  the loss curves agree up to float reduction order;
- gradient accumulation as explicit micro-batch groups (``no_sync`` on all but the last), so one ``step`` is one
  optimiser step whatever the accumulation, and a resume position is a sample count that converts between
  process counts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import numpy as np
import torch

__all__ = ["make_accelerator", "sample_generator", "micro_batches", "global_mean", "offload_encoders",
           "no_sync_unless_last", "is_fsdp"]


def make_accelerator(cfg):
    """An ``Accelerator`` for a :class:`~worldmodel.training.TrainConfig`.

    Launch-time settings (``accelerate launch --config_file …``: DDP/FSDP, processes, machines) come from the
    environment accelerate sets; ``mixed_precision`` comes from the config. Accumulation is done by the trainer
    (see :func:`micro_batches`), so the accelerator's own counter stays at 1.
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, GradientAccumulationPlugin

    # num_steps=1 explicitly: accelerate would otherwise take ACCELERATE_GRADIENT_ACCUMULATION_STEPS from a launch
    # config and divide every loss by it a second time. TrainConfig.gradient_accumulation_steps is the only knob.
    # even_batches: every rank gets the same number of batches per epoch (the short tail wraps around), so all
    # ranks take the same optimiser steps and no collective waits forever.
    acc = Accelerator(mixed_precision=cfg.mixed_precision,
                      gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=1),
                      dataloader_config=DataLoaderConfiguration(even_batches=True))
    if is_fsdp(acc):
        # The control module runs before the wrapped transformer call and checkpoints read the unwrapped modules;
        # under FSDP both would see sharded parameters. Refuse clearly instead of failing deep inside torch.
        raise ValueError("FSDP launch configs are not supported by the trainer yet (configs/accelerate/"
                         "fsdp_1node_8gpu.yaml is the planned recipe); use configs/accelerate/ddp_1node_8gpu.yaml "
                         "with --base-dtype bfloat16 --gradient-checkpointing, which fits 80 GB GPUs "
                         "(docs/scaling.md)")
    return acc


def sample_generator(seed: int, step: int, index: int) -> torch.Generator:
    """CPU generator for one sample: a pure function of (seed, optimiser step, dataset index)."""
    seq = np.random.SeedSequence([int(seed), int(step), int(index)])
    return torch.Generator("cpu").manual_seed(int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1)))


def micro_batches(loader: Iterable[dict], n: int) -> Iterator[list[dict]]:
    """Group consecutive batches into lists of ``n`` (one optimiser step each); a short tail is dropped."""
    group: list[dict] = []
    for batch in loader:
        group.append(batch)
        if len(group) == n:
            yield group
            group = []


def no_sync_unless_last(accelerator, model, i: int, n: int):
    """DDP's ``no_sync`` for micro-batches 0..n-2 (gradients all-reduced once, after the last)."""
    if i == n - 1 or accelerator.num_processes == 1:
        return contextlib.nullcontext()
    return accelerator.no_sync(model)


def global_mean(accelerator, value: torch.Tensor) -> float:
    """Mean of a per-process scalar over all processes (equal per-process batch sizes assumed)."""
    return float(accelerator.reduce(value.detach().float().reshape(1).to(accelerator.device), reduction="mean"))


def is_fsdp(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def offload_encoders(modules: Iterable[torch.nn.Module | None], device: torch.device) -> None:
    """Keep frozen encoders' weights in CPU memory; accelerate's hooks move each layer to ``device`` when it runs.

    For the 14B preset the UMT5 encoder alone is ~11 GB in bf16; with a cache (``dexworld cache``) the encoders
    are not needed at all during training, which is the better option.
    """
    from accelerate import cpu_offload

    for m in modules:
        if m is not None:
            cpu_offload(m, execution_device=device)
