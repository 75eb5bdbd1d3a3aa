"""What a VAE with 4× spatial compression would cost: VAE and transformer training steps against today's 8×.

At 128² an Inspire finger is about 4 px wide, half a latent cell of the shipped 8× VAE (docs/results.md, seventh
attempt), so finer latents are the lever for separable fingers. This times one training step (forward, backward,
AdamW) of each on random data, one thread by default, and prints the 4× / 8× ratios. Baseline: the shipped
configuration (VAE ``dim_mult`` 1,2,2,2, transformer patch 1×2×2 on 16×16 latents). A third row keeps today's token
count on 32×32 latents with a 1×4×4 patch. A last row runs the 4× 1×2×2 step under bfloat16 autocast (AdamW's
weights stay float32), which a CPU with AMX runs on its matrix units.

    .venv/bin/python benchmarks/vae_compression_cost.py                   # one thread, ~1 min
    .venv/bin/python benchmarks/vae_compression_cost.py --threads 0       # torch's default threads
"""

from __future__ import annotations

import argparse
import time

import torch
from diffusers import WanTransformer3DModel

from worldmodel.wan.presets import build_tiny

SHIPPED = "worldmodel/checkpoints/tiny-sim"


def seconds_per_step(model: torch.nn.Module, loss_fn, repeats: int = 3) -> float:
    """Mean wall time of ``repeats`` training steps after one warm-up step."""
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    for i in range(repeats + 1):
        if i == 1:
            start = time.perf_counter()
        loss_fn().backward()
        opt.step()
        opt.zero_grad()
    return (time.perf_counter() - start) / repeats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--batch", type=int, default=8, help="clips per step (the tiny-sim preset's batch)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    crops = torch.randn(args.batch, 3, 5, 64, 64)  # the VAE stage's 5-frame 64² crops
    # the VAEs exactly as the tiny-sim preset builds them (configs/tiny_sim_4x_vae.json for the 4× one)
    vaes = {"8x": build_tiny("tiny-sim", vae_base_dim=16).vae,
            "4x": build_tiny("tiny-sim", vae_base_dim=16, vae_dim_mult=(1, 2, 2)).vae}
    vae_s = {}
    for name, vae in vaes.items():
        with torch.no_grad():
            z = vae.encode(torch.randn(1, 3, 17, 128, 128)).latent_dist.mode()
        vae_s[name] = seconds_per_step(vae, lambda v=vae: (v(crops).sample - crops).abs().mean())
        print(
            f"VAE {name}: {sum(p.numel() for p in vae.parameters()) / 1e6:.2f} M parameters, latent of a 17-frame "
            f"128² clip {tuple(z.shape[1:])}, {vae_s[name]:.2f} s/step"
        )
    print(f"VAE 4x / 8x step time: {vae_s['4x'] / vae_s['8x']:.2f}")

    config = dict(WanTransformer3DModel.load_config(f"{SHIPPED}/transformer"))
    text, image = torch.randn(args.batch, 16, config["text_dim"]), torch.randn(args.batch, 4, config["image_dim"])
    rows = (
        ("8x latents, patch 1x2x2 (shipped)", 16, (1, 2, 2), False),
        ("4x latents, patch 1x2x2", 32, (1, 2, 2), False),
        ("4x latents, patch 1x4x4", 32, (1, 4, 4), False),
        ("4x latents, patch 1x2x2, bf16 autocast", 32, (1, 2, 2), True),
    )
    base = None
    for label, side, patch, bf16 in rows:
        model = WanTransformer3DModel.from_config({**config, "patch_size": list(patch)})
        latents = torch.randn(args.batch, config["in_channels"], 5, side, side)
        t = torch.randint(0, 1000, (args.batch,))
        tokens = 5 * (side // patch[1]) * (side // patch[2])

        def loss(m=model, x=latents, t=t, bf16=bf16):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = m(x, t, text, encoder_hidden_states_image=image, return_dict=False)[0]
            return out.float().pow(2).mean()

        s = seconds_per_step(model, loss, repeats=2)
        base = base or s
        print(f"transformer, {label}: {tokens} tokens, {s:.2f} s/step, {s / base:.2f}x the shipped step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
