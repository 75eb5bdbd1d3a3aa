"""Baseline control signals for ablations (pure functions, no weights).

``copy_point_tracks`` is the Wan-Move style baseline: 2D point tracks carried in the latent by copying the reference
latent's feature under each joint's frame-0 position to its position in later frames — no depth, no occlusion.
"""

from __future__ import annotations

import torch

__all__ = ["copy_point_tracks"]


def copy_point_tracks(
    z0: torch.Tensor, u: torch.Tensor, v: torch.Tensor, valid: torch.Tensor, temporal_stride: int = 4
) -> torch.Tensor:
    """Motion features (B, C, T', h, w) from 2D tracks copied in the latent.

    z0 (B, C, h, w) reference latent; u, v (B, T, N) joint positions in latent cells (cell centres at integers);
    valid (B, T, N) bool. Latent frame k takes video frame min(k·stride, T−1). Each track whose frame-0 and frame-k
    cells (nearest cell) lie inside the grid writes z0 at its frame-0 cell into its frame-k cell; tracks landing on
    the same cell are averaged; cells without a track are zero. T' = 1 + (T − 1) // stride.
    """
    if z0.ndim != 4:
        raise ValueError(f"z0 must be (B, C, h, w), got {tuple(z0.shape)}")
    if u.shape != v.shape or u.shape != valid.shape or u.ndim != 3 or u.shape[0] != z0.shape[0]:
        raise ValueError(f"u, v, valid must share shape (B={z0.shape[0]}, T, N), got {tuple(u.shape)}, "
                         f"{tuple(v.shape)}, {tuple(valid.shape)}")
    if temporal_stride < 1:
        raise ValueError(f"temporal_stride must be >= 1, got {temporal_stride}")
    b, c, h, w = z0.shape
    t = u.shape[1]
    frames = torch.clamp(torch.arange(0, t, temporal_stride, device=u.device), max=t - 1)  # (T',)
    tp = frames.numel()
    ui = torch.nan_to_num(u.detach(), nan=-1e6).round().long()
    vi = torch.nan_to_num(v.detach(), nan=-1e6).round().long()
    inside = valid.bool() & (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)  # (B, T, N)
    src = (vi[:, 0] * w + ui[:, 0]).clamp(0, h * w - 1)  # (B, N)
    dst = (vi[:, frames] * w + ui[:, frames]).clamp(0, h * w - 1)  # (B, T', N)
    ok = (inside[:, frames] & inside[:, :1]).to(z0.dtype)  # (B, T', N)
    feats = torch.gather(z0.flatten(2), 2, src[:, None].expand(b, c, -1))  # (B, C, N)
    flat_dst = (dst + torch.arange(tp, device=u.device)[None, :, None] * h * w).flatten(1)  # (B, T'·N)
    total = z0.new_zeros(b, c, tp * h * w)
    count = z0.new_zeros(b, 1, tp * h * w)
    weighted = (feats[:, :, None] * ok[:, None]).flatten(2)  # (B, C, T'·N)
    total.scatter_add_(2, flat_dst[:, None].expand(b, c, -1), weighted)
    count.scatter_add_(2, flat_dst[:, None], ok.flatten(1)[:, None])
    out = total / count.clamp_min(1.0)
    return out.view(b, c, tp, h, w)
