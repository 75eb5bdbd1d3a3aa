"""Active-cell evaluation of the control module's fusion (eq. 8): two causal temporal convolutions + LayerNorm.

The fusion convolutions have kernel (3, 1, 1): pointwise in space, causal in time, so they are a small MLP applied
to each cell's time series. A cell whose input is exactly zero in the whole causal receptive field of an output
frame (that frame and the 4 before it, the front replicate-padded) gets the same output vector everywhere: the
module's *empty-scene value* LayerNorm(SiLU(Σ_taps W₂ SiLU(b₁) + b₂)). So the convolutions are evaluated only
on the "active" (cell, frame) points, as gathered matrix products over a channels-last layout, and the constant
fills the rest; batch elements marked empty (no valid joint) get exactly zero.

Written as a custom autograd function because autograd of the gathered products would keep the gathered
(M, 3·80) inputs and all activations for the backward pass; here only the first layer's output table (M₁, 64) is
saved, the rest is recomputed per chunk in the backward pass (each chunk's small graph is differentiated with
``torch.autograd.grad``). Gradients equal those of the dense convolutions (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["causal_dilate", "empty_scene_value", "sparse_causal_fusion", "tap_matrix"]

_TAPS = 3


def tap_matrix(weight: torch.Tensor) -> torch.Tensor:
    """Conv3d weight (O, I, 3, 1, 1) → (3·I, O), rows ordered (tap, channel): taps t-2, t-1, t."""
    out_ch, in_ch = weight.shape[:2]
    return weight[..., 0, 0].permute(2, 1, 0).reshape(_TAPS * in_ch, out_ch)


def causal_dilate(active: torch.Tensor, taps: int = _TAPS) -> torch.Tensor:
    """active (B, T, h, w) → points whose causal window (frames t-taps+1 … t, clamped at 0) holds an active point."""
    out = active.clone()
    for k in range(1, taps):
        out[:, k:] |= active[:, :-k]
    return out


def empty_scene_value(w1, b1, w2, b2, norm_weight, norm_bias, eps: float) -> torch.Tensor:
    """(O,) output of the fusion at a point whose receptive field is all zero (differentiable in the weights)."""
    h1 = F.silu(b1)
    h2 = F.silu(w2.sum((2, 3, 4)) @ h1 + b2)
    return F.layer_norm(h2, (h2.shape[-1],), norm_weight, norm_bias, eps)


def _taps_of(points: torch.Tensor, frames: int, plane: int) -> torch.Tensor:
    """Flat indices (M, 3) of the frames t-2, t-1, t of points (M,) in a (B, T, h, w) grid, clamped at t = 0."""
    t = torch.div(points, plane, rounding_mode="floor") % frames
    back = torch.arange(_TAPS - 1, -1, -1, device=points.device)  # 2, 1, 0
    return points[:, None] - torch.minimum(back[None, :], t[:, None]) * plane


class _SparseFusion(torch.autograd.Function):
    """out (N, O) of the flat channels-last inputs xs (N, E), xm (N, C); see ``sparse_causal_fusion``."""

    @staticmethod
    def forward(ctx, xs, xm, w1, b1, w2, b2, nw, nb, const, idx1, taps1, idx2, taps2, fill, eps, chunk):
        n_points = xs.shape[0]
        hidden = b1.shape[0]
        table = xs.new_empty((idx1.shape[0] + 1, hidden))  # first-layer output at the active points, then SiLU(b1)
        table[-1] = F.silu(b1)
        for i in range(0, idx1.shape[0], chunk):
            src = taps1[i : i + chunk].reshape(-1)
            x = torch.cat([xs.index_select(0, src), xm.index_select(0, src)], 1).reshape(-1, w1.shape[0])
            table[i : i + src.shape[0] // _TAPS] = F.silu(torch.addmm(b1, x, w1))
        out = torch.where(fill[:, None], const, torch.zeros_like(const)).expand(n_points, -1).contiguous()
        for i in range(0, idx2.shape[0], chunk):
            x = table.index_select(0, taps2[i : i + chunk].reshape(-1)).reshape(-1, w2.shape[0])
            y = F.layer_norm(F.silu(torch.addmm(b2, x, w2)), (w2.shape[1],), nw, nb, eps)
            out.index_copy_(0, idx2[i : i + chunk], y)
        ctx.save_for_backward(xs, xm, w1, b1, w2, b2, nw, nb, table, idx1, taps1, idx2, taps2, fill)
        ctx.eps, ctx.chunk = eps, chunk
        return out

    @staticmethod
    def backward(ctx, grad):
        xs, xm, w1, b1, w2, b2, nw, nb, table, idx1, taps1, idx2, taps2, fill = ctx.saved_tensors
        eps, chunk = ctx.eps, ctx.chunk
        e_dim = xs.shape[1]
        params2 = [p.detach().requires_grad_() for p in (w2, b2, nw, nb)]
        g2 = [torch.zeros_like(p) for p in params2]
        g_table = torch.zeros_like(table)
        # The constant: every point not computed (and not in an empty element) received it.
        active_grad = grad.index_select(0, idx2).sum(0) if idx2.numel() else grad.new_zeros(grad.shape[1])
        g_const = (grad * fill[:, None].to(grad.dtype)).sum(0) - active_grad
        with torch.enable_grad():
            for i in range(0, idx2.shape[0], chunk):
                src = taps2[i : i + chunk].reshape(-1)
                x = table.index_select(0, src).reshape(-1, w2.shape[0]).requires_grad_()
                w, b, nwl, nbl = params2
                y = F.layer_norm(F.silu(torch.addmm(b, x, w)), (w.shape[1],), nwl, nbl, eps)
                gx, *gp = torch.autograd.grad(y, [x, *params2], grad.index_select(0, idx2[i : i + chunk]))
                for acc, g in zip(g2, gp):
                    acc += g
                g_table.index_add_(0, src, gx.reshape(-1, table.shape[1]))
            params1 = [p.detach().requires_grad_() for p in (w1, b1)]
            g1 = [torch.zeros_like(p) for p in params1]
            g_xs = torch.zeros_like(xs) if ctx.needs_input_grad[0] else None
            g_xm = torch.zeros_like(xm) if ctx.needs_input_grad[1] else None
            for i in range(0, idx1.shape[0], chunk):
                src = taps1[i : i + chunk].reshape(-1)
                x = torch.cat([xs.index_select(0, src), xm.index_select(0, src)], 1).reshape(-1, w1.shape[0])
                x.requires_grad_()
                w, b = params1
                h = F.silu(torch.addmm(b, x, w))
                gx, *gp = torch.autograd.grad(h, [x, *params1], g_table[i : i + h.shape[0]])
                for acc, g in zip(g1, gp):
                    acc += g
                gx = gx.reshape(-1, xs.shape[1] + xm.shape[1])
                if g_xs is not None:
                    g_xs.index_add_(0, src, gx[:, :e_dim])
                if g_xm is not None:
                    g_xm.index_add_(0, src, gx[:, e_dim:])
            # SiLU(b1) stood in for the first layer at every inactive point that a second-layer tap read.
            b = params1[1]
            (gb,) = torch.autograd.grad(F.silu(b), [b], g_table[-1])
            g1[1] += gb
        return (g_xs, g_xm, g1[0], g1[1], *g2, g_const) + (None,) * 8


def sparse_causal_fusion(
    structure: torch.Tensor,
    motion: torch.Tensor,
    conv1: torch.nn.Conv3d,
    conv2: torch.nn.Conv3d,
    norm: torch.nn.LayerNorm,
    active: torch.Tensor | None = None,
    empty: torch.Tensor | None = None,
    chunk: int = 16384,
) -> torch.Tensor:
    """Fusion [structure, motion] → causal conv1 → SiLU → causal conv2 → SiLU → LayerNorm, on active points only.

    structure (B, E, T', h, w), motion (B, C, T', h, w); channels-last memory (as the splat produces) avoids a
    copy. ``active`` (B, T', h, w) bool must cover every point where either input is non-zero (default: computed
    from the inputs); ``empty`` (B,) bool marks batch elements whose output is exactly zero. Returns
    (B, O, T', h, w), equal to the dense computation (front replicate padding of 2 frames per convolution).
    """
    b, e_dim, frames, h, w = structure.shape
    c = motion.shape[1]
    plane = h * w
    if active is None:
        active = (structure != 0).any(1) | (motion != 0).any(1)
    if empty is None:
        empty = torch.zeros(b, dtype=torch.bool, device=structure.device)
    active = active & ~empty[:, None, None, None]
    act1 = causal_dilate(active)  # first-layer outputs that differ from SiLU(b1)
    act2 = causal_dilate(act1)  # second-layer outputs that differ from the constant
    idx1 = act1.reshape(-1).nonzero().squeeze(1)
    idx2 = act2.reshape(-1).nonzero().squeeze(1)
    taps1 = _taps_of(idx1, frames, plane)
    pos1 = torch.full((act1.numel(),), idx1.shape[0], dtype=torch.long, device=idx1.device)
    pos1[idx1] = torch.arange(idx1.shape[0], device=idx1.device)
    taps2 = pos1[_taps_of(idx2, frames, plane)]
    fill = (~empty).repeat_interleave(frames * plane)
    xs = structure.permute(0, 2, 3, 4, 1).reshape(-1, e_dim)
    xm = motion.to(structure.dtype).permute(0, 2, 3, 4, 1).reshape(-1, c)
    args = (conv1.weight, conv1.bias, conv2.weight, conv2.bias, norm.weight, norm.bias)
    const = empty_scene_value(*args, norm.eps)
    out = _SparseFusion.apply(
        xs, xm, tap_matrix(conv1.weight), conv1.bias, tap_matrix(conv2.weight), conv2.bias, norm.weight,
        norm.bias, const, idx1, taps1, idx2, taps2, fill, norm.eps, chunk,
    )
    return out.reshape(b, frames, h, w, -1).permute(0, 4, 1, 2, 3)
