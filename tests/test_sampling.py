"""Sampling defaults come from the checkpoint: the authors' Euler schedule and uncropped CLIP input for converted
checkpoints (each checked against the formula written here), CFG branch content and guidance from the folder, and
``generate --help`` showing the named checkpoint's values."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _wm_helpers import SMALL_TINY, make_frames, make_joints, trained_tiny_pipeline
from safetensors.torch import save_file

from worldmodel.wan.pipeline import HandControlPipeline
from worldmodel.wan.presets import build_tiny
from worldmodel.wan.sampling import clip_resize, set_timesteps, upstream_scheduler

torch.set_num_threads(1)
# Published CLIP normalisation (OpenAI CLIP; the authors' Wan image encoder uses the same constants).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture(scope="module")
def pipe():
    return trained_tiny_pipeline()


def _shifted(n: int, s: float) -> np.ndarray:
    sigma = np.linspace(1.0, 0.0, n + 1)[:-1]
    return s * sigma / (1 + (s - 1) * sigma)


@pytest.mark.parametrize(("steps", "shift"), [(50, 5.0), (7, 3.0)])
def test_upstream_euler_step_by_step(steps, shift):
    sched = upstream_scheduler(5.0)
    sched = type(sched).from_config(sched.config, shift=shift)  # what the pipeline's shift override does
    set_timesteps(sched, steps)
    want = _shifted(steps, shift)
    np.testing.assert_allclose(sched.sigmas[:-1].numpy(), want, rtol=1e-6, atol=1e-7)
    assert sched.sigmas[-1] == 0 and len(sched.timesteps) == steps
    np.testing.assert_allclose(sched.timesteps.numpy(), want * 1000, rtol=1e-6, atol=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 2, 4, 4, generator=g)
    ref = x.clone().double()
    nxt = np.append(want, 0.0)
    for i, t in enumerate(sched.timesteps):
        v = torch.randn(x.shape, generator=g)
        x = sched.step(v, t, x, return_dict=False)[0]
        ref = ref + (nxt[i + 1] - nxt[i]) * v.double()  # plain Euler on the flow: x ← x + (σ_next − σ)·v
        torch.testing.assert_close(x.double(), ref, rtol=0, atol=1e-5)


def test_clip_resize_is_the_whole_frame_bicubic_then_clip_normalised(pipe):
    frame = make_frames(1)[0]
    frame = np.concatenate([frame, frame[:, ::-1]], axis=1)  # 64×128: a wide frame, like 480×832
    pixels = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    size = pipe.image_encoder.config.image_size
    # Reference: torch bicubic (align_corners=False) of [-1, 1] pixels to size², to [0, 1], CLIP normalisation.
    x = F.interpolate(pixels, size=(size, size), mode="bicubic", align_corners=False) * 0.5 + 0.5
    want = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(clip_resize(pixels, size, CLIP_MEAN, CLIP_STD), want, rtol=0, atol=1e-6)

    resized = dataclasses.replace(pipe.defaults, clip_preprocess="resize")
    cropped = pipe.defaults
    try:
        pipe.defaults = resized
        got = pipe.image_embeddings(frame, "cpu", pixels=pixels)
        enc = pipe.image_encoder(pixel_values=want, output_hidden_states=True).hidden_states[-2]
        torch.testing.assert_close(got, enc, rtol=0, atol=1e-6)
        torch.testing.assert_close(pipe.image_embeddings(frame, "cpu"), enc, rtol=0, atol=1e-5)  # from the image
        # The left edge of the frame reaches the uncropped input; diffusers' centre crop throws it away.
        edited = frame.copy()
        edited[:, :12] = 255 - edited[:, :12]
        assert not torch.allclose(pipe.image_embeddings(edited, "cpu"), got, atol=1e-3)
        pipe.defaults = cropped
        assert torch.equal(pipe.image_embeddings(edited, "cpu"), pipe.image_embeddings(frame, "cpu"))
    finally:
        pipe.defaults = cropped


def test_cfg_branches_and_guidance_come_from_the_checkpoint(pipe):
    image, joints = make_frames(1)[0], make_joints(5)
    kw = dict(prompt="a hand", num_inference_steps=2, seed=0, progress=False)
    saved = pipe.defaults
    try:
        pipe.defaults = dataclasses.replace(saved, guidance_scale=4.0, uncond_control="joints")
        recorded = pipe(image, joints, **kw).frames
        explicit = pipe(image, joints, guidance_scale=4.0, uncond_control="joints", **kw).frames
        other = pipe(image, joints, guidance_scale=4.0, uncond_control="unedited", **kw).frames
        no_cfg = pipe(image, joints, guidance_scale=1.0, **kw).frames
    finally:
        pipe.defaults = saved
    assert np.array_equal(recorded, explicit)
    assert not np.allclose(recorded, other, atol=1e-4)  # the joint condition went into both branches
    # Guidance 4 on the prompt alone: the tiny model barely reads text, yet it is not the guidance-free result.
    assert not np.array_equal(recorded, no_cfg)


def test_converted_checkpoint_samples_as_the_authors(tmp_path, monkeypatch, capsys):
    from test_convert import authors_hand, synthetic_dit

    from dexworld.cli import main
    from worldmodel.wan.convert import convert_upstream

    base = tmp_path / "base"
    build_tiny(**SMALL_TINY).save(base)
    save_file(synthetic_dit(build_tiny(**SMALL_TINY).transformer), tmp_path / "dit.safetensors")
    save_file(authors_hand()[0], tmp_path / "hand.safetensors")
    out = convert_upstream(tmp_path / "dit.safetensors", tmp_path / "hand.safetensors", tmp_path / "conv",
                           base_path=base, height=64, width=64, num_frames=5)
    p = HandControlPipeline.from_pretrained(out)
    d = p.defaults
    assert (d.num_inference_steps, d.guidance_scale, d.shift) == (50, 5.0, 5.0)
    assert (d.uncond_control, d.clip_preprocess) == ("joints", "resize")
    assert (d.height, d.width, d.num_frames) == (64, 64, 5)
    assert type(p.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler" and p.scheduler.config.shift == 5.0
    assert p.image_processor.do_center_crop is False
    p.set_progress_bar_config(disable=True)
    frames = p(make_frames(1)[0], make_joints(5), num_inference_steps=2, seed=0, progress=False).frames
    assert frames.shape == (5, 64, 64, 3) and np.isfinite(frames).all()  # Euler, CFG 5, uncropped CLIP: runs
    # Re-saved, the folder keeps the authors' sampling.
    p.save_pretrained(tmp_path / "resaved")
    q = HandControlPipeline.from_pretrained(tmp_path / "resaved")
    assert q.defaults == d and type(q.scheduler) is type(p.scheduler)
    # A folder the converter wrote before pipeline folders existed (dexworld_checkpoint.json) gets them too.
    old = tmp_path / "old"
    shutil.copytree(out / "control", old / "control")
    shutil.copytree(out / "transformer_lora", old / "lora")
    shutil.copy(out / "transformer_patch_embedding.safetensors", old / "patch_embedding.safetensors")
    (old / "dexworld_checkpoint.json").write_text(json.dumps({
        "kind": "dexworld.hand_control_checkpoint", "version": 1, "step": 0, "base_path": str(base),
        "height": 64, "width": 64, "num_frames": 5, "converted_from": {"lora_rank": 4}}))
    with pytest.warns(UserWarning, match="re-save it"):
        o = HandControlPipeline.from_pretrained(old)
    assert o.defaults == d and type(o.scheduler) is type(p.scheduler)
    assert all(torch.equal(a, b) for a, b in zip(o.transformer.state_dict().values(),
                                                  p.transformer.state_dict().values(), strict=True))
    # `generate --checkpoint DIR --help` prints DIR's recorded values.
    argv = ["generate", "--checkpoint", str(out), "--help"]
    monkeypatch.setattr(sys, "argv", ["dexworld", *argv])
    with pytest.raises(SystemExit):
        main(argv)
    text = " ".join(capsys.readouterr().out.split())
    for want in ("num_inference_steps 50", "guidance_scale 5.0", "shift 5.0", "uncond_control joints",
                 "clip_preprocess resize", "FlowMatchEulerDiscreteScheduler"):
        assert want in text, want
    assert "tiny-sim: 10" not in text and "num_inference_steps 50" in text


def test_generate_help_copies_agree_with_the_sampling_module():
    """`dexworld generate` keeps torch-free copies of the upstream defaults and of the defaults a folder saved before a
    setting existed gets (for a fast --help); they must say what worldmodel.wan.sampling does."""
    from dexworld.commands.generate import UNRECORDED, UPSTREAM
    from worldmodel.wan.sampling import UPSTREAM_DEFAULTS, SamplingDefaults

    upstream = UPSTREAM_DEFAULTS.to_dict()
    assert all(upstream[k] == v for k, v in UPSTREAM.items())
    field_defaults = {f.name: f.default for f in dataclasses.fields(SamplingDefaults)}
    assert all(field_defaults[k] == v for k, v in UNRECORDED.items())


def test_stochastic_sampler_draws_its_noise_from_the_items_seed(pipe):
    """Flow-matching Euler with ``stochastic_sampling`` noises each step's x0 prediction again with fresh noise: that
    noise comes from the call's seed (the same seed twice gives the same video, whatever the global RNG does) and,
    batched, from each item's own seed, so a batch equals its single calls as with the ODE samplers."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from worldmodel.wan.sampling import sampler_label

    images = [make_frames(1, seed=s)[0] for s in range(2)]
    joints = [make_joints(5, seed=s) for s in range(2)]
    ode = pipe.scheduler
    try:
        pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=5.0, stochastic_sampling=True)
        assert sampler_label(pipe.scheduler) == "FlowMatchEulerDiscreteScheduler (stochastic)"
        runs = []
        for global_seed in (1, 2):
            torch.manual_seed(global_seed)
            runs.append(pipe(images[0], joints[0], seed=3, num_inference_steps=4, progress=False).frames)
        np.testing.assert_array_equal(runs[0], runs[1])
        other = pipe(images[0], joints[0], seed=4, num_inference_steps=4, progress=False).frames
        single = pipe(images[1], joints[1], seed=4, num_inference_steps=4, progress=False).frames
        batch = pipe.sample_batch(images, joints, seeds=[3, 4], num_inference_steps=4)
        np.testing.assert_allclose(batch[0].frames, runs[0], atol=2e-5)
        np.testing.assert_allclose(batch[1].frames, single, atol=2e-5)
        pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=5.0)
        plain = pipe(images[0], joints[0], seed=3, num_inference_steps=4, progress=False).frames
        assert sampler_label(pipe.scheduler) == "FlowMatchEulerDiscreteScheduler"
    finally:
        pipe.scheduler = ode
    # the fresh noise matters: another seed, or the ODE from the same initial noise, gives another video
    assert np.abs(other - runs[0]).max() > 1e-3 and np.abs(plain - runs[0]).max() > 1e-3
