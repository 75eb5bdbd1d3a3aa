"""One denoising step of our pipeline against a plain reference of the step as the paper's authors run it.

The reference below is written from their pipeline's behaviour (see docs/worldmodel.md), not from ours: the I2V
condition y = [mask 4 | VAE latent 16] of the reference frame followed by black frames, the control module fed the
joints as their dataset stores them (a missing hand filled with zeros, no validity mask), its motion features
written over y's image-latent channels for latent frames ≥ 1, the 16-channel control volume appended after
[noisy 16 | y 20], CLIP penultimate features of the whole frame, classifier-free guidance with the joint condition
in both branches (only the prompt differs), and one flow-matching Euler step x ← x + (σ_next − σ)·v. Our pipeline
gets the same tiny random weights and the missing hand as NaN marked invalid.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from _wm_helpers import SMALL_TINY
from diffusers import FlowMatchEulerDiscreteScheduler

from embodiments.sparse import SparseJoints
from worldmodel.control.module import HandControlModule
from worldmodel.wan.adapter import ensure_widened
from worldmodel.wan.pipeline import HandControlPipeline
from worldmodel.wan.presets import build_tiny

torch.set_num_threads(1)
SIZE, T, SHIFT, GUIDANCE = 32, 5, 5.0, 5.0
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _pad(text: torch.Tensor) -> torch.Tensor:
    """Wan's text context: exactly 512 tokens, zero-padded."""
    return torch.cat([text, text.new_zeros(text.shape[0], 512 - text.shape[1], text.shape[2])], dim=1)


@torch.no_grad()
def authors_step(comp, control, image: np.ndarray, joints: torch.Tensor, K: torch.Tensor, x: torch.Tensor,
                 text: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """One step from σ = 1: image (H, W, 3) uint8, joints (1, T, 42, 3) zero-filled, K (1, 3, 3), x (1, 16, T', h, w)
    the initial noise."""
    vae, tr = comp.vae, comp.transformer
    pixels = torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1.0  # (3, H, W) in [-1, 1]
    video = torch.zeros(1, 3, T, SIZE, SIZE)
    video[0, :, 0] = pixels
    mu = vae.encode(video).latent_dist.mode()
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    lat = (mu - mean) / std  # (1, 16, T', h, w)
    mask = torch.zeros(1, 4, *lat.shape[2:])
    mask[:, :, 0] = 1.0  # the reference frame is known, the rest is to generate
    volume, motion = control(joints, K, lat[:, :, 0])
    lat = torch.cat([lat[:, :, :1], motion[:, :, 1:]], dim=2)  # motion over the image latent of frames >= 1
    y = torch.cat([mask, lat], dim=1)
    clip_in = (torch.from_numpy(image).permute(2, 0, 1).float() / 255.0 - torch.tensor(CLIP_MEAN)[:, None, None]) \
        / torch.tensor(CLIP_STD)[:, None, None]  # the whole (square) frame at the encoder's size, no crop
    img = comp.image_encoder(pixel_values=clip_in[None], output_hidden_states=True).hidden_states[-2]
    sigma = SHIFT * 1.0 / (1.0 + (SHIFT - 1.0) * 1.0)  # linspace(1, 0, steps + 1)[0] shifted; next σ = 0
    t = torch.tensor([sigma * 1000.0])
    inp = torch.cat([x, y, volume], dim=1)  # [noisy 16 | mask 4 | latent 16 | control 16]
    v_c = tr(hidden_states=inp, timestep=t, encoder_hidden_states=_pad(text), encoder_hidden_states_image=img,
             return_dict=False)[0]
    v_u = tr(hidden_states=inp, timestep=t, encoder_hidden_states=_pad(neg), encoder_hidden_states_image=img,
             return_dict=False)[0]
    v = v_u + GUIDANCE * (v_c - v_u)
    return x + (0.0 - sigma) * v


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    comp = build_tiny(**SMALL_TINY)
    tr = ensure_widened(comp.transformer)
    with torch.no_grad():  # the converted patch embedding reads the control channels (not zero as after widening)
        tr.patch_embedding.weight[:, 36:].normal_(0.0, 0.2)
    control = HandControlModule(occlusion="upstream").eval()
    with torch.no_grad():
        control.norm.weight.uniform_(0.5, 1.5)
        control.norm.bias.uniform_(-0.5, 0.5)
    comp = dataclasses.replace(comp, scheduler=FlowMatchEulerDiscreteScheduler(shift=SHIFT))
    pipe = HandControlPipeline.from_components(comp, control)
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    pos = np.concatenate([rng.normal([0.0, 0.0, 0.4], 0.05, (1, 42, 3))] * T) \
        + np.linspace(0, 0.04, T)[:, None, None] * np.array([1.0, 0.0, 0.0])
    pos[:, 30, 2] = 0.12  # one right-hand joint nearer than the 0.2 m clamp
    valid = np.ones((T, 42), bool)
    valid[:, :21] = False  # the left hand is missing in every frame
    K = np.array([[30.0, 0.0, 16.0], [0.0, 30.0, 16.0], [0.0, 0.0, 1.0]])
    theirs = np.where(valid[..., None], pos, 0.0)  # the authors' dataset: nan_to_num
    pos[~valid] = np.nan
    g = torch.Generator().manual_seed(1)
    text, neg = torch.randn(1, 7, 32, generator=g), torch.randn(1, 5, 32, generator=g)
    x = torch.randn(1, 16, 2, SIZE // 8, SIZE // 8, generator=g)
    return comp, control, pipe, image, SparseJoints(pos, valid, K=K, frame="camera", fps=8.0), theirs, K, text, neg, x


def test_one_step_equals_the_authors_step(setup):
    comp, control, pipe, image, joints, theirs, K, text, neg, x = setup
    ref = authors_step(comp, control, image, torch.tensor(theirs, dtype=torch.float32)[None],
                       torch.tensor(K, dtype=torch.float32)[None], x, text, neg)
    out = pipe(image, joints, prompt_embeds=text, negative_prompt_embeds=neg, height=SIZE, width=SIZE,
               num_inference_steps=1, guidance_scale=GUIDANCE, shift=SHIFT, uncond_control="joints",
               latents=x.clone(), output_type="latent", progress=False).frames
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    # The comparison is sharp: the other unconditional branch (no joints there) gives another step.
    other = pipe(image, joints, prompt_embeds=text, negative_prompt_embeds=neg, height=SIZE, width=SIZE,
                 num_inference_steps=1, guidance_scale=GUIDANCE, shift=SHIFT, uncond_control="unedited",
                 latents=x.clone(), output_type="latent", progress=False).frames
    assert (other - ref).abs().max() > 1e-2
