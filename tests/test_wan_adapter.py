"""Wan integration: widened patch embedding, I2V condition layout, LoRA targets, trainable parameters."""

from __future__ import annotations

import copy

import pytest
import torch
from _wm_helpers import SMALL_TINY, make_control

from worldmodel.wan.adapter import (
    HandControlledWan,
    add_lora,
    apply_motion_features,
    ensure_widened,
    load_lora,
    lora_module_names,
    save_lora,
    set_trainable,
    transformer_input,
    widen_patch_embedding,
)
from worldmodel.wan.presets import build_tiny

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def base():
    return build_tiny(**SMALL_TINY)


def _inputs(transformer, seed=0, channels=36):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, channels, 2, 8, 8, generator=g)
    text = torch.randn(1, 512, transformer.config.text_dim, generator=g)
    img = torch.randn(1, 5, transformer.config.image_dim, generator=g)
    return x, torch.tensor([637.0]), text, img


def test_widen_copies_weights_and_updates_config(base, tmp_path):
    tr = copy.deepcopy(base.transformer)
    old_w = tr.patch_embedding.weight.detach().clone()
    widen_patch_embedding(tr, 16)
    pe = tr.patch_embedding
    assert pe.in_channels == 52 and tr.config.in_channels == 52
    assert torch.equal(pe.weight[:, :36], old_w)
    assert torch.count_nonzero(pe.weight[:, 36:]) == 0
    # The config change makes save/load rebuild the widened layer.
    tr.save_pretrained(tmp_path / "t")
    loaded = type(tr).from_pretrained(tmp_path / "t")
    assert loaded.patch_embedding.in_channels == 52
    assert torch.equal(loaded.patch_embedding.weight, pe.weight)
    assert ensure_widened(loaded) is loaded  # already widened: accepted as is
    bad = copy.deepcopy(base.transformer)
    widen_patch_embedding(bad, 3)
    with pytest.raises(ValueError, match="in_channels"):
        ensure_widened(bad)


def test_widened_model_with_lora_equals_base_at_step0(base):
    ref = copy.deepcopy(base.transformer).eval()
    wide = copy.deepcopy(base.transformer).eval()
    ensure_widened(wide)
    add_lora(wide, rank=8)
    x, t, text, img = _inputs(ref)
    with torch.no_grad():
        expected = ref(x, t, text, img, return_dict=False)[0]
        for seed in (1, 2):  # the 16 new channels are arbitrary
            control = torch.randn(1, 16, 2, 8, 8, generator=torch.Generator().manual_seed(seed)) * 3
            got = wide(torch.cat([x, control], 1), t, text, img, return_dict=False)[0]
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert expected.shape == (1, 16, 2, 8, 8)


def test_motion_features_overwrite_latent_frames_after_the_first():
    cond = torch.randn(2, 20, 3, 4, 6)
    motion = torch.randn(2, 16, 3, 4, 6)
    out = apply_motion_features(cond, motion)
    assert out.shape == cond.shape
    assert torch.equal(out[:, :4], cond[:, :4])  # mask channels untouched
    assert torch.equal(out[:, 4:, 0], cond[:, 4:, 0])  # frame 0 keeps the reference latent
    assert torch.equal(out[:, 4:, 1:], motion[:, :, 1:])
    with pytest.raises(ValueError, match="motion features must have shape"):
        apply_motion_features(cond, motion[:, :8])
    x = transformer_input(torch.randn(2, 16, 3, 4, 6), out, torch.randn(2, 16, 3, 4, 6))
    assert x.shape == (2, 52, 3, 4, 6)
    assert torch.equal(x[:, 16:36], out)
    with pytest.raises(ValueError, match="must agree"):
        transformer_input(torch.randn(2, 16, 2, 4, 6), out, torch.randn(2, 16, 3, 4, 6))


def test_lora_targets_blocks_only_not_image_projections(base):
    tr = copy.deepcopy(base.transformer)
    add_lora(tr, rank=4)
    names = set(lora_module_names(tr))
    expected = {f"blocks.{i}.{a}.{p}" for i in range(SMALL_TINY["num_layers"]) for a in ("attn1", "attn2")
                for p in ("to_q", "to_k", "to_v", "to_out.0")}
    expected |= {f"blocks.{i}.ffn.net.{p}" for i in range(SMALL_TINY["num_layers"]) for p in ("0.proj", "2")}
    assert names == expected
    all_names = {n for n, _ in tr.named_modules()}
    # The image cross-attention and the image embedder's FFN exist but are not adapted.
    assert "blocks.0.attn2.add_k_proj" in all_names and "condition_embedder.image_embedder.ff.net.2" in all_names
    assert not any("add_k_proj" in n or "add_v_proj" in n or "condition_embedder" in n for n in names)
    assert tr.peft_config["default"].r == 4


def test_only_control_lora_and_patch_embedding_get_gradients(base):
    tr = copy.deepcopy(base.transformer)
    ensure_widened(tr)
    add_lora(tr, rank=4)
    control = make_control()
    params = set_trainable(tr, control)
    with torch.no_grad():  # make LoRA B non-zero so that gradients reach A as well
        for n, p in tr.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    model = HandControlledWan(tr, control)
    joints = torch.randn(1, 5, 42, 3) * 0.05 + torch.tensor([0.0, 0.0, 0.5])
    K = torch.tensor([[[60.0, 0, 32], [0, 60.0, 32], [0, 0, 1]]])
    cond = torch.randn(1, 20, 2, 8, 8)
    ctrl, cond2 = model.control_maps(joints, K, cond)
    x, t, text, img = _inputs(tr)
    pred = model(x[:, :16], t, cond2, ctrl, text, img)
    pred.square().mean().backward()
    trainable = {id(p) for p in params}
    for name, p in list(tr.named_parameters()) + [("control." + n, p) for n, p in control.named_parameters()]:
        is_trainable = "lora_" in name or name.startswith("patch_embedding.") or name.startswith("control.")
        assert (id(p) in trainable) == is_trainable, name
        if is_trainable:
            assert p.requires_grad and p.grad is not None, name
        else:
            assert not p.requires_grad and p.grad is None, name
    assert tr.patch_embedding.weight.grad[:, 36:].abs().sum() > 0  # the control channels learn


def test_lora_save_load_round_trip_and_peft_format(base, tmp_path):
    from peft import PeftModel

    tr = copy.deepcopy(base.transformer)
    ensure_widened(tr)
    add_lora(tr, rank=4)
    with torch.no_grad():
        for n, p in tr.named_parameters():
            if "lora_B" in n:
                p.normal_()
    save_lora(tr, tmp_path / "lora")
    assert {p.name for p in (tmp_path / "lora").iterdir()} == {"adapter_config.json", "adapter_model.safetensors"}
    saved = {k: v for k, v in tr.state_dict().items() if "lora_" in k}
    fresh = ensure_widened(copy.deepcopy(base.transformer))
    load_lora(fresh, tmp_path / "lora")
    state = fresh.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in saved.items())
    # peft itself reads the folder as an adapter.
    pm = PeftModel.from_pretrained(ensure_widened(copy.deepcopy(base.transformer)), tmp_path / "lora")
    state = pm.base_model.model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in saved.items())
    small = build_tiny(**{**SMALL_TINY, "num_layers": 1}).transformer
    with pytest.raises(ValueError, match="does not fit"):
        load_lora(ensure_widened(small), tmp_path / "lora")


def test_control_maps_reject_mismatched_frames(base):
    tr = ensure_widened(copy.deepcopy(base.transformer))
    model = HandControlledWan(tr, make_control())
    joints = torch.randn(1, 9, 42, 3) * 0.05 + torch.tensor([0.0, 0.0, 0.5])
    K = torch.eye(3)[None] * torch.tensor([60.0, 60.0, 1.0])
    with pytest.raises(ValueError, match="does not match the latent grid"):
        model.control_maps(joints, K, torch.randn(1, 20, 2, 8, 8))
