"""The tiny-sim recipe's pieces: VAE stage, whole-transformer training (train_base) with exact resume, control
dropout, base-weight checkpoints, export to a self-contained inference folder, and the CLI preset defaults."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _wm_helpers import CONTROL, SMALL_TINY, make_frames, make_joints

from embodiments.clip import write_clip
from embodiments.sparse import SparseJoints
from worldmodel.training.data import ClipDataset
from worldmodel.training.trainer import TrainConfig, Trainer
from worldmodel.training.vae import VaeTrainConfig, _batch, latent_statistics, train_vae
from worldmodel.wan.adapter import add_lora, base_state_dict, ensure_widened, load_base_state_dict
from worldmodel.wan.pipeline import HandControlPipeline, export_for_inference

torch.set_num_threads(1)


def _write_clips(root, n, T=5):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_clip(root / f"c{i}.h5", make_frames(T, seed=i), make_joints(T, seed=i), prompt=f"a hand moves {i}")
    return root


def _smooth_frames(T=5, size=32):
    """A colour gradient with a bright square moving across it (something a small VAE can learn quickly)."""
    y, x = np.mgrid[0:size, 0:size] / size
    frames = np.stack([np.stack([x, y, 1 - x], -1)] * T) * 200
    for t in range(T):
        frames[t, 8:16, 4 + 4 * t:12 + 4 * t] = 255
    return frames.astype(np.uint8)


def _smooth_video(T=5):
    """:func:`_smooth_frames` as a VAE input batch (1, 3, T, H, W) in [−1, 1]."""
    return torch.from_numpy(_smooth_frames(T)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1


def _small_vae_error():
    """A small tiny-preset VAE, the smooth test clip, and the VAE's reconstruction error of it (posterior mean)."""
    from worldmodel.wan.presets import build_tiny

    vae = build_tiny(**SMALL_TINY).vae.eval()
    video = _smooth_video()
    with torch.no_grad():
        err = vae.decode(vae.encode(video).latent_dist.mode()).sample - video
    return vae, video, err


def _tiny_transformer(seed=0):
    from worldmodel.wan.presets import build_tiny

    return ensure_widened(build_tiny(**SMALL_TINY, seed=seed).transformer)


def test_base_state_dict_round_trip_through_lora():
    a = _tiny_transformer(seed=0)
    plain_keys = set(a.state_dict())
    add_lora(a, rank=4)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # make the base weights differ from any fresh build
    state = base_state_dict(a)
    assert set(state) == plain_keys  # plain model keys: no lora_, no .base_layer.
    b = _tiny_transformer(seed=1)
    load_base_state_dict(b, state)  # into a plain model
    assert all(torch.equal(state[k], v) for k, v in b.state_dict().items())
    c = _tiny_transformer(seed=1)
    add_lora(c, rank=4)
    load_base_state_dict(c, state)  # into a model carrying LoRA
    assert all(torch.equal(v, state[k]) for k, v in base_state_dict(c).items())
    with pytest.raises(ValueError, match="missing"):
        load_base_state_dict(c, {k: v for k, v in state.items() if "blocks.0." not in k})


def test_vae_long_window_phase_trains_on_whole_clips(tmp_path):
    """Phase 1 reads long windows (here the whole 9-frame clip), improves their reconstruction and logs its steps;
    steps=0 runs it alone, continuing a trained VAE."""
    from worldmodel.training.vae import vae_loss
    from worldmodel.wan.presets import build_tiny

    data = tmp_path / "data"
    data.mkdir()
    write_clip(data / "c0.h5", _smooth_frames(9), make_joints(9))
    vae = build_tiny(**SMALL_TINY).vae
    cfg = VaeTrainConfig(steps=0, long_steps=25, long_num_frames=9, long_lr=2e-3, long_warmup_steps=0,
                         batch_size=1, crop=None, stats_batches=1, progress=False)
    clip = ClipDataset(data, 9, 32, 32)[0]["video"][None]
    with torch.no_grad():
        before = float(vae_loss(vae, clip, None, cfg)[1])
    train_vae(vae, data, 32, 32, cfg, log=tmp_path / "vae.jsonl")
    with torch.no_grad():
        after = float(vae_loss(vae, clip, None, cfg)[1])
    assert after < 0.5 * before, (before, after)
    rows = [json.loads(line) for line in (tmp_path / "vae.jsonl").read_text().splitlines()]
    assert len(rows) == 25 and {r["phase"] for r in rows} == {1} and {r["frames"] for r in rows} == {9}


def test_vae_stage_fits_and_sets_latent_statistics(tmp_path):
    from worldmodel.wan.presets import build_tiny

    data = tmp_path / "data"
    data.mkdir()
    write_clip(data / "c0.h5", _smooth_frames(), make_joints(5))
    vae = build_tiny(**SMALL_TINY).vae
    cfg = VaeTrainConfig(steps=30, batch_size=1, crop=None, lr=2e-3, warmup_steps=0, stats_batches=2,
                         progress=False)
    losses = train_vae(vae, data, 32, 32, cfg, log=tmp_path / "vae.jsonl")
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3]), (losses[:3], losses[-3:])
    assert len((tmp_path / "vae.jsonl").read_text().splitlines()) == 30
    assert not any(p.requires_grad for p in vae.parameters())
    # the streamed (double-sum) statistics match a direct computation over the same windows
    ds = ClipDataset(data, cfg.num_frames, 32, 32, seed=cfg.seed)
    with torch.no_grad():
        z = torch.cat([vae.encode(_batch(ds, 1_000_000 + b, cfg, crop=False)[0]).latent_dist.mode()
                       for b in range(cfg.stats_batches)])
    z = z.transpose(0, 1).flatten(1)
    np.testing.assert_allclose(vae.config.latents_mean, z.mean(1).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(vae.config.latents_std, z.std(1, unbiased=False).numpy(), rtol=1e-3, atol=1e-5)
    assert latent_statistics(vae, ds, cfg)[0] == pytest.approx(vae.config.latents_mean)
    with pytest.raises(ValueError, match="num_frames"):
        VaeTrainConfig(num_frames=4)
    with pytest.raises(ValueError, match="long_num_frames"):
        VaeTrainConfig(long_steps=3, long_num_frames=8)
    with pytest.raises(ValueError, match="at least one step"):
        VaeTrainConfig(steps=0)
    with pytest.raises(ValueError, match="unknown VAE stage options"):
        VaeTrainConfig.from_dict({"stepz": 3})


def test_decoder_only_finetune_keeps_the_latent_space(tmp_path):
    """train_encoder=False: the encoder and quant_conv are bit-identical afterwards (so the latents a video model was
    trained on are unchanged), latents_mean/std are kept, the decoder learns, and on_save fires every save_every."""
    from worldmodel.training.vae import vae_loss
    from worldmodel.wan.presets import build_tiny

    data = tmp_path / "data"
    data.mkdir()
    write_clip(data / "c0.h5", _smooth_frames(), make_joints(5))
    vae = build_tiny(**SMALL_TINY).vae
    cfg = VaeTrainConfig(steps=20, batch_size=1, crop=None, lr=2e-3, warmup_steps=0, progress=False,
                         train_encoder=False)
    z = vae.config.z_dim
    vae.register_to_config(latents_mean=[0.5] * z, latents_std=[2.0] * z)
    frozen = {k: v.clone() for k, v in vae.state_dict().items() if k.startswith(("encoder.", "quant_conv."))}
    decoder = {k: v.clone() for k, v in vae.state_dict().items() if k.startswith(("decoder.", "post_quant_conv."))}
    clip = ClipDataset(data, 5, 32, 32)[0]["video"][None]
    with torch.no_grad():
        before = float(vae_loss(vae, clip, None, cfg)[1])
    saved = []
    train_vae(vae, data, 32, 32, cfg, on_save=saved.append, save_every=8)
    with torch.no_grad():
        after = float(vae_loss(vae, clip, None, cfg)[1])
    state = vae.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items())
    assert sum(not torch.equal(state[k], v) for k, v in decoder.items()) > len(decoder) // 2
    assert after < 0.7 * before, (before, after)
    assert list(vae.config.latents_mean) == [0.5] * z and list(vae.config.latents_std) == [2.0] * z
    assert saved == [8, 16]


def test_continue_vae_writes_the_continued_vae_in_place(tmp_path):
    """continue_vae (what scripts/vae_finetune_decoder.py and vae_long_windows.py run): loads the folder, trains with
    the overrides, and replaces the folder atomically — the same encoder, a changed decoder, no temp folders left."""
    from safetensors.torch import load_file

    from worldmodel.training.vae import continue_vae
    from worldmodel.wan.presets import build_tiny

    data = tmp_path / "data"
    data.mkdir()
    write_clip(data / "c0.h5", _smooth_frames(), make_joints(5))
    folder = tmp_path / "vae"
    build_tiny(**SMALL_TINY).vae.save_pretrained(folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    before = load_file(weights)
    continue_vae(folder, folder, data, save_every=1, steps=2, long_steps=0, batch_size=1, warmup_steps=0,
                 train_encoder=False, progress=False)
    after = load_file(weights)
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith(("encoder.", "quant_conv.")))
    assert any(not torch.equal(after[k], v) for k, v in before.items() if k.startswith("decoder."))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "vae"]


def test_control_dropout_validation_and_effect(tmp_path):
    with pytest.raises(ValueError, match="control_dropout"):
        TrainConfig(control_dropout=1.0).validate()
    data = _write_clips(tmp_path / "data", 4)
    seen = {}
    for p in (0.0, 0.99):
        cfg = TrainConfig(data=str(data), out=str(tmp_path / f"run{p}"), tiny=SMALL_TINY, control=CONTROL,
                          num_frames=5, steps=1, batch_size=4, lora_rank=2, joint_mask_prob=0.0,
                          control_dropout=p, checkpoint_every=0, progress=False)
        tr = Trainer(cfg)
        orig = tr._unwrapped.control_maps

        def spy(joints, K, condition, valid, _orig=orig, _p=p):
            seen[_p] = valid.clone()
            return _orig(joints, K, condition, valid)

        tr._unwrapped.control_maps = spy
        tr.train()
    assert seen[0.0].all()  # no masking, no dropout
    assert not seen[0.99].flatten(1).any(1).all()  # ≈ every sample has all joints dropped


def test_train_base_resume_and_export(tmp_path):
    data = _write_clips(tmp_path / "data", 3)
    common = dict(data=str(data), preset="tiny-sim", tiny=SMALL_TINY, control=CONTROL, num_frames=5, height=32,
                  width=32, steps=3, batch_size=1, lora_rank=2, train_base=True, lr_lora=1e-3, control_dropout=0.3,
                  progress=False, keep_checkpoints=3,
                  vae={"steps": 2, "batch_size": 1, "crop": None, "stats_batches": 1, "progress": False})
    full = Trainer(TrainConfig(out=str(tmp_path / "a"), checkpoint_every=0, **common)).train()

    run = tmp_path / "b"
    first = Trainer(TrainConfig(out=str(run), checkpoint_every=2, **common))
    base_before = {k: v.clone() for k, v in base_state_dict(first._unwrapped.transformer).items()}
    assert len((run / "vae_loss.jsonl").read_text().splitlines()) == 2  # stage 1 ran, base written after it
    assert (run / "base" / "vae" / "config.json").exists()
    assert first.train(2) == full[:2]
    ckpt = run / "checkpoint-000002"
    assert (ckpt / "transformer.safetensors").exists()
    trained = base_state_dict(first._unwrapped.transformer)
    changed = [k for k in trained if not torch.equal(trained[k], base_before[k])]
    assert any(k.startswith("blocks.0.attn1.to_q") for k in changed)  # a LoRA-wrapped base weight trained too
    assert any(k.startswith("proj_out") for k in changed)  # and one never touched by LoRA

    resumed = Trainer(TrainConfig(out=str(run), checkpoint_every=2, **common), resume="latest")
    assert resumed.train() == full[2:]  # bitwise: base weights restored from transformer.safetensors

    out = export_for_inference(resumed.save_checkpoint(), tmp_path / "export")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert not any(f.endswith((".pt", ".bin")) for f in files) and "transformer.safetensors" not in files
    index = json.loads((out / "model_index.json").read_text())  # self-contained: the run's base is copied in
    assert index["base_model"] is None and "transformer/diffusion_pytorch_model.safetensors" in files
    pipe = HandControlPipeline.from_pretrained(out)
    want = resumed._unwrapped.transformer.state_dict()
    got = pipe.transformer.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    assert pipe.vae.config.latents_mean == pytest.approx(resumed.components.vae.config.latents_mean)
    assert (pipe.defaults.height, pipe.defaults.num_frames) == (32, 5)


def test_cli_tiny_sim_starts_from_the_recipe(tmp_path):
    from dexworld.cli import build_parser
    from dexworld.commands.train import build_config
    from worldmodel.wan.presets import TRAIN_DEFAULTS

    parser = build_parser()
    args = parser.parse_args(["train", "--preset", "tiny-sim", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                              "--steps", "7", "--vae-steps", "11"])
    cfg = build_config(args)
    recipe = TRAIN_DEFAULTS["tiny-sim"]
    assert cfg.preset == "tiny-sim" and cfg.train_base and cfg.steps == 7
    assert cfg.control_dropout == recipe["control_dropout"] and cfg.batch_size == recipe["batch_size"]
    assert cfg.vae == {**recipe["vae"], "steps": 11}
    plain = build_config(parser.parse_args(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r")]))
    assert plain.preset == "tiny" and not plain.train_base and plain.vae == {} and plain.control_dropout == 0.0


@pytest.mark.parametrize("name, spatial, inner", [("tiny_sim_4x_vae.json", 4, 4 * 48),
                                                   ("tiny_sim_4x_wide.json", 4, 6 * 48),
                                                   ("tiny_sim_wide_vae.json", 8, 4 * 48)])
def test_config_files_parse_through_the_cli_and_build(tmp_path, name, spatial, inner):
    """Each file under configs/ that docs/results.md runs (`dexworld train --config FILE`) parses through the
    CLI into the tiny-sim recipe and builds the model it names: VAE compression and transformer inner width
    (heads × head dim 48) by hand from the file."""
    from dexworld.cli import build_parser
    from dexworld.commands.train import build_config
    from worldmodel.wan.presets import build_tiny

    path = Path(__file__).resolve().parents[1] / "configs" / name
    args = build_parser().parse_args(["train", "--config", str(path), "--data", str(tmp_path),
                                      "--out", str(tmp_path / "r"), "--steps", "1"])
    cfg = build_config(args)
    assert cfg.preset == "tiny-sim" and cfg.train_base and cfg.steps == 1
    c = build_tiny("tiny-sim", **cfg.tiny)
    assert c.vae.config.scale_factor_spatial == spatial
    t = c.transformer.config
    assert t.num_attention_heads * t.attention_head_dim == inner


def test_tiny_vae_width_multipliers():
    """vae_dim_mult sets the VAE's level widths: base 4 × (1, 2, 4, 4) → 16 channels at the deepest level
    (base 4 × (1, 2, 2, 2) → 8), and the latent stays 16 channels at 8× spatial / 4× temporal compression."""
    from worldmodel.wan.presets import build_tiny

    wide = build_tiny(**SMALL_TINY, vae_base_dim=4, vae_dim_mult=(1, 2, 4, 4)).vae
    narrow = build_tiny(**SMALL_TINY, vae_base_dim=4).vae
    assert list(wide.config.dim_mult) == [1, 2, 4, 4]
    assert wide.encoder.mid_block.resnets[0].conv1.in_channels == 16
    assert narrow.encoder.mid_block.resnets[0].conv1.in_channels == 8
    with torch.no_grad():
        z = wide.encode(torch.zeros(1, 3, 5, 32, 32)).latent_dist.mode()
    assert z.shape == (1, 16, 2, 4, 4)
    with pytest.raises(ValueError, match="vae_dim_mult must be 3 or 4 positive multipliers"):
        build_tiny(**SMALL_TINY, vae_dim_mult=(1, 2))


def test_tiny_four_times_vae_with_a_coarser_patch_generates_and_checks_its_control_grid():
    """Three VAE levels give 4× spatial compression (a 32² clip of 5 frames → 8×8 latents, 1 + 4/4 = 2 latent
    frames); a 1×4×4 patch keeps the token count of the 8× VAE's 1×2×2 patch. The pipeline runs end to end with a
    control module on the 4× grid, refuses one built for the 8× grid."""
    from worldmodel.control.module import HandControlModule
    from worldmodel.wan.presets import build_tiny

    c = build_tiny(**SMALL_TINY, vae_base_dim=4, vae_dim_mult=(1, 2, 2), patch=(1, 4, 4))
    assert (c.vae.config.scale_factor_spatial, c.vae.config.scale_factor_temporal) == (4, 4)
    assert list(c.transformer.config.patch_size) == [1, 4, 4]
    with torch.no_grad():
        z = c.vae.encode(torch.zeros(1, 3, 5, 32, 32)).latent_dist.mode()
    assert z.shape == (1, 16, 2, 8, 8)
    with pytest.raises(ValueError, match="downsample is 8 but the VAE's scale_factor_spatial is 4"):
        HandControlPipeline.from_components(c, HandControlModule(**CONTROL))
    torch.manual_seed(0)
    pipe = HandControlPipeline.from_components(c, HandControlModule(downsample=4, **CONTROL))
    out = pipe(make_frames(1)[0], make_joints(5), prompt="a hand", num_inference_steps=1, seed=0, progress=False)
    assert np.asarray(out.frames).shape == (5, 64, 64, 3)


def test_trainer_builds_the_control_module_on_the_vae_grid(tmp_path):
    """Without a downsample in the config the trainer's control module takes the VAE's (4 for a 3-level VAE)."""
    data = _write_clips(tmp_path / "data", 2)
    tiny = {**SMALL_TINY, "vae_base_dim": 4, "vae_dim_mult": (1, 2, 2), "patch": (1, 4, 4)}
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), tiny=tiny, control=CONTROL, num_frames=5, steps=1,
                      batch_size=2, lora_rank=2, checkpoint_every=0, progress=False)
    control = Trainer(cfg)._unwrapped.control
    assert (control.config.downsample, control.config.temporal_stride) == (4, 4)


def _point_hand(T: int, u: float, v: float) -> SparseJoints:
    """Every joint of a right hand at one point 0.5 m ahead, projecting to pixel (u, v)."""
    from embodiments.layout import hand_slots

    K = np.array([[60.0, 0.0, u], [0.0, 60.0, v], [0.0, 0.0, 1.0]])
    pos = np.zeros((T, 42, 3))
    pos[..., 2] = 0.5
    valid = np.zeros((T, 42), bool)
    valid[:, hand_slots("right")] = True
    return SparseJoints(pos, valid, K=K, frame="camera")


def _disk(size: int, u: float, v: float, r: float) -> np.ndarray:
    """Pixels whose centres lie within r of (u, v), written out directly."""
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    return (xs - u) ** 2 + (ys - v) ** 2 <= r * r


def test_vae_batches_carry_hand_regions_and_centre_crops_on_the_hand(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    frames = make_frames(5, seed=3)[:, :32, :32].repeat(2, 1).repeat(2, 2)  # 64 × 64
    write_clip(data / "c0.h5", frames, _point_hand(5, 50, 44))
    ds = ClipDataset(data, 5, 64, 64)
    full = ds[0]["video"]
    cfg = VaeTrainConfig(batch_size=1, crop=32, hand_crop=1.0, hand_radius_px=4.0)
    video, mask = _batch(ds, 0, cfg, hand=True)
    # hand centre (row 44, col 50) → crop origin on the 16-px grid nearest to centring it: (32, 32)
    assert torch.equal(video[0], full[..., 32:, 32:])
    expected = torch.from_numpy(_disk(64, 50, 44, 4.0)[32:, 32:])
    assert mask.shape == (1, 5, 32, 32) and all(torch.equal(m, expected) for m in mask[0])
    assert int(mask[0, 0].sum()) == int(_disk(64, 50, 44, 4.0).sum())  # the whole hand is inside the crop
    # without hand crops the batch is what it was before masks existed: the same windows and uniform crops
    plain = dataclasses.replace(cfg, hand_crop=0.0)
    for step in range(4):
        assert torch.equal(_batch(ds, step, plain, hand=True)[0], _batch(ds, step, plain)[0])
        assert _batch(ds, step, plain)[1] is None
    with pytest.raises(ValueError, match="hand_crop"):
        VaeTrainConfig(hand_crop=1.5)


def test_vae_loss_adds_the_hand_region_term():
    """loss(hand_weight=w) − loss(0) = w · (MSE + l1_weight · L1 over the hand pixels), computed here by hand."""
    from worldmodel.training.vae import vae_loss

    vae, video, err = _small_vae_error()
    mask = torch.zeros(1, 5, 32, 32, dtype=torch.bool)
    mask[:, :, 8:16, 4:20] = True
    cfg = VaeTrainConfig(l1_weight=0.5, kl_weight=0.0)
    with torch.no_grad():
        err = err.permute(0, 2, 3, 4, 1)[mask]  # (hand pixels, 3)
        term = float(err.square().mean() + 0.5 * err.abs().mean())
        base, mse = vae_loss(vae, video, None, cfg, mask)
        weighted, mse_w = vae_loss(vae, video, None, dataclasses.replace(cfg, hand_weight=3.0), mask)
        empty, _ = vae_loss(vae, video, None, dataclasses.replace(cfg, hand_weight=3.0), torch.zeros_like(mask))
    assert float(weighted - base) == pytest.approx(3.0 * term, rel=1e-4)
    assert float(mse_w) == float(mse) and float(empty) == pytest.approx(float(base))


def test_vae_loss_adds_the_low_frequency_colour_term():
    """loss(color_weight=w) − loss(0) = w · (MSE + l1_weight · L1 of the error's 8×8-cell means), the cell means taken
    here with a reshape; a uniform colour offset passes through the pooling whole, fine detail does not."""
    from worldmodel.training.vae import vae_loss

    vae, video, err = _small_vae_error()  # err: (1, 3, 5, 32, 32)
    cfg = VaeTrainConfig(l1_weight=0.5, kl_weight=0.0)
    with torch.no_grad():
        cells = err.reshape(1, 3, 5, 4, 8, 4, 8).mean(dim=(4, 6))
        term = float(cells.square().mean() + 0.5 * cells.abs().mean())
        base, mse = vae_loss(vae, video, None, cfg)
        weighted, mse_w = vae_loss(vae, video, None, dataclasses.replace(cfg, color_weight=2.0))
    assert float(weighted - base) == pytest.approx(2.0 * term, rel=1e-4)
    assert float(mse_w) == float(mse)
    with pytest.raises(ValueError, match="color_weight"):
        VaeTrainConfig(color_weight=-1.0)


def test_vae_loss_adds_frame_zero_again():
    """loss(first_frame_weight=w) − loss(0) = w · (MSE + l1_weight · L1 of frame 0's error), and with a colour weight
    c also w · c · the same of frame 0's 8×8-cell means (taken here with a reshape): frame 0 alone, not the clip."""
    from worldmodel.training.vae import vae_loss

    vae, video, err = _small_vae_error()
    e0 = err[:, :, 0]  # (1, 3, 32, 32)
    cfg = VaeTrainConfig(l1_weight=0.5, kl_weight=0.0)
    with torch.no_grad():
        cells = e0.reshape(1, 3, 4, 8, 4, 8).mean(dim=(3, 5))
        pixel = float(e0.square().mean() + 0.5 * e0.abs().mean())
        colour = float(cells.square().mean() + 0.5 * cells.abs().mean())
        for c in (0.0, 2.0):
            base, _ = vae_loss(vae, video, None, dataclasses.replace(cfg, color_weight=c))
            weighted, _ = vae_loss(vae, video, None, dataclasses.replace(cfg, color_weight=c, first_frame_weight=3.0))
            assert float(weighted - base) == pytest.approx(3.0 * (pixel + c * colour), rel=1e-4)
    with pytest.raises(ValueError, match="first_frame_weight"):
        VaeTrainConfig(first_frame_weight=-1.0)


def test_vae_loss_anchors_the_latents_of_frames_one_on():
    """loss(anchor_weight=w, anchor) − loss(0) = w · mean(((μ − μ_anchor) / latents_std)²) over latent frames 1 on,
    computed here from the two encoders' means; latent frame 0 does not count, and a frozen encoder cannot anchor."""
    import copy

    from worldmodel.training.vae import vae_loss

    vae, video, _ = _small_vae_error()
    anchor = copy.deepcopy(vae)
    std = torch.linspace(0.5, 2.0, vae.config.z_dim)
    anchor.register_to_config(latents_std=std.tolist())
    with torch.no_grad():
        for p in vae.encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
        d = (vae.encode(video).latent_dist.mode() - anchor.encode(video).latent_dist.mode()) / std.view(1, -1, 1, 1, 1)
        cfg = VaeTrainConfig(kl_weight=0.0)
        base, _ = vae_loss(vae, video, None, cfg, anchor=anchor)
        anchored, _ = vae_loss(vae, video, None, dataclasses.replace(cfg, anchor_weight=2.0), anchor=anchor)
    term = float(d[:, :, 1:].square().mean())
    assert float(anchored - base) == pytest.approx(2.0 * term, rel=1e-4)
    assert abs(float(d.square().mean()) - term) > 1e-3 * term  # frame 0's distance differs: leaving it out shows
    with pytest.raises(ValueError, match="anchor_weight"):
        VaeTrainConfig(anchor_weight=1.0, train_encoder=False)


def test_anchored_whole_vae_training_keeps_the_later_latents_nearer_the_start(tmp_path):
    """The same whole-VAE run with and without the anchor: the anchored encoder's latents of frames 1 on end nearer
    the starting VAE's, and its latent statistics stay the starting VAE's."""
    import copy

    from worldmodel.training.vae import train_vae

    data = tmp_path / "data"
    data.mkdir()
    write_clip(data / "c0.h5", _smooth_frames(), make_joints(5))
    start, video, _ = _small_vae_error()
    with torch.no_grad():
        z0 = start.encode(video).latent_dist.mode()[:, :, 1:]
    start.register_to_config(latents_mean=[0.25] * start.config.z_dim, latents_std=[2.0] * start.config.z_dim)
    drift, stats = {}, {}
    for w in (0.0, 50.0):
        vae = copy.deepcopy(start)
        cfg = VaeTrainConfig(steps=8, batch_size=1, crop=None, lr=3e-3, warmup_steps=0, kl_weight=0.0,
                             anchor_weight=w, progress=False, stats_batches=1)
        train_vae(vae, data, 32, 32, cfg)
        with torch.no_grad():
            drift[w] = float((vae.encode(video).latent_dist.mode()[:, :, 1:] - z0).square().mean())
        stats[w] = (list(vae.config.latents_mean), list(vae.config.latents_std))
    assert drift[50.0] < 0.5 * drift[0.0], drift
    # anchored, the latent statistics stay the start's (the video model's scale); otherwise they are measured anew
    assert stats[50.0] == ([0.25] * start.config.z_dim, [2.0] * start.config.z_dim)
    assert stats[0.0][1] != [2.0] * start.config.z_dim


@pytest.fixture
def finetune_script(tmp_path):
    """(scripts/vae_finetune_decoder.py as a module, a folder with one 5-frame clip, a saved small tiny VAE)."""
    import importlib.util

    from worldmodel.wan.presets import build_tiny

    spec = importlib.util.spec_from_file_location(
        "vae_finetune_decoder", Path(__file__).resolve().parents[1] / "scripts" / "vae_finetune_decoder.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    data = tmp_path / "data"
    data.mkdir()
    write_clip(data / "c0.h5", _smooth_frames(), make_joints(5))
    src = tmp_path / "vae"
    build_tiny(**SMALL_TINY).vae.save_pretrained(src)
    return script, data, src


@pytest.mark.parametrize("train_encoder", [False, True])
def test_vae_finetune_script_trains_the_encoder_only_when_asked(tmp_path, finetune_script, train_encoder):
    """scripts/vae_finetune_decoder.py keeps the encoder bit-identical by default (the latent space a video model was
    trained on) and changes it with --train-encoder; the source folder is never written."""
    from safetensors.torch import load_file

    script, data, src = finetune_script
    before = load_file(src / "diffusion_pytorch_model.safetensors")
    argv = ["--vae", str(src), "--data", str(data), "--out", str(tmp_path / "ft"), "--steps", "2", "--long-steps", "0"]
    assert script.main(argv + (["--train-encoder"] if train_encoder else [])) == 0
    after = load_file(tmp_path / "ft" / "vae" / "diffusion_pytorch_model.safetensors")
    encoder = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    changed = sum(not torch.equal(after[k], before[k]) for k in encoder)
    assert (changed > len(encoder) // 2) if train_encoder else changed == 0
    # the decoder learns either way (step 1 of the warm-up has LR 0, so two steps are the fewest that train)
    assert any(not torch.equal(after[k], v) for k, v in before.items() if k.startswith("decoder."))
    assert all(torch.equal(v, before[k]) for k, v in load_file(src / "diffusion_pytorch_model.safetensors").items())


def test_vae_finetune_script_refuses_an_anchor_without_the_encoder(tmp_path, finetune_script):
    script, data, src = finetune_script
    with pytest.raises(SystemExit, match="--train-encoder"):
        script.main(["--vae", str(src), "--data", str(data), "--out", str(tmp_path / "ft"), "--anchor-weight", "1"])
    assert not (tmp_path / "ft").exists()


def test_vae_finetune_script_trains_a_wider_decoder_under_the_same_encoder(tmp_path, finetune_script):
    """--new-decoder-width: the saved VAE encodes a clip to exactly the source's latents (so a video model trained on
    them still fits) and decodes it with a decoder of the asked width; --train-encoder with it is refused."""
    from diffusers import AutoencoderKLWan

    script, data, src = finetune_script
    argv = ["--vae", str(src), "--data", str(data), "--steps", "2", "--long-steps", "0", "--new-decoder-width", "24"]
    with pytest.raises(SystemExit, match="drop --train-encoder"):
        script.main(argv + ["--out", str(tmp_path / "bad"), "--train-encoder"])
    assert script.main(argv + ["--out", str(tmp_path / "ft")]) == 0
    old, new = AutoencoderKLWan.from_pretrained(src), AutoencoderKLWan.from_pretrained(tmp_path / "ft" / "vae")
    assert new.config.decoder_base_dim == 24 and new.config.latents_mean == old.config.latents_mean
    # Wan's decoder opens with a conv from z_dim to base width × the last dim_mult channels
    assert new.decoder.conv_in.weight.shape[:2] == (24 * old.config.dim_mult[-1], old.config.z_dim)
    video = _smooth_video()
    with torch.no_grad():
        assert torch.equal(new.encode(video).latent_dist.mode(), old.encode(video).latent_dist.mode())
        assert new.decode(new.encode(video).latent_dist.mode()).sample.shape == video.shape
