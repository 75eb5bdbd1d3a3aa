"""Training: flow-matching pieces, LR schedule, overfitting one clip, exact resume, clip files, checkpoints."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import torch
from _wm_helpers import CONTROL, OVERFIT_TINY, SMALL_TINY, make_frames, make_joints

from embodiments.clip import read_clip, write_clip
from embodiments.io_utils import atomic_dir
from worldmodel.training.data import ClipDataset
from worldmodel.training.trainer import (
    TrainConfig,
    Trainer,
    flow_matching_pair,
    loss_weights,
    lr_schedule_fns,
    mask_joints,
    sample_sigmas,
    upstream_schedule,
)

torch.set_num_threads(1)


# ------------------------------------------------------------------ pure pieces
def test_sigma_sampling_and_shift():
    g = torch.Generator().manual_seed(0)
    u = sample_sigmas(20000, g, "uniform", shift=1.0)
    assert u.min() > 0 and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.01
    ln = sample_sigmas(20000, torch.Generator().manual_seed(0), "logit_normal", shift=1.0)
    assert abs(ln.median().item() - 0.5) < 0.01 and ln.std() < u.std()  # mass concentrated mid-range
    s = 5.0
    shifted = sample_sigmas(20000, torch.Generator().manual_seed(0), "logit_normal", shift=s)
    # The shift is monotone, so quantiles map through σ' = sσ / (1 + (s − 1)σ).
    q = ln.quantile(0.3).item()
    torch.testing.assert_close(shifted.quantile(0.3).item(), s * q / (1 + (s - 1) * q), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="timestep sampling"):
        sample_sigmas(4, g, "cosine")


def _authors_schedule(shift=5.0, steps=1000):
    """Plain transcription of the authors' training schedule: σ_i and bell-curve weights, one step at a time."""
    sig, bell = [], []
    for i in range(steps):
        s = 1.0 - i / steps  # linspace(1, 0, steps + 1) without its last entry
        s = shift * s / (1 + (shift - 1) * s)
        sig.append(s)
        bell.append(math.exp(-2 * ((1000 * s - 500) / 1000) ** 2))
    lo = min(bell)
    mean = sum(b - lo for b in bell) / steps
    return sig, [(b - lo) / mean for b in bell]


def test_upstream_timesteps_and_weights():
    sig, w = _authors_schedule()
    sched, weights = upstream_schedule(5.0)
    torch.testing.assert_close(sched, torch.tensor(sig), rtol=0, atol=1e-6)
    torch.testing.assert_close(weights, torch.tensor(w), rtol=0, atol=1e-5)
    assert sched[0] == 1.0 and weights.min() == 0.0 and abs(weights.mean().item() - 1) < 1e-5
    # The bell peaks at t = 500: σ' = 0.5 ↔ σ = 1/6 before the shift, step i = 833.
    assert int(weights.argmax()) in (833, 834)
    # Sampling: only steps of the schedule, each equally likely.
    g = torch.Generator().manual_seed(0)
    draws = sample_sigmas(50000, g, "upstream", shift=5.0)
    idx = (sched[None, :] - draws[:, None]).abs().argmin(1)
    assert torch.equal(sched[idx], draws)
    counts = torch.bincount(idx // 100, minlength=10).float()  # tenths of the schedule
    assert (counts / 5000 - 1).abs().max() < 0.06
    # Per-sample loss weights: the bell value of the drawn step; 1 for the other recipes.
    pick = torch.tensor([0, 500, 833, 999])
    torch.testing.assert_close(loss_weights(sched[pick], "upstream", 5.0), torch.tensor([w[i] for i in pick]),
                               rtol=0, atol=1e-5)
    assert torch.equal(loss_weights(sched[pick], "logit_normal"), torch.ones(4))


def test_flow_matching_pair_endpoints_and_velocity():
    x0, eps = torch.randn(3, 16, 2, 4, 4), torch.randn(3, 16, 2, 4, 4)
    sig = torch.tensor([0.0, 1.0, 0.3])
    xt, v = flow_matching_pair(x0, eps, sig)
    assert torch.equal(xt[0], x0[0]) and torch.equal(xt[1], eps[1])
    torch.testing.assert_close(v, eps - x0)
    # The target is the derivative of the path with respect to σ.
    h = 1e-3
    xt2, _ = flow_matching_pair(x0, eps, sig + h)
    torch.testing.assert_close((xt2 - xt) / h, v, rtol=1e-3, atol=1e-3)


def test_joint_masking_only_clears_validity():
    valid = torch.ones(4, 9, 42, dtype=torch.bool)
    valid[0, :, :21] = False
    out = mask_joints(valid, 0.05, torch.Generator().manual_seed(0))
    assert not (out & ~valid).any()  # never turns an invalid joint valid
    frac = 1 - out[valid].float().mean().item()
    assert 0.03 < frac < 0.07
    assert torch.equal(mask_joints(valid, 0.0, torch.Generator()), valid)


def test_lr_schedule_groups():
    const, cosine = lr_schedule_fns(warmup_steps=100, cosine_steps=1600)
    assert all(const(s) == 1.0 for s in (0, 50, 1600))
    assert cosine(0) == 0.0 and cosine(50) == pytest.approx(0.5) and cosine(100) == pytest.approx(1.0)
    assert cosine(850) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert cosine(1600) == pytest.approx(0.0, abs=1e-12) and cosine(2000) == 0.0


def test_lr_schedule_lora_cosine_follows_the_control_curve():
    lora, control = lr_schedule_fns(warmup_steps=10, cosine_steps=110, lora_cosine=True)
    # hand values: linear warm-up to 1 at step 10, then 0.5·(1 + cos(π·(s − 10)/100)), held at 0 past the end
    for s, want in ((0, 0.0), (5, 0.5), (10, 1.0), (60, 0.5), (110, 0.0), (500, 0.0)):
        assert lora(s) == pytest.approx(want, abs=1e-12) and control(s) == pytest.approx(want, abs=1e-12)
    with pytest.raises(ValueError, match="lr_lora_schedule"):
        TrainConfig(lr_lora_schedule="linear").validate()


def test_config_validation():
    with pytest.raises(ValueError, match="timestep_sampling"):
        TrainConfig(timestep_sampling="x").validate()
    with pytest.raises(ValueError, match="needs mixed_precision='bf16'"):
        TrainConfig(base_dtype="bfloat16").validate()
    with pytest.raises(ValueError, match="joint_mask_prob"):
        TrainConfig(joint_mask_prob=1.5).validate()
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"stepz": 3})


# ------------------------------------------------------------------ clip files
def test_clip_round_trip(tmp_path):
    joints = make_joints(9, right_only=True)
    frames = make_frames(9)
    pe = np.random.default_rng(0).normal(size=(512, 32)).astype(np.float32)
    path = write_clip(tmp_path / "c.h5", frames, joints, prompt="pick up the cup", prompt_embeds=pe,
                      source="sim", seed=3, contacts=np.arange(9), scene={"objects": ["cup"], "n": 2},
                      unused=None)
    clip = read_clip(path)
    assert np.array_equal(clip.frames, frames)
    assert np.array_equal(clip.joints.positions, joints.positions)
    assert np.array_equal(clip.joints.valid, joints.valid)
    assert np.array_equal(clip.joints.K, joints.K) and clip.joints.fps == joints.fps
    assert clip.prompt == "pick up the cup" and np.array_equal(clip.prompt_embeds, pe)
    assert clip.extra["source"] == "sim" and clip.extra["seed"] == 3
    assert np.array_equal(clip.extra["contacts"], np.arange(9))
    assert clip.extra["scene"] == {"objects": ["cup"], "n": 2} and "unused" not in clip.extra
    assert not list(tmp_path.glob(".*"))  # no temp file left behind


def test_clip_errors(tmp_path):
    joints, frames = make_joints(5), make_frames(5)
    with pytest.raises(ValueError, match="uint8"):
        write_clip(tmp_path / "a.h5", frames.astype(np.float32), joints)
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        write_clip(tmp_path / "a.h5", frames[..., :2], joints)
    with pytest.raises(ValueError, match="joints have 5 frames but frames has 4"):
        write_clip(tmp_path / "a.h5", frames[:4], joints)
    with pytest.raises(ValueError, match="intrinsics K"):
        write_clip(tmp_path / "a.h5", frames, joints.replace(K=None))
    with pytest.raises(ValueError, match="camera frame"):
        write_clip(tmp_path / "a.h5", frames, joints.replace(frame="world"))
    with pytest.raises(ValueError, match="extra field 'bad'"):
        write_clip(tmp_path / "a.h5", frames, joints, bad=[object()])
    assert not (tmp_path / "a.h5").exists()
    with pytest.raises(FileNotFoundError):
        read_clip(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="not a dexworld clip"):
        read_clip(tmp_path / "other.h5")
    write_clip(tmp_path / "v.h5", frames, joints)
    with h5py.File(tmp_path / "v.h5", "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(ValueError, match="schema version 99"):
        read_clip(tmp_path / "v.h5")
    (tmp_path / "t.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        read_clip(tmp_path / "t.h5")


def test_dataset_resizes_and_scales_intrinsics(tmp_path):
    joints, frames = make_joints(9), make_frames(9)
    pe = np.random.default_rng(0).normal(size=(7, 32)).astype(np.float32)
    write_clip(tmp_path / "c.h5", frames, joints, prompt_embeds=pe)
    ds = ClipDataset(tmp_path, num_frames=5, height=32, width=48, seed=1)
    item = ds[0]
    # Stored prompt embeddings are zero-padded to Wan's 512 text tokens.
    assert item["prompt_embeds"].shape == (512, 32)
    assert np.array_equal(item["prompt_embeds"][:7].numpy(), pe) and not item["prompt_embeds"][7:].any()
    assert item["video"].shape == (3, 5, 32, 48) and item["video"].abs().max() <= 1
    s = item["start"]
    assert 0 <= s <= 4
    # Projections scale with the image: u' = u·48/64, v' = v·32/64.
    uv_old, _ = joints[s:s + 5].project()
    uv_new, _ = joints[s:s + 5].replace(K=item["K"].numpy()).project()
    np.testing.assert_allclose(uv_new[..., 0], uv_old[..., 0] * 0.75, rtol=1e-5)
    np.testing.assert_allclose(uv_new[..., 1], uv_old[..., 1] * 0.5, rtol=1e-5)
    assert ds.window_start(0) == s  # a pure function of (seed, epoch, index)
    with pytest.raises(ValueError, match="4k\\+1"):
        ClipDataset(tmp_path, num_frames=6)
    with pytest.raises(ValueError, match="shorter than"):
        ClipDataset(tmp_path, num_frames=13)
    with pytest.raises(ValueError, match="multiple of 16"):
        ClipDataset(tmp_path, num_frames=5, height=40)


# ------------------------------------------------------------------ training runs
def _write_clips(root, n=1):
    for i in range(n):
        write_clip(root / f"clip{i}.h5", make_frames(9, seed=i), make_joints(9, seed=i), prompt=f"hand {i}")
    return root


def test_overfitting_one_clip_cuts_the_loss(tmp_path):
    data = _write_clips(tmp_path / "data", 1)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), tiny=OVERFIT_TINY, control=CONTROL,
                      num_frames=5, steps=200, lora_rank=16, lr_lora=2e-3, lr_control=2e-3, warmup_steps=0,
                      joint_mask_prob=0.0, fixed_noise=True, checkpoint_every=0, progress=False)
    losses = Trainer(cfg).train()
    assert len(losses) == 200
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) / 10, (losses[:5], losses[-5:])
    log = [json.loads(line) for line in (tmp_path / "run" / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 201))
    assert log[-1]["loss"] == pytest.approx(losses[-1])


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path):
    data = _write_clips(tmp_path / "data", 3)
    common = dict(data=str(data), tiny=SMALL_TINY, control=CONTROL, num_frames=5, steps=7, lora_rank=4,
                  warmup_steps=2, cosine_steps=7, joint_mask_prob=0.2, lr_lora=1e-3, lr_control=1e-3,
                  progress=False, keep_checkpoints=1)
    full = Trainer(TrainConfig(out=str(tmp_path / "a"), checkpoint_every=0, **common)).train()

    cfg_b = TrainConfig(out=str(tmp_path / "b"), checkpoint_every=4, **common)
    first = Trainer(cfg_b).train(5)  # checkpoint at step 4 (mid-epoch 1); step 5 is "lost" when killed
    assert first == full[:5]
    assert (tmp_path / "b" / "latest").read_text() == "checkpoint-000004"
    resumed = Trainer(cfg_b, resume="latest")
    assert (resumed.step, resumed.epoch, resumed.batch_in_epoch) == (4, 1, 1)
    rest = resumed.train()
    assert rest == full[4:]  # bitwise-equal losses: weights, optimiser, schedule, data order, RNG restored
    lrs = resumed.lr_scheduler.get_last_lr()
    assert lrs[0] == pytest.approx(1e-3) and lrs[1] == pytest.approx(0.0, abs=1e-12)
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "loss.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 8))  # the lost step 5 was dropped from the log, then logged again
    assert sorted(p.name for p in (tmp_path / "b").glob("checkpoint-*")) == ["checkpoint-000004"]


def test_upstream_recipe_keeps_lambda_and_weights_the_loss(tmp_path, monkeypatch):
    from worldmodel.training import trainer as trainer_module

    data = _write_clips(tmp_path / "data", 1)
    common = dict(data=str(data), tiny=SMALL_TINY, num_frames=5, steps=2, lora_rank=4, warmup_steps=0,
                  lr_control=1e-2, joint_mask_prob=0.0, progress=False, checkpoint_every=0,
                  timestep_sampling="upstream")
    up = dict(CONTROL, occlusion="upstream")
    tr = Trainer(TrainConfig(out=str(tmp_path / "a"), control=up, **common))
    before = {k: v.clone() for k, v in tr._unwrapped.control.state_dict().items()}
    tr.train()
    after = tr._unwrapped.control.state_dict()
    assert after["depth_scale"].item() == 5.0  # the authors' constant λ, not trained
    assert not torch.equal(after["fuse_in.weight"], before["fuse_in.weight"])  # the rest is
    meta = json.loads((tr.save_checkpoint(tmp_path / "ck") / "dexworld_checkpoint.json").read_text())
    assert meta["config"]["timestep_sampling"] == "upstream"  # the recipe in the training record
    # Asked for: λ trains.
    tr = Trainer(TrainConfig(out=str(tmp_path / "b"), control=dict(up, train_depth_scale=True), **common))
    tr.train()
    assert tr._unwrapped.control.depth_scale.item() != 5.0
    # The loss of a sample is its MSE times the bell weight of its step.
    batch = next(iter(tr.loader))
    torch.manual_seed(0)
    weighted, sigma = tr.compute_loss(batch)
    monkeypatch.setattr(trainer_module, "loss_weights", lambda s, *a: torch.ones_like(s))
    torch.manual_seed(0)
    plain, _ = tr.compute_loss(batch)
    sig, w = _authors_schedule()
    step = min(range(1000), key=lambda i: abs(sig[i] - sigma.item()))
    assert sig[step] == pytest.approx(sigma.item(), abs=1e-6)
    assert weighted.item() == pytest.approx(plain.item() * w[step], rel=1e-5)


def test_atomic_dir_keeps_old_contents_on_failure(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as d:
        (d / "a.txt").write_text("one")
    with pytest.raises(RuntimeError), atomic_dir(target) as d:
        (d / "a.txt").write_text("half")
        raise RuntimeError("killed")
    assert (target / "a.txt").read_text() == "one"
    with atomic_dir(target) as d:
        (d / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temp dirs left


def test_relative_base_path_is_recorded_so_the_checkpoint_loads_from_anywhere(tmp_path, monkeypatch):
    """`--base-path some/dir` given relative to the working directory: the checkpoint must still find its base when
    loaded or resumed from elsewhere (a relative path in a checkpoint means 'inside the checkpoint folder')."""
    from worldmodel.wan.pipeline import HandControlPipeline

    data = _write_clips(tmp_path / "data", 1)
    common = dict(data=str(data), tiny=SMALL_TINY, control=CONTROL, num_frames=5, lora_rank=4, warmup_steps=0,
                  progress=False)
    Trainer(TrainConfig(out=str(tmp_path / "a"), steps=1, checkpoint_every=0, **common)).train()  # writes a/base
    monkeypatch.chdir(tmp_path)
    Trainer(TrainConfig(out="b", base_path="a/base", steps=1, checkpoint_every=1, **common)).train()
    monkeypatch.chdir(tmp_path / "data")
    ckpt = tmp_path / "b" / "checkpoint-000001"
    meta = json.loads((ckpt / "dexworld_checkpoint.json").read_text())
    assert meta["base_path"] == str(tmp_path / "a" / "base")
    with pytest.warns(UserWarning, match="training checkpoints are for resuming"):
        assert HandControlPipeline.from_pretrained(ckpt).transformer is not None
    resumed = Trainer(TrainConfig(out=str(tmp_path / "b"), steps=2, checkpoint_every=1, **common), resume="latest")
    assert resumed.step == 1 and len(resumed.train()) == 1


def test_init_fine_tunes_a_saved_pipeline_from_its_weights(tmp_path):
    """``init``: a new run starts from a saved pipeline's transformer, LoRA, VAE and control module (step 0, fresh
    optimiser); the run's own base is written LoRA-free, and its checkpoints resume and load like any run's."""
    from safetensors.torch import load_file

    data = _write_clips(tmp_path / "data", 2)
    common = dict(data=str(data), tiny=SMALL_TINY, control=CONTROL, num_frames=5, warmup_steps=0, progress=False,
                  train_base=True, lr_lora=1e-3, lr_control=1e-3)
    src = Trainer(TrainConfig(out=str(tmp_path / "src"), steps=3, lora_rank=4, checkpoint_every=0, **common))
    src.train()
    with torch.no_grad():  # weights no fresh build has: LoRA B is non-zero, the VAE is perturbed
        for name, p in src.pipe.transformer.named_parameters():
            if "lora_B" in name:
                p.add_(0.01)
        for p in src.pipe.vae.parameters():
            p.mul_(1.01)
    src.pipe.save_pretrained(tmp_path / "pipe", self_contained=True)
    saved = src.pipe  # the expected weights: the ones in memory before saving, not a reload through the loader

    foreign = tmp_path / "mine" / "base"  # a user's folder named base/ is neither used nor overwritten
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a dexworld run base"):
        Trainer(TrainConfig(out=str(tmp_path / "mine"), init=str(tmp_path / "pipe"), steps=1, **common))
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    src.components.save(tmp_path / "ft" / "base")  # a stale base, as an earlier failed start could leave
    cfg = TrainConfig(out=str(tmp_path / "ft"), init=str(tmp_path / "pipe"), steps=2, lora_rank=16,
                      checkpoint_every=2, vae={"steps": 5}, **common)
    ft = Trainer(cfg)
    assert ft.step == 0 and ft.cfg.lora_rank == 4  # the LoRA is the folder's (rank 4), not a fresh rank-16 one
    for name in ("transformer", "vae", "control"):
        want, got = getattr(saved, name).state_dict(), getattr(ft.pipe, name).state_dict()
        assert set(want) == set(got), name
        assert all(torch.equal(want[k], got[k]) for k in want), name  # exact: no stage-1 VAE, no re-init
    base = load_file(tmp_path / "ft" / "base" / "transformer" / "diffusion_pytorch_model.safetensors")
    assert not any("lora" in k for k in base)
    assert torch.equal(base["patch_embedding.weight"], want_patch := saved.transformer.patch_embedding.weight)
    assert want_patch.shape[1] == ft.pipe.transformer.config.in_channels
    assert ft.optimizer.state == {}  # fresh optimiser
    losses = ft.train()
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert not torch.equal(ft.pipe.control.state_dict()["fuse_in.weight"], saved.control.state_dict()["fuse_in.weight"])
    resumed = Trainer(TrainConfig.from_dict({**json.loads(
        (tmp_path / "ft" / "checkpoint-000002" / "dexworld_checkpoint.json").read_text())["config"], "steps": 3}),
        resume="latest")
    assert resumed.step == 2 and resumed.cfg.base_path == str((tmp_path / "ft" / "base").resolve())
    got = resumed.pipe.transformer.state_dict()
    assert all(torch.equal(v, got[k]) for k, v in ft.pipe.transformer.state_dict().items())
    with pytest.raises(FileNotFoundError, match="not a saved hand-control pipeline"):
        Trainer(TrainConfig(out=str(tmp_path / "bad"), init=str(data), steps=1, **common))
    with pytest.raises(ValueError, match="carries its own base"):
        Trainer(TrainConfig(out=str(tmp_path / "bad"), init=str(tmp_path / "pipe"), base_path=str(tmp_path / "src" /
                                                                                                   "base"), **common))


def test_fresh_control_keeps_the_video_model_and_learns_the_control_anew(tmp_path):
    """``init`` + ``fresh_control``: the saved pipeline's video model with its control-channel inputs zeroed (so it
    no longer reads a control volume) and a new control module of the run's own configuration and seed."""
    data = _write_clips(tmp_path / "data", 2)
    common = dict(data=str(data), tiny=SMALL_TINY, num_frames=5, warmup_steps=0, progress=False, train_base=True,
                  lora_rank=4, lr_lora=1e-3, lr_control=1e-3)
    src = Trainer(TrainConfig(out=str(tmp_path / "src"), steps=2, checkpoint_every=0, control=CONTROL, **common))
    src.train()
    with torch.no_grad():  # control-channel weights a fresh widening would not have
        src.pipe.transformer.patch_embedding.weight[:, 36:].normal_()
    src.pipe.save_pretrained(tmp_path / "pipe", self_contained=True)
    saved = {k: v.clone() for k, v in src.pipe.transformer.state_dict().items()}

    variant = {**CONTROL, "use_depth_weighting": False}
    ft = Trainer(TrainConfig(out=str(tmp_path / "ft"), init=str(tmp_path / "pipe"), fresh_control=True, seed=5,
                             steps=1, checkpoint_every=1, control=variant, **common))
    got = ft.pipe.transformer.state_dict()
    patch = got["patch_embedding.weight"]
    assert patch.shape[1] == 52 and torch.count_nonzero(patch[:, 36:]) == 0
    assert torch.equal(patch[:, :36], saved["patch_embedding.weight"][:, :36])
    assert all(torch.equal(v, got[k]) for k, v in saved.items() if k != "patch_embedding.weight")
    assert ft.pipe.control.config.use_depth_weighting is False and src.pipe.control.config.use_depth_weighting
    assert not torch.equal(ft.pipe.control.fuse_in.weight, src.pipe.control.fuse_in.weight)

    # the transformer's output no longer depends on what arrives in the control channels
    tr = ft.pipe.transformer.eval()
    x = torch.randn(1, 52, 2, 8, 8)
    other = x.clone()
    other[:, 36:] = torch.randn(1, 16, 2, 8, 8) * 10
    kw = dict(timestep=torch.tensor([500.0]), encoder_hidden_states=torch.randn(1, 4, tr.config.text_dim),
              encoder_hidden_states_image=torch.randn(1, 5, tr.config.image_dim), return_dict=False)
    with torch.no_grad():
        assert torch.equal(tr(x, **kw)[0], tr(other, **kw)[0])
    tr.train()
    losses = ft.train()
    assert len(losses) == 1 and all(np.isfinite(losses))
    with pytest.raises(ValueError, match="fresh_control .*give init as well"):
        TrainConfig(out=str(tmp_path / "x"), fresh_control=True, **common).validate()


def test_init_vae_carries_a_trained_pipeline_onto_a_finer_vae(tmp_path):
    """``init`` + ``init_vae``: the saved pipeline's transformer and control weights, a 4× VAE in place of its 8× one,
    and the control module re-gridded to it (downsample 4), so training steps run on the 4× latents (2× the grid)."""
    from worldmodel.wan.presets import build_tiny

    data = _write_clips(tmp_path / "data", 2)
    common = dict(data=str(data), tiny=SMALL_TINY, control=CONTROL, num_frames=5, warmup_steps=0, progress=False,
                  train_base=True, lora_rank=4)
    src = Trainer(TrainConfig(out=str(tmp_path / "src"), steps=1, checkpoint_every=0, **common))
    src.train()
    src.pipe.save_pretrained(tmp_path / "pipe", self_contained=True)
    fine = build_tiny(**SMALL_TINY, vae_dim_mult=(1, 2, 2)).vae
    fine.save_pretrained(tmp_path / "vae4")

    ft = Trainer(TrainConfig(out=str(tmp_path / "ft"), init=str(tmp_path / "pipe"), init_vae=str(tmp_path / "vae4"),
                             steps=2, checkpoint_every=2, **common))
    assert ft.pipe.vae.config.scale_factor_spatial == 4 and ft.pipe.control.config.downsample == 4
    assert src.pipe.control.config.downsample == 8
    for name, want in (("vae", fine), ("control", src.pipe.control)):
        got = getattr(ft.pipe, name).state_dict()
        assert all(torch.equal(v, got[k]) for k, v in want.state_dict().items()), name
    got = ft.pipe.transformer.state_dict()
    assert all(torch.equal(v, got[k]) for k, v in src.pipe.transformer.state_dict().items() if "lora" not in k)
    losses = ft.train()  # 64² frames → 16×16 latents (8× would give 8×8): the control maps must match that grid
    assert len(losses) == 2 and all(np.isfinite(losses))
    resumed = Trainer(TrainConfig.from_dict({**json.loads(
        (tmp_path / "ft" / "checkpoint-000002" / "dexworld_checkpoint.json").read_text())["config"], "steps": 3}),
        resume="latest")
    assert resumed.pipe.vae.config.scale_factor_spatial == 4 and resumed.pipe.control.config.downsample == 4
    with pytest.raises(ValueError, match="give init as well"):
        TrainConfig(out=str(tmp_path / "x"), init_vae=str(tmp_path / "vae4"), **common).validate()
    from diffusers import AutoencoderKLWan

    AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2, 2]).save_pretrained(tmp_path / "vae_z4")
    with pytest.raises(ValueError, match="its latents have 4 channels, the transformer .* takes 16"):
        Trainer(TrainConfig(out=str(tmp_path / "z"), init=str(tmp_path / "pipe"), init_vae=str(tmp_path / "vae_z4"),
                            **common))
    with pytest.raises(FileNotFoundError, match="init_vae .*no config.json"):
        Trainer(TrainConfig(out=str(tmp_path / "y"), init=str(tmp_path / "pipe"), init_vae=str(data), **common))


def test_squared_error_at_given_noise_levels(tmp_path, monkeypatch):
    """``squared_error(batch, sigma)`` (benchmarks/loss_by_sigma.py) takes the flow error at the σ it is given, with
    the noise the training step would have drawn."""
    from worldmodel.wan.adapter import HandControlledWan

    data = _write_clips(tmp_path / "data", 2)
    tr = Trainer(TrainConfig(data=str(data), out=str(tmp_path / "run"), tiny=SMALL_TINY, num_frames=5, steps=1,
                             batch_size=2, lora_rank=4, joint_mask_prob=0.0, progress=False, checkpoint_every=0))
    batch = next(iter(tr.loader))
    loss, sigma = tr.compute_loss(batch)
    sq, given = tr.squared_error(batch, sigma)
    assert torch.equal(given, sigma)
    assert sq.flatten(1).mean(1).mean().item() == pytest.approx(loss.item(), rel=1e-6)  # the same noise and mask
    other, _ = tr.squared_error(batch, torch.full_like(sigma, 0.5))
    assert not torch.allclose(other, sq)
    # By hand: a model that returns its input x_t = (1 − σ)·x0 + σ·ε, against the target ε − x0, errs by exactly x0²
    # at σ = 1, whatever the noise.
    monkeypatch.setattr(HandControlledWan, "forward", lambda self, x, *args, **kwargs: x)
    at_one, _ = tr.squared_error(batch, torch.ones(2))
    x0 = tr.encode_batch(batch)["x0"]
    assert torch.allclose(at_one, x0.square(), atol=1e-6)
