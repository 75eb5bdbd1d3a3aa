"""The hand-region term of the stage-2 flow-matching loss.

The hand covers a few percent of a 128² frame, so a plain MSE over the latents spends the video model's capacity on
the background (the VAE's hand loss, ``worldmodel/training/vae.py``, was added for the same reason). With
``TrainConfig.hand_weight`` the squared error on the latent cells that see the hand is added again, averaged over
those cells, so the hand counts about as much as the whole rest of the frame does at weight 1.
"""

from __future__ import annotations

import numpy as np
import torch


def latent_hand_mask(pixel_mask: torch.Tensor, latent_size: tuple[int, int, int]) -> torch.Tensor:
    """(B, T, H, W) bool pixel hand regions → (B, T', h, w) bool on a causal video VAE's latent grid.

    Latent frame 0 encodes pixel frame 0 alone; latent frame k ≥ 1 encodes frames s(k−1)+1 … sk, with the temporal
    stride s = (T − 1) / (T' − 1). A latent cell is hand when any pixel it encodes is.
    """
    B, T, H, W = pixel_mask.shape
    t, h, w = latent_size
    if H % h or W % w or (t > 1 and (T - 1) % (t - 1)) or (t == 1 and T != 1):
        raise ValueError(f"pixel mask {tuple(pixel_mask.shape[1:])} does not tile the latent grid {latent_size}")
    first = pixel_mask[:, :1]
    if t > 1:
        s = (T - 1) // (t - 1)
        rest = pixel_mask[:, 1:].reshape(B, t - 1, s, H, W).any(2)
        frames = torch.cat([first, rest], 1)
    else:
        frames = first
    pooled = torch.nn.functional.max_pool2d(frames.float().flatten(0, 1)[:, None], (H // h, W // w))
    return pooled[:, 0].reshape(B, t, h, w) > 0


def hand_pixel_masks(joints: torch.Tensor, valid: torch.Tensor, K: torch.Tensor, size: tuple[int, int],
                     radius: float) -> torch.Tensor:
    """(B, T, H, W) bool: pixels within ``radius`` of each sample's projected skeleton, as ``evaluate`` scores the
    hand region (joints (B, T, 42, 3) in the camera frame, valid (B, T, 42), K (B, 3, 3) in the pixels of ``size``)."""
    from embodiments.sparse import SparseJoints
    from worldmodel.evaluation.report import hand_region

    return torch.from_numpy(np.stack([
        hand_region(SparseJoints(j.numpy(), v.numpy(), K=k.numpy()), size, radius)
        for j, v, k in zip(joints.detach().cpu(), valid.cpu(), K.detach().cpu(), strict=True)]))


def hand_term(sq_err: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean of ``sq_err`` (B, C, T', h, w) over each sample's hand cells ``mask`` (B, T', h, w); 0 where a sample
    has none."""
    m = mask[:, None].to(sq_err.device, sq_err.dtype)
    cells = m.flatten(1).sum(1) * sq_err.shape[1]
    return (sq_err * m).flatten(1).sum(1) / cells.clamp(min=1.0)


__all__ = ["latent_hand_mask", "hand_pixel_masks", "hand_term"]
