"""Pixel windows → what the transformer trains on: one function for the trainer and the encoding cache.

Both paths must encode alike (a run from a ``dexworld cache`` folder gives the losses of a run from the clips), so
they share these calls: VAE latents (the distribution's mode, normalised), the I2V condition, CLIP image embeddings
of frame 0 as the pipeline's recorded ``clip_preprocess`` says, and the prompt embeddings.
"""

from __future__ import annotations

import torch

from worldmodel.wan.pipeline import i2v_condition

__all__ = ["encode_windows"]


@torch.no_grad()
def encode_windows(pipe, video: torch.Tensor, prompt_embeds: torch.Tensor | None, prompts: list[str], height: int,
                   width: int, device) -> dict:
    """Windows (B, 3, T, H, W) in [−1, 1] → ``x0`` (B, 16, T', h, w), ``condition`` (B, 20, T', h, w),
    ``prompt_embeds`` (B, L, D) (given, else embedded from ``prompts``) and ``image_embeds`` (B, L', D') or None."""
    video = video.to(device)
    vae = pipe.vae
    x0 = pipe.normalize_latents(vae.encode(video.to(vae.dtype)).latent_dist.mode().float())
    condition = i2v_condition(pipe, video, x0.shape[2], height, width, device)
    first = ((video[:, :, 0].permute(0, 2, 3, 1) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    image_embeds = pipe.image_embeddings(list(first.cpu().numpy()), device)
    if prompt_embeds is not None:
        prompt_embeds = prompt_embeds.to(device)
    else:
        prompt_embeds = pipe.embed_prompts(prompts, device, torch.float32)
    return {"x0": x0, "condition": condition, "prompt_embeds": prompt_embeds.float(),
            "image_embeds": None if image_embeds is None else image_embeds.float()}
