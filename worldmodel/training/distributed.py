"""Multi-process training helpers on top of accelerate and torch FSDP2: accelerator, sharding, randomness, batches.

accelerate does the process-group set-up, DDP wrapping, per-rank data sharding (``prepare`` on the DataLoader:
rank r of P takes batches r, r + P, …) and mixed precision; the launch recipe lives in ``configs/accelerate/*.yaml``
and docs/scaling.md. What is ours:

- sharding (``TrainConfig.fsdp``): torch's FSDP2 ``fully_shard`` on every transformer block and on the transformer,
  applied here rather than through accelerate's FSDP plugin, because accelerate enables FSDP only on accelerator
  devices — so the very code that shards on GPUs is the code the 2-process CPU test runs. The ~20 k-parameter
  control module stays replicated (FSDP2 cannot shard its scalar ``depth_scale``; sharding 80 kB would save
  nothing): its gradients are averaged in one all-reduce per optimiser step (:func:`average_gradients`);

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
           "no_sync_unless_last", "is_fsdp", "shard_transformer", "is_sharded", "average_gradients",
           "clip_grad_norm", "gather_state_dict", "gather_optimizer_state", "load_optimizer_state"]


def make_accelerator(cfg, cpu: bool = False):
    """An ``Accelerator`` for a :class:`~worldmodel.training.TrainConfig`.

    Launch-time settings (``accelerate launch --config_file …``: DDP/FSDP, processes, machines) come from the
    environment accelerate sets; ``mixed_precision`` comes from the config; ``cpu=True`` keeps a GPU machine's run
    on the CPU. Accumulation is done by the trainer
    (see :func:`micro_batches`), so the accelerator's own counter stays at 1.
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, GradientAccumulationPlugin

    # num_steps=1 explicitly: accelerate would otherwise take ACCELERATE_GRADIENT_ACCUMULATION_STEPS from a launch
    # config and divide every loss by it a second time. TrainConfig.gradient_accumulation_steps is the only knob.
    # even_batches: every rank gets the same number of batches per epoch (the short tail wraps around), so all
    # ranks take the same optimiser steps and no collective waits forever.
    acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=cpu,
                      gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=1),
                      dataloader_config=DataLoaderConfiguration(even_batches=True))
    if is_fsdp(acc):
        # accelerate's FSDP plugin would wrap the model itself (GPU only, one model per prepare); the trainer shards
        # with FSDP2 on its own (see the module docstring), so a launch config asking accelerate for FSDP is refused.
        raise ValueError("this accelerate config sets distributed_type: FSDP; dexworld shards the model itself: "
                         "launch with a multi-GPU config (configs/accelerate/fsdp_1node_8gpu.yaml) and pass --fsdp "
                         "to `dexworld train` (docs/scaling.md)")
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
    """No gradient communication for micro-batches 0..n-2 (reduced once, after the last): DDP's ``no_sync``, or
    FSDP2's ``set_requires_gradient_sync`` on a sharded transformer."""
    transformer = accelerator.unwrap_model(model).transformer
    if is_sharded(transformer):
        transformer.set_requires_gradient_sync(i == n - 1)
        return contextlib.nullcontext()
    if i == n - 1 or accelerator.num_processes == 1:
        return contextlib.nullcontext()
    return accelerator.no_sync(model)


def global_mean(accelerator, value: torch.Tensor) -> float:
    """Mean of a per-process scalar over all processes (equal per-process batch sizes assumed)."""
    return float(accelerator.reduce(value.detach().float().reshape(1).to(accelerator.device), reduction="mean"))


def is_fsdp(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def shard_transformer(transformer: torch.nn.Module, device: torch.device, cpu_offload: bool = False) -> None:
    """FSDP2 in place: one unit per transformer block (``WanTransformerBlock``), the rest in the transformer's unit.

    Frozen base weights, LoRA tensors and the patch embedding are all sharded over the processes (a unit may mix
    frozen and trainable, bf16 and float32 parameters); each block's weights are gathered just before it runs and
    freed after, in the forward and again in the backward (and in the recomputation under gradient checkpointing).
    ``cpu_offload`` keeps the shards, their gradients and the optimiser step in pinned CPU memory (CUDA only).
    """
    from torch.distributed import get_world_size
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

    if cpu_offload and device.type != "cuda":
        raise ValueError(f"fsdp_cpu_offload needs CUDA devices (FSDP2 moves each shard to the GPU when it is "
                         f"gathered); this process runs on {device}")
    mesh = init_device_mesh(device.type, (get_world_size(),))
    kw = {"offload_policy": CPUOffloadPolicy()} if cpu_offload else {}
    if not cpu_offload:
        transformer.to(device)
    for block in transformer.blocks:
        fully_shard(block, mesh=mesh, **kw)
    fully_shard(transformer, mesh=mesh, **kw)


def is_sharded(module: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def average_gradients(module: torch.nn.Module) -> None:
    """Mean of a replicated module's gradients over all processes, in one all-reduce (what DDP does for a model).

    Written out because DDP wraps a whole model and the control module sits beside FSDP-sharded siblings; for
    20 k parameters one flat collective per optimiser step is all that is needed. Missing gradients count as zero.
    """
    import torch.distributed as dist

    params = [p for p in module.parameters() if p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for p, g in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.grad = g.view_as(p).clone()


def clip_grad_norm(parameters: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clip to a global norm over sharded (DTensor) and replicated gradients together; returns the norm.

    torch's ``clip_grad_norm_`` cannot mix DTensor and plain tensors in one call, so the norm of each kind is taken
    with ``get_total_norm`` (a sharded norm is completed across processes) and both are scaled by the total.
    """
    from torch.distributed.tensor import DTensor

    grads = [p for p in parameters if p.grad is not None]
    groups = [[p for p in grads if isinstance(p.grad, DTensor)], [p for p in grads if not isinstance(p.grad, DTensor)]]
    norms = []
    for group in groups:
        if group:
            n = torch.nn.utils.get_total_norm([p.grad for p in group])
            # on the CPU: with fsdp_cpu_offload the sharded gradients live there, the replicated ones on the GPU
            norms.append((n.full_tensor() if isinstance(n, DTensor) else n).float().cpu())
    total = torch.linalg.vector_norm(torch.stack(norms))
    for group in groups:
        if group:
            torch.nn.utils.clip_grads_with_norm_(group, max_norm, total)
    return total


def _full_options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def gather_state_dict(model: torch.nn.Module, trainable_only: bool) -> dict[str, torch.Tensor]:
    """The model's full (unsharded) state dict in CPU memory, on the main process; every process must call it.

    ``trainable_only`` skips frozen weights (a LoRA run never gathers the 14 B base). Works the same on a plain,
    DDP-unwrapped or FSDP2-sharded model, so checkpoints do not depend on how the run was launched.
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_full_options(cpu_offload=True, ignore_frozen_params=trainable_only))


def gather_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Full optimiser state keyed by parameter names (not positions), on the main process; every process calls it.

    Name-keyed, so a checkpoint written sharded resumes unsharded and the other way round.
    """
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_full_options(cpu_offload=True))


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load :func:`gather_optimizer_state` output (every process passes the whole dict; each keeps its shard)."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=_full_options())


def offload_encoders(modules: Iterable[torch.nn.Module | None], device: torch.device) -> None:
    """Keep frozen encoders' weights in CPU memory; accelerate's hooks move each layer to ``device`` when it runs.

    For the 14B preset the UMT5 encoder alone is ~11 GB in bf16; with a cache (``dexworld cache``) the encoders
    are not needed at all during training, which is the better option.
    """
    from accelerate import cpu_offload

    for m in modules:
        if m is not None:
            cpu_offload(m, execution_device=device)
