"""Converter of the authors' released checkpoint: DiffSynth Wan names → diffusers + peft + control module."""

from __future__ import annotations

import json

import pytest
import torch
from _wm_helpers import SMALL_TINY, make_joints
from safetensors.torch import save_file

from dexworld.cli import main
from worldmodel.control.module import UPSTREAM_NAMES, HandControlModule
from worldmodel.wan.adapter import WIDE_IN_CHANNELS, widen_patch_embedding
from worldmodel.wan.convert import CONVERSION_FILE, convert_dit_lora, convert_hand, convert_upstream
from worldmodel.wan.pipeline import HandControlPipeline
from worldmodel.wan.presets import build_tiny

torch.set_num_threads(1)
RANK = 4


# The original Wan / DiffSynth names of the linears the authors' LoRA adapts, and where each sits in diffusers'
# WanTransformerBlock (written here from the two models' source, not taken from the converter).
WAN_TO_DIFFUSERS = {
    "self_attn.q": "attn1.to_q", "self_attn.k": "attn1.to_k", "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "cross_attn.q": "attn2.to_q", "cross_attn.k": "attn2.to_k", "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "ffn.0": "ffn.net.0.proj", "ffn.2": "ffn.net.2",
}


def _module(transformer, block: int, diffusers_name: str) -> torch.nn.Linear:
    return transformer.get_submodule(f"blocks.{block}.{diffusers_name}")


def synthetic_dit(transformer, *, default: bool = True, prefix: str = "", alpha: float | None = None,
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """A DiffSynth-named LoRA + widened patch embedding with the tiny transformer's shapes."""
    g = torch.Generator().manual_seed(seed)
    ad = ".default" if default else ""
    sd = {}
    for b in range(len(transformer.blocks)):
        for theirs, ours in WAN_TO_DIFFUSERS.items():
            lin = _module(transformer, b, ours)
            sd[f"{prefix}blocks.{b}.{theirs}.lora_A{ad}.weight"] = torch.randn(RANK, lin.in_features, generator=g)
            sd[f"{prefix}blocks.{b}.{theirs}.lora_B{ad}.weight"] = torch.randn(lin.out_features, RANK, generator=g)
            if alpha is not None:
                sd[f"{prefix}blocks.{b}.{theirs}.alpha"] = torch.tensor(alpha)
    pe = transformer.patch_embedding
    sd[f"{prefix}patch_embedding.weight"] = torch.randn(pe.out_channels, WIDE_IN_CHANNELS, *pe.kernel_size,
                                                        generator=g)
    sd[f"{prefix}patch_embedding.bias"] = torch.randn(pe.out_channels, generator=g)
    return sd


def authors_hand(seed: int = 0) -> tuple[dict[str, torch.Tensor], HandControlModule]:
    torch.manual_seed(seed)
    ref = HandControlModule(occlusion="upstream", embed_dim=16)
    for p in ref.parameters():  # non-trivial values everywhere (LayerNorm starts at 1/0)
        torch.nn.init.normal_(p, std=0.3) if p.requires_grad else None
    ours = ref.state_dict()
    inv = {v: k for k, v in UPSTREAM_NAMES.items()}
    return {f"state.{inv[k]}": v.clone() for k, v in ours.items() if k in inv}, ref


def manual_merge(transformer, dit: dict[str, torch.Tensor], scale: float, prefix: str = "", ad: str = ".default",
                 names: dict[str, str] = WAN_TO_DIFFUSERS):
    """Independent reference: W ← W + scale·B·A on a plain (peft-free) copy, patch embedding replaced."""
    widen_patch_embedding(transformer)
    with torch.no_grad():
        for b in range(len(transformer.blocks)):
            for theirs, ours in names.items():
                A = dit[f"{prefix}blocks.{b}.{theirs}.lora_A{ad}.weight"]
                B = dit[f"{prefix}blocks.{b}.{theirs}.lora_B{ad}.weight"]
                _module(transformer, b, ours).weight += scale * B @ A
        transformer.patch_embedding.weight.copy_(dit[f"{prefix}patch_embedding.weight"])
        transformer.patch_embedding.bias.copy_(dit[f"{prefix}patch_embedding.bias"])
    return transformer


def _inputs(transformer, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = transformer.config
    x = torch.randn(1, WIDE_IN_CHANNELS, 2, 8, 8, generator=g)
    text = torch.randn(1, 512, cfg.text_dim, generator=g)
    img = torch.randn(1, 17, cfg.image_dim, generator=g)
    return dict(hidden_states=x, timestep=torch.tensor([500.0]), encoder_hidden_states=text,
                encoder_hidden_states_image=img, return_dict=False)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "tiny"
    build_tiny(**SMALL_TINY).save(path)
    return path


@pytest.mark.parametrize("variant", [dict(default=True, prefix=""),
                                     dict(default=False, prefix="diffusion_model.", alpha=2.0)])
def test_converted_checkpoint_equals_manual_merge(tmp_path, base, variant):
    ref_t = build_tiny(**SMALL_TINY).transformer
    dit = synthetic_dit(ref_t, **variant)
    hand, ref_hand = authors_hand()
    save_file(dit, tmp_path / "dit.safetensors")
    save_file(hand, tmp_path / "hand.safetensors")
    out = convert_upstream(tmp_path / "dit.safetensors", tmp_path / "hand.safetensors", tmp_path / "ckpt",
                           base_path=base, height=64, width=64, num_frames=5)
    meta = json.loads((out / CONVERSION_FILE).read_text())
    index = json.loads((out / "model_index.json").read_text())
    assert meta["lora_rank"] == RANK and index["base_model"] == str(base.resolve())
    assert not (out / "transformer").exists() and not (out / "vae").exists()  # the base is named, not copied
    scale = variant.get("alpha", RANK) / RANK  # DiffSynth: alpha = rank, scale 1, unless .alpha keys say otherwise

    pipe = HandControlPipeline.from_pretrained(out)  # the same loader 'dexworld generate --checkpoint' uses
    conv = pipe.transformer
    merged = manual_merge(ref_t, dit, scale, variant["prefix"], ".default" if variant["default"] else "")
    # Layer by layer: peft's LoRA forward equals x·(W + s·B·A)ᵀ + b.
    x = torch.randn(3, conv.blocks[0].attn1.to_q.in_features)
    for b in range(len(conv.blocks)):
        for ours in ("attn1.to_q", "attn2.to_out.0"):
            lin = _module(merged, b, ours)
            torch.testing.assert_close(_module(conv, b, ours)(x), x @ lin.weight.T + lin.bias, rtol=1e-5, atol=1e-5)
    # The whole transformer.
    with torch.no_grad():
        got = conv(**_inputs(conv))[0]
        want = merged(**_inputs(merged))[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert got.abs().mean() > 1e-3  # the LoRA and patch embedding actually changed something
    # The comparison sees a swap of two projections: cross-attention k ↔ v merged the wrong way round differs.
    swapped = dict(WAN_TO_DIFFUSERS, **{"cross_attn.k": "attn2.to_v", "cross_attn.v": "attn2.to_k"})
    wrong = manual_merge(build_tiny(**SMALL_TINY).transformer, dit, scale, variant["prefix"],
                         ".default" if variant["default"] else "", names=swapped)
    with torch.no_grad():
        assert (wrong(**_inputs(wrong))[0] - got).abs().max() > 1e-2
    # The hand controller: same outputs as the authors' weights in our module.
    j = torch.from_numpy(make_joints(5).positions).float()[None]
    K = torch.tensor([[[60.0, 0, 32], [0, 60.0, 32], [0, 0, 1]]])
    z0 = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        for a, b in zip(pipe.control(j, K, z0), ref_hand(j, K, z0), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_cli_and_hand_config_metadata(tmp_path, base):
    ref_t = build_tiny(**SMALL_TINY).transformer
    dit = synthetic_dit(ref_t)
    del dit["patch_embedding.bias"]  # taken from the base model instead
    hand, _ = authors_hand()
    hand = {k.replace("state.", "hand_encoder."): v for k, v in hand.items()}
    cfg = {"num_joints": 42, "embed_dim": 16, "vae_channels": 16, "output_dim": 16, "downsample_rate": 8,
           "heatmap_sigma": 3.0, "canvas_height": 64}
    save_file(dit, tmp_path / "dit.safetensors")
    save_file(hand, tmp_path / "hand.safetensors", metadata={"config": json.dumps(cfg)})
    rc = main(["convert-upstream", str(tmp_path / "dit.safetensors"), str(tmp_path / "hand.safetensors"),
               "-o", str(tmp_path / "ck"), "--base-path", str(base), "--height", "64", "--width", "64",
               "--num-frames", "5"])
    assert rc == 0
    pipe = HandControlPipeline.from_pretrained(tmp_path / "ck")
    assert pipe.control.config.heatmap_sigma == 3.0 and pipe.control.config.occlusion == "upstream"
    base_bias = build_tiny(**SMALL_TINY).transformer.patch_embedding.bias
    torch.testing.assert_close(pipe.transformer.patch_embedding.bias, base_bias, rtol=0, atol=0)
    # Without a base to take the bias from: a clear error.
    with pytest.raises(ValueError, match="no patch_embedding.bias; pass base_path"):
        convert_upstream(tmp_path / "dit.safetensors", tmp_path / "hand.safetensors", tmp_path / "ck2")
    assert main(["convert-upstream", str(tmp_path / "missing.safetensors"), str(tmp_path / "hand.safetensors"),
                 "-o", str(tmp_path / "ck3")]) == 1


def test_errors_name_the_keys():
    ref_t = build_tiny(**SMALL_TINY).transformer
    dit = synthetic_dit(ref_t)
    bad = {**dit, "blocks.0.norm3.weight": torch.zeros(4), "blocks.1.self_attn.q.lora_up.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unknown keys \['blocks.0.norm3.weight', 'blocks.1.self_attn.q.lora_up"):
        convert_dit_lora(bad)
    half = {k: v for k, v in dit.items() if k != "blocks.1.ffn.2.lora_B.default.weight"}
    with pytest.raises(ValueError, match=r"missing their other half: \['blocks.1.ffn.2.lora_B'\]"):
        convert_dit_lora(half)
    img = {**dit, "blocks.0.cross_attn.k_img.lora_A.weight": torch.zeros(RANK, 8),
           "blocks.0.cross_attn.k_img.lora_B.weight": torch.zeros(8, RANK)}
    with pytest.raises(ValueError, match="image cross-attention"):
        convert_dit_lora(img)
    narrow = {**dit, "patch_embedding.weight": dit["patch_embedding.weight"][:, :36]}
    with pytest.raises(ValueError, match=r"patch_embedding.weight must be \(inner, 52"):
        convert_dit_lora(narrow)
    mixed = {**dit, "blocks.0.ffn.0.lora_A.default.weight": torch.zeros(2 * RANK, 32),
             "blocks.0.ffn.0.lora_B.default.weight": torch.zeros(64, 2 * RANK)}
    with pytest.raises(ValueError, match="ranks differ"):
        convert_dit_lora(mixed)
    hand, _ = authors_hand()
    with pytest.raises(ValueError, match=r"unknown keys \['extra.weight'\].*missing keys \['cross_norm.bias'\]"):
        convert_hand({**{k.removeprefix("state."): v for k, v in hand.items() if "cross_norm.bias" not in k},
                      "extra.weight": torch.zeros(1)})


def test_partial_adapter_targets_only_given_modules():
    from peft import LoraConfig

    ref_t = build_tiny(**SMALL_TINY).transformer
    dit = {k: v for k, v in synthetic_dit(ref_t).items() if not k.startswith("blocks.1.ffn.")}
    lora = convert_dit_lora(dit)
    assert lora.num_blocks == 2 and len(lora.state) == 2 * (2 * len(WAN_TO_DIFFUSERS) - 2)
    # peft injects LoRA into exactly the converted modules: none on blocks.1.ffn.
    widen_patch_embedding(ref_t)
    ref_t.add_adapter(LoraConfig(r=lora.rank, lora_alpha=lora.alpha, target_modules=lora.target_modules))
    adapted = {n for n, m in ref_t.named_modules() if hasattr(m, "lora_A")}
    assert adapted == {k.removeprefix("base_model.model.").rsplit(".lora_", 1)[0] for k in lora.state}
    # A full adapter on blocks 0..n-1 uses the generic target regex (so a deeper model reports missing keys).
    full = convert_dit_lora({k: v for k, v in synthetic_dit(ref_t).items() if not k.startswith("blocks.1.")})
    assert full.num_blocks == 1 and full.target_modules.startswith("blocks\\.\\d+")


def test_names_agree_with_diffusers_wan_lora_loader():
    """diffusers' own loader of original-Wan LoRA files is an independent authority on the name mapping."""
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_wan_lora_to_diffusers

    ref_t = build_tiny(**SMALL_TINY).transformer
    dit = synthetic_dit(ref_t, default=False, prefix="diffusion_model.")
    ours = convert_dit_lora(dit).state
    lora_only = {k: v for k, v in dit.items() if ".lora_" in k}
    theirs = _convert_non_diffusers_wan_lora_to_diffusers(lora_only)
    assert {k.removeprefix("transformer."): v for k, v in theirs.items()}.keys() == \
        {k.removeprefix("base_model.model."): v for k, v in ours.items()}.keys()
    for k, v in theirs.items():
        assert torch.equal(ours["base_model.model." + k.removeprefix("transformer.")], v), k


@pytest.mark.parametrize("prefix, alpha", [("", None), ("diffusion_model.", 8.0)])
def test_one_training_file_with_dit_and_hand(tmp_path, base, prefix, alpha):
    """DiffSynth's training run saves one file: pipe.dit.* (LoRA + patch embedding) and pipe.hand_controler.*."""
    ref_t = build_tiny(**SMALL_TINY).transformer
    dit = synthetic_dit(ref_t, prefix=prefix, alpha=alpha)
    hand, ref_hand = authors_hand()
    combined = {**{f"pipe.dit.{k}": v for k, v in dit.items()},
                **{f"pipe.hand_controler.{k.removeprefix('state.')}": v for k, v in hand.items()}}
    save_file(combined, tmp_path / "step-1600.safetensors")
    rc = main(["convert-upstream", str(tmp_path / "step-1600.safetensors"), "-o", str(tmp_path / "one"),
               "--base-path", str(base), "--height", "64", "--width", "64", "--num-frames", "5"])
    assert rc == 0
    pipe = HandControlPipeline.from_pretrained(tmp_path / "one")
    scale = (alpha or RANK) / RANK
    merged = manual_merge(ref_t, {k.removeprefix(prefix): v for k, v in dit.items()}, scale)
    with torch.no_grad():
        torch.testing.assert_close(pipe.transformer(**_inputs(pipe.transformer))[0], merged(**_inputs(merged))[0],
                                   rtol=1e-4, atol=1e-4)
        j = torch.from_numpy(make_joints(5).positions).float()[None]
        K = torch.tensor([[[60.0, 0, 32], [0, 60.0, 32], [0, 0, 1]]])
        z0 = torch.randn(1, 16, 8, 8)
        for a, b in zip(pipe.control(j, K, z0), ref_hand(j, K, z0), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # One file without a controller, or a controller in both: one-line errors.
    save_file({f"pipe.dit.{k}": v for k, v in dit.items()}, tmp_path / "dit_only.safetensors")
    with pytest.raises(ValueError, match="no hand-controller weights in this file"):
        convert_upstream(tmp_path / "dit_only.safetensors", None, tmp_path / "x", base_path=base)
    save_file(hand, tmp_path / "hand.safetensors")
    with pytest.raises(ValueError, match="holds hand-controller weights .* pass only one"):
        convert_upstream(tmp_path / "step-1600.safetensors", tmp_path / "hand.safetensors", tmp_path / "y",
                         base_path=base)
