"""Memory and compute estimates for LoRA training of the hand-controlled Wan I2V transformer (docs/scaling.md).

Pure functions of a diffusers ``WanTransformer3DModel`` config (a mapping with its constructor keys); the parameter
count is exact for diffusers' implementation (tests compare it with a built model), the activation and FLOP
figures are estimates whose assumptions are written next to each formula.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["WAN_I2V_14B", "transformer_params", "lora_params", "sequence_length", "activation_bytes",
           "train_flops", "estimate"]

# diffusers' config of Wan 2.1 I2V 14B (480p), as in diffusers' conversion script; in_channels widened to 52.
WAN_I2V_14B = dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=52,
                   out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
                   qk_norm="rms_norm_across_heads", image_dim=1280, added_kv_proj_dim=5120)
GIB = 1024**3


def _linear(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


def transformer_params(cfg: Mapping) -> dict[str, int]:
    """Exact parameter count per part of diffusers' ``WanTransformer3DModel`` built from ``cfg``."""
    D = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    F, L = cfg["ffn_dim"], cfg["num_layers"]
    p = math.prod(cfg.get("patch_size", (1, 2, 2)))
    qk = 2 * D if cfg.get("qk_norm", "rms_norm_across_heads") else 0  # RMSNorm weights of q and k
    attn = 4 * _linear(D, D) + qk
    cross = attn
    if cfg.get("added_kv_proj_dim"):  # image keys/values of I2V (+ RMSNorm of the image keys)
        cross += 2 * _linear(cfg["added_kv_proj_dim"], D) + (D if cfg.get("qk_norm") else 0)
    block = (attn + cross + _linear(D, F) + _linear(F, D) + 6 * D  # FFN + scale_shift_table
             + (2 * D if cfg.get("cross_attn_norm", True) else 0))  # affine LayerNorm before cross-attention
    cond = _linear(cfg["freq_dim"], D) + _linear(D, D) + _linear(D, 6 * D) + _linear(cfg["text_dim"], D)
    cond += _linear(D, D)
    if cfg.get("image_dim"):
        I = cfg["image_dim"]
        cond += 2 * I + _linear(I, I) + _linear(I, D) + 2 * D  # LayerNorm, FFN(mult 1), LayerNorm
    parts = {"patch_embedding": _linear(cfg["in_channels"] * p, D), "condition_embedder": cond,
             "blocks": L * block, "head": _linear(D, cfg["out_channels"] * p) + 2 * D}
    parts["total"] = sum(parts.values())
    return parts


def lora_params(cfg: Mapping, rank: int) -> int:
    """LoRA parameters on every block's attn1/attn2 q, k, v, o (D → D) and both FFN linears: r·(in + out) each."""
    D, F = cfg["num_attention_heads"] * cfg["attention_head_dim"], cfg["ffn_dim"]
    return cfg["num_layers"] * rank * (8 * 2 * D + 2 * (D + F))


def sequence_length(num_frames: int, height: int, width: int, patch=(1, 2, 2), vae_t: int = 4,
                    vae_s: int = 8) -> tuple[int, int, int, int]:
    """(T', h, w, tokens): latent frames 1 + (T−1)/4, latent grid /8, then the (1, 2, 2) patches."""
    t = 1 + (num_frames - 1) // vae_t
    h, w = height // vae_s // patch[1], width // vae_s // patch[2]
    return t // patch[0], h, w, (t // patch[0]) * h * w


def activation_bytes(cfg: Mapping, tokens: int, checkpointing: bool, bytes_per: int = 2, rank: int = 64) -> int:
    """Activations kept for the backward pass, one sample.

    Without checkpointing, per block and token: self-attention input, q, k, v, output and out-projection input
    (6D), cross-attention input, q, output (3D), modulation / residual intermediates (4D), FFN input (D) and
    the hidden layer before and after GELU (2F), LoRA down-projections (10r) — (14D + 2F + 10r) values. Flash /
    memory-efficient attention keeps O(tokens) state (the tokens² score matrix is never stored). With
    diffusers' gradient checkpointing only each block's input (D per token) is kept, plus one block's full set
    while it is recomputed.
    """
    D, F, L = cfg["num_attention_heads"] * cfg["attention_head_dim"], cfg["ffn_dim"], cfg["num_layers"]
    per_block = tokens * (14 * D + 2 * F + 10 * rank) * bytes_per
    if checkpointing:
        return L * tokens * D * bytes_per + per_block
    return L * per_block


def train_flops(cfg: Mapping, tokens: int, context: int = 512 + 257, checkpointing: bool = True) -> float:
    """FLOPs of one training sample: forward F, backward ≈ F (gradients w.r.t. activations through the frozen
    weights; LoRA weight gradients are negligible), + F again when checkpointing recomputes the blocks.

    Forward per block: 2·tokens·(6D² + 2DF) for the token-side linears (attn1 q, k, v, o; attn2 q, o; FFN),
    4·tokens²·D self-attention (QKᵀ and AV), 4·tokens·context·D cross-attention.
    """
    D, F, L = cfg["num_attention_heads"] * cfg["attention_head_dim"], cfg["ffn_dim"], cfg["num_layers"]
    fwd = L * (2 * tokens * (6 * D * D + 2 * D * F) + 4 * tokens * tokens * D + 4 * tokens * context * D)
    return fwd * (3 if checkpointing else 2)


def estimate(cfg: Mapping = WAN_I2V_14B, rank: int = 64, num_frames: int = 81, height: int = 480,
             width: int = 832, weight_bytes: int = 2, act_bytes: int = 2, control_params: int = 22_000,
             tflops: float = 400.0, processes: int = 8) -> dict:
    """Per-GPU memory (GiB) by component and time per sample for LoRA training at one sample per GPU.

    Trainable tensors (LoRA, patch embedding, control module) are float32 with float32 gradients and two AdamW
    moments: 16 bytes per parameter. ``tflops`` is the sustained throughput assumed (~40 % of an H100's dense
    bf16 peak). ``total_checkpointed_gib`` is DDP (a full copy per GPU); ``fsdp_total_checkpointed_gib`` shards
    weights and trainable state over ``processes`` GPUs and adds what is gathered at a time: the transformer's
    own (non-block) weights for the whole step and two blocks (the one running and the one prefetched).
    """
    params = transformer_params(cfg)
    lora = lora_params(cfg, rank)
    trainable = lora + params["patch_embedding"] + control_params
    t, h, w, tokens = sequence_length(num_frames, height, width, tuple(cfg.get("patch_size", (1, 2, 2))))
    out = {
        "latent_grid": (t, h, w), "tokens": tokens, "transformer_params": params["total"], "lora_params": lora,
        "trainable_params": trainable,
        "weights_gib": params["total"] * weight_bytes / GIB,
        "trainable_state_gib": trainable * 16 / GIB,
        "activations_gib": activation_bytes(cfg, tokens, False, act_bytes, rank) / GIB,
        "activations_checkpointed_gib": activation_bytes(cfg, tokens, True, act_bytes, rank) / GIB,
        "step_tflop": train_flops(cfg, tokens, checkpointing=True) / 1e12,
    }
    out["seconds_per_sample"] = out["step_tflop"] / tflops
    out["total_checkpointed_gib"] = (out["weights_gib"] + out["trainable_state_gib"]
                                     + out["activations_checkpointed_gib"])
    gathered = (params["total"] - params["blocks"] + 2 * params["blocks"] / cfg["num_layers"]) * weight_bytes / GIB
    out["fsdp_gathered_gib"] = gathered
    out["fsdp_total_checkpointed_gib"] = ((out["weights_gib"] + out["trainable_state_gib"]) / processes + gathered
                                          + out["activations_checkpointed_gib"])
    return out
