"""GPU check at full scale: the Wan 2.1 I2V 14B transformer shapes with LoRA r64 and the hand control module.

Random weights (bf16, built on the GPU; nothing downloaded). Measures, at 81 × 480 × 832 (21 × 60 × 104 latents,
32 760 tokens):

- one training step with gradient checkpointing (bf16 autocast, AdamW on LoRA + patch embedding + control module):
  seconds per step and peak GPU memory, next to ``worldmodel.wan.scaling.estimate()``'s prediction;
- one sampling step (both CFG branches in one batch of 2, as the pipeline runs them) and the 50-step estimate;
- the FSDP2 path of the trainer (``worldmodel.training.distributed.shard_transformer``) on one GPU: one training
  step, seconds and peak memory.

Prints one table; about 3–5 minutes on one H200. ``--scale tiny --device cpu`` runs the same code on a small
config (a check of the script itself, seconds on a CPU).

Usage: python benchmarks/gpu_check.py [--scale full|tiny] [--device cuda] [--steps 2] [--skip-fsdp]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import socket
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from worldmodel.control.module import HandControlModule  # noqa: E402
from worldmodel.wan.adapter import HandControlledWan, add_lora, set_trainable  # noqa: E402
from worldmodel.wan.scaling import WAN_I2V_14B, estimate, sequence_length  # noqa: E402

TINY = dict(WAN_I2V_14B, num_attention_heads=2, attention_head_dim=32, text_dim=64, ffn_dim=128, num_layers=2,
            image_dim=32, added_kv_proj_dim=64, freq_dim=32)
SIZES = {"full": (81, 480, 832, 512, 257), "tiny": (9, 64, 96, 16, 5)}  # frames, H, W, text tokens, image tokens


def build(cfg: dict, device: torch.device, rank: int):
    """Widened transformer (bf16, random) + LoRA + control module, as the trainer sets them up."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    base = dict(cfg, in_channels=36)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with device:
            transformer = WanTransformer3DModel(**base)
    finally:
        torch.set_default_dtype(prev)
    model = HandControlledWan(transformer, HandControlModule().to(device))  # widens the patch embedding 36 → 52
    add_lora(transformer, rank=rank)
    for n, p in transformer.named_parameters():  # trainable tensors in float32, as the trainer keeps them
        if "lora_" in n or n.startswith("patch_embedding."):
            p.data = p.data.float()
    params = set_trainable(transformer, model.control)
    transformer.enable_gradient_checkpointing()
    return model, params


def inputs(cfg: dict, scale: str, device: torch.device, batch: int = 1) -> dict:
    frames, H, W, text, image = SIZES[scale]
    t, h, w, _ = sequence_length(frames, H, W, (1, 1, 1))
    g = torch.Generator(device="cpu").manual_seed(0)
    z = lambda *s: torch.randn(*s, generator=g).to(device)  # noqa: E731
    joints = torch.tensor([0.0, 0.0, 0.5]) + 0.05 * torch.randn(batch, frames, 42, 3, generator=g)
    K = torch.tensor([[0.9 * W, 0, W / 2], [0, 0.9 * W, H / 2], [0, 0, 1.0]]).expand(batch, frames, 3, 3)
    return {"noisy": z(batch, 16, t, h, w), "target": z(batch, 16, t, h, w),
            "condition": torch.cat([torch.ones(batch, 4, t, h, w), torch.randn(batch, 16, t, h, w, generator=g)],
                                   1).to(device),
            "joints": joints.to(device), "K": K.contiguous().to(device),
            "text": z(batch, text, cfg["text_dim"]).bfloat16(), "image": z(batch, image, cfg["image_dim"]).bfloat16(),
            "timestep": torch.full((batch,), 500.0, device=device)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else float("nan")


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16)


def train_steps(model, params, x: dict, device: torch.device, steps: int) -> tuple[float, float]:
    """Median seconds of ``steps`` training steps after one warm-up, and the peak memory."""
    opt = torch.optim.AdamW(params, lr=1e-4)
    times = []
    reset_peak(device)
    for i in range(steps + 1):
        sync(device)
        t0 = time.perf_counter()
        control, cond = model.control_maps(x["joints"], x["K"], x["condition"])  # float32, as the trainer runs it
        with autocast(device):
            pred = model(x["noisy"], x["timestep"], cond, control, x["text"], x["image"])
            loss = torch.nn.functional.mse_loss(pred.float(), x["target"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        if i:
            times.append(time.perf_counter() - t0)
    del opt
    return sorted(times)[len(times) // 2], peak_gib(device)


@torch.no_grad()
def sample_step(model, cfg: dict, scale: str, device: torch.device, steps: int) -> tuple[float, float]:
    """One denoising step with both CFG branches batched (B = 2), median over ``steps`` after a warm-up."""
    x = inputs(cfg, scale, device, batch=2)
    times = []
    reset_peak(device)
    for i in range(steps + 1):
        sync(device)
        t0 = time.perf_counter()
        control, cond = model.control_maps(x["joints"], x["K"], x["condition"])
        with autocast(device):
            model(x["noisy"], x["timestep"], cond, control, x["text"], x["image"])
        sync(device)
        if i:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2], peak_gib(device)


@contextlib.contextmanager
def one_process_group(device: torch.device):
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", choices=tuple(SIZES), default="full")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up (default 2)")
    ap.add_argument("--rank", type=int, default=64, help="LoRA rank (default 64)")
    ap.add_argument("--skip-fsdp", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: error: --device cuda but no CUDA device is visible; use --scale tiny --device cpu to "
                 "check the script on a CPU")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    cfg = WAN_I2V_14B if args.scale == "full" else TINY
    frames, H, W, *_ = SIZES[args.scale]
    est = estimate(cfg, rank=args.rank, num_frames=frames, height=H, width=W, processes=1)
    rows = []
    t_start = time.perf_counter()

    t0 = time.perf_counter()
    model, params = build(cfg, device, args.rank)
    n_train = sum(p.numel() for p in params)
    rows.append(("build (random init, bf16)", f"{time.perf_counter() - t0:.1f} s",
                 f"{sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params, {n_train / 1e6:.1f} M trainable"))
    x = inputs(cfg, args.scale, device)
    s, mem = train_steps(model, params, x, device, args.steps)
    rows.append(("train step, grad checkpointing", f"{s:.2f} s/step",
                 f"peak {mem:.1f} GiB (estimate {est['total_checkpointed_gib']:.1f} GiB)"))
    s, mem = sample_step(model, cfg, args.scale, device, args.steps)
    rows.append(("sampling step (CFG batch 2)", f"{s:.2f} s/step", f"50 steps ≈ {50 * s / 60:.1f} min, "
                 f"peak {mem:.1f} GiB"))
    del model, params, x
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()

    if not args.skip_fsdp:
        from worldmodel.training.distributed import shard_transformer

        with one_process_group(device):
            model, params = build(cfg, torch.device("cpu") if device.type == "cpu" else device, args.rank)
            shard_transformer(model.transformer, device)
            params = [p for p in model.parameters() if p.requires_grad]
            x = inputs(cfg, args.scale, device)
            s, mem = train_steps(model, params, x, device, args.steps)
            eight = estimate(cfg, rank=args.rank, num_frames=frames, height=H, width=W)
            rows.append(("FSDP2 train step (1 GPU)", f"{s:.2f} s/step",
                         f"peak {mem:.1f} GiB (8-GPU estimate {eight['fsdp_total_checkpointed_gib']:.1f} GiB)"))
            del model, params, x

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\ngpu_check — {args.scale} scale ({frames}×{H}×{W}, {est['tokens']} tokens), LoRA r{args.rank}, "
          f"{name}, torch {torch.__version__}")
    width = max(len(r[0]) for r in rows)
    for what, value, note in rows:
        print(f"  {what:<{width}}  {value:>12}  {note}")
    print(f"  total wall time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
