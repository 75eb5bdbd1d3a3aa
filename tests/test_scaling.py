"""Scaling estimator: exact parameter counts against built models, token count, estimate invariants."""

from __future__ import annotations

import pytest
import torch
from _wm_helpers import SMALL_TINY

from worldmodel.wan.adapter import add_lora, ensure_widened
from worldmodel.wan.presets import build_tiny
from worldmodel.wan.scaling import (
    WAN_I2V_14B,
    activation_bytes,
    estimate,
    lora_params,
    sequence_length,
    train_flops,
    transformer_params,
)

torch.set_num_threads(1)


@pytest.mark.parametrize("overrides", [SMALL_TINY, {**SMALL_TINY, "image_encoder": False, "num_layers": 3}])
def test_parameter_counts_are_exact_for_the_tiny_model(overrides):
    t = build_tiny(**overrides).transformer
    ensure_widened(t)
    cfg = dict(t.config)
    parts = transformer_params(cfg)
    assert parts["total"] == sum(p.numel() for p in t.parameters())
    assert parts["patch_embedding"] == sum(p.numel() for p in t.patch_embedding.parameters())
    assert parts["blocks"] == sum(p.numel() for p in t.blocks.parameters())
    add_lora(t, rank=4)
    assert lora_params(cfg, 4) == sum(p.numel() for n, p in t.named_parameters() if "lora_" in n)


def test_14b_count_matches_diffusers_on_the_meta_device():
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        big = WanTransformer3DModel(**WAN_I2V_14B)
    assert transformer_params(WAN_I2V_14B)["total"] == sum(p.numel() for p in big.parameters())


def test_sequence_and_estimate():
    assert sequence_length(81, 480, 832) == (21, 30, 52, 21 * 30 * 52)
    e = estimate()
    assert e["tokens"] == 32760 and e["lora_params"] == 40 * 64 * (16 * 5120 + 2 * (5120 + 13824))
    assert e["activations_checkpointed_gib"] < e["activations_gib"] / 10
    # FSDP over P GPUs: 1/P of weights and trainable state, plus the gathered non-block weights and two blocks.
    parts = transformer_params(WAN_I2V_14B)
    nonblock, block = parts["patch_embedding"] + parts["condition_embedder"] + parts["head"], parts["blocks"] / 40
    assert e["fsdp_gathered_gib"] * 1024**3 == pytest.approx((nonblock + 2 * block) * 2)
    one = estimate(processes=1)
    assert one["fsdp_total_checkpointed_gib"] - one["total_checkpointed_gib"] == pytest.approx(
        one["fsdp_gathered_gib"])
    assert e["fsdp_total_checkpointed_gib"] == pytest.approx(
        (e["weights_gib"] + e["trainable_state_gib"]) / 8 + e["fsdp_gathered_gib"] + e["activations_checkpointed_gib"])
    tiny = dict(build_tiny(**SMALL_TINY).transformer.config)
    a1, a2 = activation_bytes(tiny, 100, False), activation_bytes(tiny, 200, False)
    assert a2 == 2 * a1  # linear in tokens (no stored score matrix)
    # FLOPs: the self-attention term is quadratic in tokens, the rest linear.
    f = [train_flops(tiny, n, context=0) for n in (10, 20, 30)]
    assert f[2] - 2 * f[1] + f[0] == pytest.approx(2 * 3 * tiny["num_layers"] * 4 * 100 * 32)
