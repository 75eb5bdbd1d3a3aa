"""``HashPromptEmbedder``: the text side of the tiny presets, a weight-free stand-in for UMT5.

It is a diffusers ``ModelMixin`` + ``ConfigMixin`` with no weights, so a pipeline folder names it in
``model_index.json`` (``["worldmodel.wan.prompt", "HashPromptEmbedder"]``) and diffusers' loader builds it from its
``config.json`` like any other component.
"""

from __future__ import annotations

import os
import zlib

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

TEXT_SEQ_LEN = 512


def pad_prompt_embeds(pe: torch.Tensor, length: int = TEXT_SEQ_LEN) -> torch.Tensor:
    """Zero-pad (or truncate) (..., L, D) prompt embeddings to ``length`` tokens, as Wan pads UMT5 outputs.

    Wan's attention splits image from text tokens assuming exactly 512 text tokens, so shorter stored
    embeddings must be padded.
    """
    n = pe.shape[-2]
    if n >= length:
        return pe[..., :length, :]
    pad = pe.new_zeros(*pe.shape[:-2], length - n, pe.shape[-1])
    return torch.cat([pe, pad], dim=-2)


class HashPromptEmbedder(ModelMixin, ConfigMixin):
    """Text → (B, 512, dim) embeddings without a text encoder: one fixed random vector per word, zero padding.

    Deterministic across processes and runs (CRC32 of the word seeds a CPU generator), so it can stand in for
    UMT5 in the tiny preset (Wan's attention assumes 512 text tokens when image tokens are present).
    """

    @register_to_config
    def __init__(self, dim: int, seq_len: int = TEXT_SEQ_LEN, max_words: int = 64):
        super().__init__()
        if dim <= 0 or seq_len <= 0 or not 0 < max_words <= seq_len:
            raise ValueError(f"HashPromptEmbedder needs dim > 0 and 0 < max_words <= seq_len, got dim={dim}, "
                             f"seq_len={seq_len}, max_words={max_words}")
        self.dim, self.seq_len, self.max_words = dim, seq_len, max_words
        # No weights; an empty buffer gives the module a device and dtype for diffusers' pipeline bookkeeping.
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)

    def forward(self, prompts: str | list[str], device=None, dtype=torch.float32) -> torch.Tensor:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        out = torch.zeros(len(prompts), self.seq_len, self.dim)
        for b, text in enumerate(prompts):
            for i, word in enumerate(text.lower().split()[: self.max_words]):
                g = torch.Generator().manual_seed(zlib.crc32(word.encode("utf-8")))
                out[b, i] = torch.randn(self.dim, generator=g)
        return out.to(device=device, dtype=dtype)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **kwargs) -> HashPromptEmbedder:
        """Build from ``config.json`` (there are no weights; diffusers' loading options are accepted and unused)."""
        cfg = cls.load_config(directory)
        if cfg.get("type", "hash") != "hash":  # folders written before this was a ConfigMixin carry "type": "hash"
            raise ValueError(f"{directory}: unknown prompt embedder type {cfg.get('type')!r}")
        return cls(dim=int(cfg["dim"]), seq_len=int(cfg.get("seq_len", TEXT_SEQ_LEN)),
                   max_words=int(cfg.get("max_words", 64)))
