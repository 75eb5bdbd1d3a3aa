"""Shared tiny fixtures for the Wan integration tests (tiny transformer, tiny control module, synthetic clips)."""

from __future__ import annotations

import numpy as np
import torch

from embodiments.layout import hand_slots
from embodiments.sparse import SparseJoints

# 2 blocks, inner width 32: fast; for the overfitting test see OVERFIT_TINY.
SMALL_TINY = dict(num_layers=2, num_attention_heads=2, attention_head_dim=16, ffn_dim=64, text_dim=32,
                  clip_hidden=32)
# Inner width 192 ≫ 64 outputs per token, so the frozen proj_out does not cap the fit (see TinyConfig).
OVERFIT_TINY = dict(num_layers=2, num_attention_heads=4, attention_head_dim=48, ffn_dim=128, text_dim=32,
                    clip_hidden=32)
CONTROL = dict(embed_dim=16)
H = W = 64
K = np.array([[60.0, 0.0, 32.0], [0.0, 60.0, 32.0], [0.0, 0.0, 1.0]])


def make_joints(T: int = 5, seed: int = 0, shift_x: float = 0.05, right_only: bool = False) -> SparseJoints:
    """A hand-sized cloud of 42 joints ~0.5 m in front of the camera, drifting along x."""
    rng = np.random.default_rng(seed)
    base = rng.normal([0.0, 0.0, 0.5], 0.04, (42, 3))
    pos = base[None] + np.linspace(0.0, shift_x, T)[:, None, None] * np.array([1.0, 0.0, 0.0])
    valid = np.ones((T, 42), bool)
    if right_only:
        valid[:, hand_slots("left").start:hand_slots("left").stop] = False
    return SparseJoints(pos, valid, K=K, frame="camera", fps=8.0)


def make_frames(T: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((T, H, W, 3)) * 255).astype(np.uint8)


def write_clips(root, n: int, T: int = 5, prompt: str = "grab") -> None:
    """Write ``n`` synthetic clips ``root/c{i}.h5`` (T frames, seed i, prompt ``"{prompt} {i}"``)."""
    from embodiments.clip import write_clip

    for i in range(n):
        write_clip(root / f"c{i}.h5", make_frames(T, seed=i), make_joints(T, seed=i), prompt=f"{prompt} {i}")


def make_control():
    from worldmodel.control.module import HandControlModule

    torch.manual_seed(0)
    return HandControlModule(**CONTROL)


def trained_tiny_pipeline(components=None, rank: int = 4, alpha: float | None = None):
    """A tiny pipeline whose control pathway is "trained": widened patch embedding with random control input
    channels, LoRA (``rank``, ``alpha``) with random non-zero B, the tiny control module."""
    from worldmodel.wan.adapter import add_lora, ensure_widened
    from worldmodel.wan.pipeline import HandControlPipeline
    from worldmodel.wan.presets import build_tiny

    c = build_tiny(**SMALL_TINY) if components is None else components
    ensure_widened(c.transformer)
    add_lora(c.transformer, rank=rank, alpha=alpha)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        pe = c.transformer.patch_embedding.weight
        pe[:, 36:] = torch.randn(pe[:, 36:].shape, generator=g)
        for n, p in c.transformer.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    pipe = HandControlPipeline.from_components(c, make_control())
    pipe.set_progress_bar_config(disable=True)
    return pipe
