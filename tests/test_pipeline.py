"""Sampling: HandControlPipeline determinism, control sensitivity, masked joints, errors, presets, CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from _wm_helpers import CONTROL, SMALL_TINY, K, make_frames, make_joints, trained_tiny_pipeline

from embodiments.layout import hand_slots
from worldmodel.editing import edit_joints
from worldmodel.wan.adapter import ensure_widened
from worldmodel.wan.pipeline import HandControlPipeline
from worldmodel.wan.presets import build_tiny, load_preset

torch.set_num_threads(1)
STEPS = 3


@pytest.fixture(scope="module")
def pipe():
    """A tiny pipeline whose control pathway is "trained": random LoRA B and control input channels."""
    return trained_tiny_pipeline()


@pytest.fixture(scope="module")
def image():
    return make_frames(1)[0]


def _run(pipe, image, joints, **kw):
    kw.setdefault("num_inference_steps", STEPS)
    kw.setdefault("seed", 0)
    return pipe(image, joints, prompt="a hand", progress=False, **kw)


def test_shapes_and_determinism(pipe, image):
    joints = make_joints(5)
    out = _run(pipe, image, joints, return_control=True)
    assert out.frames.shape == (5, 64, 64, 3) and out.frames.dtype == np.float32
    assert out.frames.min() >= 0 and out.frames.max() <= 1
    assert out.control.shape == (1, 16, 2, 8, 8) and out.condition.shape == (1, 20, 2, 8, 8)
    again = _run(pipe, image, joints)
    assert np.array_equal(out.frames, again.frames)
    other_seed = _run(pipe, image, joints, seed=1)
    assert np.abs(other_seed.frames - out.frames).max() > 1e-3
    tensor_image = torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1.0  # (3, H, W) in [-1, 1]
    assert np.array_equal(_run(pipe, tensor_image, joints).frames, out.frames)
    latents = _run(pipe, image, joints, output_type="latent")
    assert latents.frames.shape == (1, 16, 2, 8, 8)


def test_different_joints_give_different_videos(pipe, image):
    joints = make_joints(5)
    moved = edit_joints(joints, "right", offset=[0.06, -0.03, 0.0], frames=4, width=3)
    a = _run(pipe, image, joints, return_control=True)
    b = _run(pipe, image, moved, return_control=True)
    assert not torch.equal(a.control[:, :, 1:], b.control[:, :, 1:])
    assert np.abs(a.frames - b.frames).max() > 1e-3
    la = _run(pipe, image, joints, output_type="latent").frames
    lb = _run(pipe, image, moved, output_type="latent").frames
    rel = ((la - lb).norm() / la.norm()).item()
    assert rel > 5e-3  # ~2e-2 here: a local edit of one hand in 2 latent frames; float noise is ~1e-7


def test_invalid_joints_change_nothing(pipe, image):
    """Joints marked invalid (some frames, some slots) have no influence, whatever their coordinates."""
    from worldmodel.wan.adapter import HandControlledWan

    joints = make_joints(5)
    valid = joints.valid.copy()
    valid[:, hand_slots("left").start:hand_slots("left").stop] = False
    valid[2:, 30] = False
    # Tensor level (no SparseJoints zeroing in between): scramble the coordinates of invalid joints.
    model = HandControlledWan(pipe.transformer, pipe.control)
    jt = torch.from_numpy(joints.positions)[None]
    scrambled = jt.clone()
    inv = torch.from_numpy(~valid)[None]
    scrambled[inv] = torch.randn(int(inv.sum()), 3) * 0.3 + torch.tensor([0.1, 0.1, 0.4])
    Kt = torch.tensor(K, dtype=torch.float32)[None]
    cond = torch.randn(1, 20, 2, 8, 8)
    vt = torch.from_numpy(valid)[None]
    c1, y1 = model.control_maps(jt, Kt, cond, vt)
    c2, y2 = model.control_maps(scrambled, Kt, cond, vt)
    assert torch.equal(c1, c2) and torch.equal(y1, y2)
    # End to end: the video does not depend on where the invalid joints are ...
    a = _run(pipe, image, joints.replace(valid=valid))
    moved = edit_joints(joints, "left", offset=[0.1, 0.0, 0.0], frames=2, width=3).replace(valid=valid)
    b = _run(pipe, image, moved)
    assert np.array_equal(a.frames, b.frames)
    # ... while the same move on valid joints does change it.
    c = _run(pipe, image, edit_joints(joints, "left", offset=[0.1, 0.0, 0.0], frames=2, width=3))
    assert np.abs(c.frames - _run(pipe, image, joints).frames).mean() > 1e-4


def test_uncond_branch_choice(pipe, image):
    joints = make_joints(5)
    a = _run(pipe, image, joints, uncond_control="unedited", guidance_scale=5.0)
    b = _run(pipe, image, joints, uncond_control="joints", guidance_scale=5.0)
    assert np.abs(a.frames - b.frames).mean() > 1e-4
    # Without guidance there is no unconditional branch: both choices coincide.
    c = _run(pipe, image, joints, uncond_control="unedited", guidance_scale=1.0)
    d = _run(pipe, image, joints, uncond_control="joints", guidance_scale=1.0)
    assert np.array_equal(c.frames, d.frames)
    # Precomputed prompt embeddings give the same video as the prompt.
    pe = pipe.embed_prompts(["a hand"], "cpu", torch.float32)
    ne = pipe.embed_prompts([""], "cpu", torch.float32)
    e = pipe(image, joints, prompt_embeds=pe, negative_prompt_embeds=ne, num_inference_steps=STEPS, seed=0,
             progress=False, uncond_control="unedited", guidance_scale=5.0)
    assert np.array_equal(a.frames, e.frames)


def test_intrinsics_follow_the_image_resize(pipe):
    """K is given in the reference image's pixels; it is rescaled to the generated resolution."""
    joints = make_joints(5)
    K2 = K.copy()
    K2[0] *= 2.0
    K2[1] *= 3.0
    jt, Kt, vt = pipe.check_joints(joints.replace(K=K2), None, 64, 64, (192, 128))
    torch.testing.assert_close(Kt, torch.tensor(K, dtype=torch.float32)[None].expand(1, 5, 3, 3))
    assert torch.equal(jt[0], torch.from_numpy(joints.positions)) and torch.equal(vt[0], torch.from_numpy(joints.valid))


def test_bad_inputs(pipe, image):
    joints = make_joints(5)
    with pytest.raises(ValueError, match="multiples of 16"):
        _run(pipe, image, joints, height=72)
    with pytest.raises(ValueError, match="4k\\+1"):
        _run(pipe, image, make_joints(6))
    with pytest.raises(ValueError, match=r"K must have shape \(3, 3\) or \(T, 3, 3\)"):
        _run(pipe, image, joints, K=np.tile(K, (4, 1, 1)))
    with pytest.raises(ValueError, match="invertible"):
        _run(pipe, image, joints, K=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="camera frame"):
        _run(pipe, image, joints.replace(frame="world"))
    with pytest.raises(ValueError, match="pass K="):
        _run(pipe, image, joints.replace(K=None))
    with pytest.raises(ValueError, match="uncond_control"):
        _run(pipe, image, joints, uncond_control="zeros")
    with pytest.raises(ValueError, match="SparseJoints"):
        _run(pipe, image, joints.positions)
    with pytest.raises(ValueError, match="uint8"):
        _run(pipe, image.astype(np.float32), joints)
    none_valid = joints.replace(valid=np.zeros_like(joints.valid))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = _run(pipe, image, none_valid, num_inference_steps=1)
    assert any("invalid" in str(x.message) for x in w) and out.frames.shape == (5, 64, 64, 3)


def test_local_preset_loads_a_saved_directory(tmp_path, image):
    c = build_tiny(**SMALL_TINY)
    c.save(tmp_path / "wan")
    loaded = load_preset("wan2.1-i2v-14b-480p", path=tmp_path / "wan")
    assert loaded.name == "tiny" and loaded.defaults == c.defaults and loaded.prompt_embedder is not None
    for a, b in ((c.transformer, loaded.transformer), (c.vae, loaded.vae), (c.image_encoder, loaded.image_encoder)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert type(loaded.scheduler) is type(c.scheduler)
    assert loaded.scheduler.config.flow_shift == c.scheduler.config.flow_shift
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_preset("wan2.1-i2v-14b-480p", path=tmp_path / "missing")
    with pytest.raises(ValueError, match="needs path="):
        load_preset("wan2.1-i2v-14b-480p")
    with pytest.raises(ValueError, match="unknown preset"):
        load_preset("wan2.2")
    with pytest.raises(ValueError, match="unknown tiny preset options"):
        build_tiny(layers=3)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "transformer").mkdir()
    with pytest.raises(FileNotFoundError, match="missing subfolder"):
        load_preset("wan2.1-i2v-14b-480p", path=tmp_path / "half")


def test_cli_train_then_generate(tmp_path, image):
    """`dexworld train` writes a checkpoint that `dexworld generate` samples from, like the trainer's pipeline."""
    import PIL.Image

    from dexworld.cli import main
    from embodiments.clip import write_clip
    from worldmodel.wan.pipeline import load_for_inference

    data = tmp_path / "data"
    write_clip(data / "c0.h5", make_frames(5), make_joints(5), prompt="a hand")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"tiny": SMALL_TINY, "control": CONTROL, "lora_rank": 4, "sample_steps": 2}))
    rc = main(["train", "--preset", "tiny", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "2",
               "--config", str(cfg), "--sample-every", "2", "--no-progress"])
    assert rc == 0
    run = tmp_path / "run"
    ckpt = run / (run / "latest").read_text().strip()
    assert ckpt.name == "checkpoint-000002"
    assert {p.name for p in ckpt.iterdir()} >= {"control", "lora", "patch_embedding.safetensors",
                                                 "training_state.pt", "dexworld_checkpoint.json"}
    assert (run / "samples" / "step_000002.mp4").stat().st_size > 0
    # Resuming reuses the run's stored configuration (tiny sizes, LoRA rank) and continues the step count.
    assert main(["train", "--out", str(run), "--resume", "--steps", "3", "--no-progress"]) == 0
    assert (run / "latest").read_text().strip() == "checkpoint-000003"
    assert [json.loads(x)["step"] for x in (run / "loss.jsonl").read_text().splitlines()] == [1, 2, 3]
    ckpt = run / "checkpoint-000003"
    PIL.Image.fromarray(image).save(tmp_path / "ref.png")
    joints = make_joints(5)
    joints.save(tmp_path / "j.npz")
    out = tmp_path / "out.mp4"
    rc = main(["generate", "--checkpoint", str(ckpt), "--image", str(tmp_path / "ref.png"), "--joints",
               str(tmp_path / "j.npz"), "-o", str(out), "--steps", "2", "--prompt", "a hand", "--overlay",
               "--save-control", str(tmp_path / "ctrl.npz")])
    assert rc == 0 and out.stat().st_size > 0
    import imageio.v3 as iio

    video = iio.imread(out)
    assert video.shape == (5, 64, 64 * 2 + 2, 3)
    ctrl = np.load(tmp_path / "ctrl.npz")
    assert ctrl["control"].shape == (16, 2, 8, 8)
    # The CLI's checkpoint loads into the same pipeline code; its control maps match the saved ones.
    pipe = load_for_inference(ckpt)
    res = pipe(image, joints, prompt="a hand", num_inference_steps=2, seed=0, return_control=True, progress=False)
    np.testing.assert_allclose(res.control[0].numpy(), ctrl["control"], rtol=0, atol=1e-6)
    # --first-frame and --color-match reach the pipeline: the video is (up to mp4 coding) the pipeline's in that mode,
    # not the default's
    for flag, setting, (mode, default) in (("--first-frame", "first_frame", ("reference", "generate")),
                                           ("--color-match", "color_match", ("reference", "none"))):
        assert main(["generate", "--checkpoint", str(ckpt), "--image", str(tmp_path / "ref.png"), "--joints",
                     str(tmp_path / "j.npz"), "-o", str(tmp_path / "mode.mp4"), "--steps", "2", "--prompt", "a hand",
                     flag, mode]) == 0
        got = iio.imread(tmp_path / "mode.mp4").astype(float) / 255
        want = {m: pipe(image, joints, prompt="a hand", num_inference_steps=2, seed=0, progress=False,
                        **{setting: m}).frames for m in (mode, default)}
        assert np.abs(got - want[mode]).mean() < 0.5 * np.abs(got - want[default]).mean(), flag
    # User errors are one line, not a traceback.
    assert main(["generate", "--checkpoint", str(tmp_path), "--image", str(tmp_path / "ref.png"), "--joints",
                 str(tmp_path / "j.npz"), "-o", str(out)]) == 1
    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r2")]) == 1


def test_pipeline_reuses_wan_condition(pipe, image):
    """The condition's image-latent channels at frame 0 equal the VAE latent of the reference image."""
    joints = make_joints(5)
    out = _run(pipe, image, joints, return_control=True)
    import PIL.Image

    pixels = pipe.video_processor.preprocess(PIL.Image.fromarray(image), height=64, width=64)
    z = pipe.vae.encode(pixels[:, :, None]).latent_dist.mode()
    torch.testing.assert_close(out.condition[:, 4:, 0], pipe.normalize_latents(z)[:, :, 0], rtol=0, atol=1e-5)
    assert torch.equal(out.condition[:, :4, 0], torch.ones(1, 4, 8, 8))  # mask: the first frame is given
    assert torch.count_nonzero(out.condition[:, :4, 1:]) == 0
    assert not out.control.requires_grad


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_batch_of_independent_items_matches_one_at_a_time(pipe, guidance):
    """B items (different images, joints, seeds, prompts) in one batched call ≡ B single calls (CFG batched too)."""
    images = [make_frames(1, seed=s)[0] for s in range(3)]
    joints = [make_joints(5, seed=s, shift_x=0.02 * s) for s in range(3)]
    seeds, prompts = [5, 6, 7], ["a hand", "grab", "a hand"]
    singles = [pipe(images[i], joints[i], prompt=prompts[i], seed=seeds[i], num_inference_steps=STEPS,
                    guidance_scale=guidance, progress=False).frames for i in range(3)]
    batch = pipe.sample_batch(images, joints, seeds=seeds, prompts=prompts, num_inference_steps=STEPS,
                              guidance_scale=guidance)
    assert len(batch) == 3
    for single, out in zip(singles, batch, strict=True):
        assert out.frames.shape == (5, 64, 64, 3)
        np.testing.assert_allclose(out.frames, single, atol=2e-5)
    assert np.abs(singles[0] - singles[1]).max() > 1e-3  # the items really differ
    with pytest.raises(ValueError, match="one seed"):
        pipe.sample_batch(images, joints, seeds=[1])
    with pytest.raises(ValueError, match="same frame count"):
        pipe.sample_batch(images[:2], [joints[0], make_joints(9)], seeds=[1, 2])


@pytest.mark.parametrize("mode, says", [("soft", "without hand control"), ("upstream", "zero joints")])
def test_all_invalid_joints_warning_says_what_the_mode_does(image, mode, says):
    """Invalid joints contribute nothing in our modes, but upstream mode encodes them as the authors' zero joints."""
    from worldmodel.control.module import HandControlModule

    c = build_tiny(**SMALL_TINY)
    ensure_widened(c.transformer)
    torch.manual_seed(0)
    p = HandControlPipeline.from_components(c, HandControlModule(occlusion=mode, **CONTROL))
    p.set_progress_bar_config(disable=True)
    joints = make_joints(5)
    joints = joints.replace(valid=np.zeros_like(joints.valid))
    with pytest.warns(UserWarning, match=says):
        _run(p, image, joints, num_inference_steps=1)


def test_first_frame_from_the_reference(pipe, image):
    """``first_frame="reference"``: before every step latent frame 0 is the reference's latent noised to that step's
    σ on the frame's own initial noise, at the end it is the clean latent, so video frame 0 is the VAE's
    reconstruction of the reference image; the later frames follow from it."""
    import PIL.Image

    joints = make_joints(5)
    pixels = pipe.video_processor.preprocess(PIL.Image.fromarray(image), height=64, width=64)
    with torch.no_grad():
        z = pipe.vae.encode(pixels[:, :, None]).latent_dist.mode()  # (1, 16, 1, 8, 8)
    first = pipe.normalize_latents(z)
    noise0 = torch.randn((1, 16, 2, 8, 8), generator=torch.Generator().manual_seed(0))[:, :, :1]
    seen = []
    hook = pipe.transformer.register_forward_pre_hook(lambda m, args, kw: seen.append(kw["hidden_states"][:, :16, :1]),
                                                      with_kwargs=True)
    try:
        latent = _run(pipe, image, joints, first_frame="reference", output_type="latent").frames
    finally:
        hook.remove()
    sigmas = pipe.scheduler_with_shift(pipe.defaults.shift)
    sigmas.set_timesteps(STEPS)
    assert len(seen) == STEPS
    for s, x in zip(sigmas.sigmas[:STEPS], seen, strict=True):  # both CFG halves see the same latents
        torch.testing.assert_close(x, ((1 - s) * first + s * noise0).expand_as(x), rtol=0, atol=1e-5)
    torch.testing.assert_close(latent[:, :, :1], first, rtol=0, atol=1e-5)

    video = _run(pipe, image, joints, first_frame="reference").frames
    with torch.no_grad():
        recon = ((pipe.vae.decode(z).sample[0, :, 0].permute(1, 2, 0).clamp(-1, 1) + 1) / 2).numpy()
    np.testing.assert_allclose(video[0], recon, atol=1e-4)
    generated = _run(pipe, image, joints).frames  # the default ("generate") denoises frame 0 too
    assert np.abs(generated[0] - recon).max() > 1e-2 and np.abs(generated[1:] - video[1:]).max() > 1e-3
    batch = pipe.sample_batch([image], [joints], seeds=[0], prompts="a hand", num_inference_steps=STEPS,
                              first_frame="reference")
    np.testing.assert_allclose(batch[0].frames, video, atol=2e-5)
    with pytest.raises(ValueError, match="first_frame must be one of"):
        _run(pipe, image, joints, first_frame="copy")


def test_color_match_removes_the_decoders_colour_error_measured_on_the_reference(pipe, image, monkeypatch):
    """``color_match="reference"``: frame 0 is shifted by the VAE's mean error per channel on the reference encoded
    alone, the later frames by its mean error on frames 1–4 of the reference as a still 5-frame clip (worked out
    here with the VAE directly); a decoder that tints everything is corrected back to the untinted decoder's video."""
    import PIL.Image

    joints = make_joints(5)
    plain = _run(pipe, image, joints).frames
    matched = _run(pipe, image, joints, color_match="reference").frames
    pixels = pipe.video_processor.preprocess(PIL.Image.fromarray(image), height=64, width=64)  # [−1, 1]
    with torch.no_grad():
        still = pixels[:, :, None].repeat(1, 1, 5, 1, 1)
        rec = pipe.vae.decode(pipe.vae.encode(still).latent_dist.mode()).sample.clamp(-1, 1)
    err = ((rec - still)[0].mean((2, 3)) / 2).numpy()  # (3, 5) in [0, 1] units
    want = np.concatenate([plain[:1] - err[:, 0], plain[1:] - err[:, 1:].mean(1)])
    np.testing.assert_allclose(matched, np.clip(want, 0, 1), atol=2e-5)
    batch = pipe.sample_batch([image], [joints], seeds=[0], prompts="a hand", num_inference_steps=STEPS,
                              color_match="reference")
    np.testing.assert_allclose(batch[0].frames, matched, atol=2e-5)

    decode = pipe.vae.decode
    tint = torch.tensor([0.3, -0.2, 0.1]).view(1, 3, 1, 1, 1)

    def tinted(z, return_dict=True):
        out = decode(z, return_dict=False)[0] + tint
        return (out,) if not return_dict else type("Out", (), {"sample": out})()

    monkeypatch.setattr(pipe.vae, "decode", tinted)
    tinted_plain = _run(pipe, image, joints).frames
    tinted_matched = _run(pipe, image, joints, color_match="reference").frames
    monkeypatch.undo()
    inside = (plain > 0.2) & (plain < 0.8)  # away from clipping at either end
    np.testing.assert_allclose((tinted_plain - plain)[inside].reshape(-1),
                               np.broadcast_to(tint.view(3).numpy() / 2, plain.shape)[inside], atol=1e-4)
    # the tint is measured on the still clip, where the few pixels it pushes past ±1 are clipped (~0.1 %): 5e-4
    np.testing.assert_allclose(tinted_matched[inside], matched[inside], atol=5e-4)
    with pytest.raises(ValueError, match="color_match must be one of"):
        _run(pipe, image, joints, color_match="histogram")
