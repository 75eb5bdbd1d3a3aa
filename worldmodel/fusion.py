"""Splat, propagation and fusion of the control module evaluated on the active cells only (the module's forward).

The fusion convolutions (eq. 8) have kernel (3, 1, 1): pointwise in space, causal in time, a small MLP applied
to each cell's time series. A cell whose input (structure map and motion features) is exactly zero in the causal
receptive field of an output frame (that frame and the 4 before it; the front is replicate-padded) gets one
constant output vector, the module's *empty-scene value* LayerNorm(SiLU(Σ_taps W₂ SiLU(b₁) + b₂)). The input
is non-zero only where some valid joint's heatmap window reaches (opacity > 0), so the work is organised in
blocks of active columns (cells) over the frame range where their output can differ from the constant: each
block's splatted values are formed on the spot from the per-joint rows (Σ_k H_k · row_k with the separable
heatmap H = g^y · g^x), then propagation (eq. 4–5) and the two convolutions (matrix products on time-shifted
views, channels last) run on them, and the results are scattered into dense outputs pre-filled with the constant
(exactly zero for batch elements without any valid joint).

A custom autograd function, so that no grid-sized intermediate is kept: only the active points' splatted rows
and first-layer pre-activations are saved; the backward pass recomputes the rest per block (the small second
layer through ``torch.autograd.grad``). Values and gradients equal the dense computation (tested in float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import geometry as geo

__all__ = ["empty_scene_value", "propagate_and_fuse", "tap_weights"]

_TAPS = 3


def tap_weights(weight: torch.Tensor) -> torch.Tensor:
    """Conv3d weight (O, I, 3, 1, 1) → (3, I, O): the matrices of the taps t-2, t-1, t."""
    return weight[..., 0, 0].permute(2, 1, 0)


def empty_scene_value(w1, b1, w2, b2, norm_weight, norm_bias, eps: float) -> torch.Tensor:
    """(O,) output of the fusion at a point whose receptive field is all zero (differentiable in the weights)."""
    h1 = F.silu(b1)
    h2 = F.silu(w2.sum((2, 3, 4)) @ h1 + b2)
    return F.layer_norm(h2, (h2.shape[-1],), norm_weight, norm_bias, eps)


def _causal_taps(parts: list[tuple[torch.Tensor, torch.Tensor]], bias: torch.Tensor, pad) -> torch.Tensor:
    """Causal temporal conv → (T, M, O) of inputs split in channel groups [(x (T, M, I_p), taps (3, I_p, O))].

    out[t] = b + Σ_k x[t-2+k] @ W_k, where the frames before 0 are frame 0 (``pad=None``: replicate padding) or
    the per-group constant rows ``pad`` [(I_p,) or None for zero]. Matrix products on time-shifted views of the
    inputs, which may be strided (no padding, concatenation or im2col copies).
    """
    frames, m = parts[0][0].shape[:2]
    out = None
    for x, w in parts:
        x2 = x.reshape(frames * m, -1)
        out = torch.addmm(bias, x2, w[2]) if out is None else out.addmm_(x2, w[2])
    out = out.view(frames, m, -1)
    for k in range(_TAPS - 1):
        s = _TAPS - 1 - k  # this tap looks s frames back
        for p, (x, w) in enumerate(parts):
            if frames > s:
                out[s:].view(-1, out.shape[-1]).addmm_(x[: frames - s].reshape(-1, x.shape[-1]), w[k])
            if pad is None:
                out[: min(s, frames)] += x[0] @ w[k]
            elif pad[p] is not None:
                out[: min(s, frames)] += pad[p] @ w[k]
    return out


def _causal_taps_backward(grad: torch.Tensor, parts: list[tuple[torch.Tensor, torch.Tensor]], pad):
    """Gradients ([d x_p], [d W_p (3, I_p, O)], d bias (O,), [d pad_p or None]) of ``_causal_taps``."""
    frames, m, o = grad.shape
    g2 = grad.reshape(-1, o)
    head = [grad[: min(s, frames)].sum(0) for s in range(_TAPS)]  # (M, O): grads of the frames reading the pad
    g_xs, g_ws, g_pads = [], [], []
    for p, (x, w) in enumerate(parts):
        g_x = (g2 @ w[2].T).view(frames, m, -1)
        g_w = [None, None, x.reshape(frames * m, -1).T @ g2]
        g_pad = None
        for k in range(_TAPS - 1):
            s = _TAPS - 1 - k
            if pad is None:
                g_w[k] = x[0].T @ head[s]
                g_x[0] += head[s] @ w[k].T
            else:
                g_w[k] = torch.zeros_like(w[k])
                if pad[p] is not None:
                    g_w[k] += torch.outer(pad[p], head[s].sum(0))
                    g = w[k] @ head[s].sum(0)
                    g_pad = g if g_pad is None else g_pad + g
            if frames > s:
                g_x[: frames - s].view(-1, g_x.shape[-1]).addmm_(grad[s:].reshape(-1, o), w[k].T)
                g_w[k] += x[: frames - s].reshape(-1, x.shape[-1]).T @ grad[s:].reshape(-1, o)
        g_xs.append(g_x)
        g_ws.append(torch.stack(g_w))
        g_pads.append(g_pad)
    return g_xs, g_ws, g2.sum(0), g_pads


def _second_layer(a1: torch.Tensor, w2, b2, nw, nb, eps, h0):
    """SiLU(a1) (T, M, H) → causal conv → SiLU → LayerNorm → (T, M, O); h0 (H,) the first layer's output before
    the block (None: the block starts at frame 0, replicate padding)."""
    y = F.silu(_causal_taps([(F.silu(a1), w2)], b2, None if h0 is None else [h0]))
    return F.layer_norm(y, (y.shape[-1],), nw, nb, eps)


def _motion(g: torch.Tensor, ff: torch.Tensor, fs: torch.Tensor, e_dim: int, c: int, eps: float):
    """Motion features from splatted rows g (T, M, E+C+2) and per-frame floors ff (T, 1, C), fs (T, 1, 1).

    Returns (motion (T, M, C), numerator, safe denominator, whether the raw denominator was positive); see
    ``geometry.propagate`` for the formula.
    """
    num = g[..., e_dim : e_dim + c] + eps * ff
    den = g[..., e_dim + c : e_dim + c + 1] + eps * fs
    pos = den > 0
    den = torch.where(pos, den, torch.ones_like(den))
    return g[..., -1:] * num / den, num, den, pos


class _PropagateFuse(torch.autograd.Function):
    """(control (N, O), motion (N, C)) of the flat (B·T'·h·w) grid from per-joint rows; see ``propagate_and_fuse``.

    Work is organised in blocks (element b, columns (M,), frames t0 … t1). A block's splatted rows
    (T_b, M, E+C+2) are formed on the spot, Σ_k H_k(cell) vals_k with H = gy · gx gathered at the block's
    cells, then propagation and the two convolutions run on them and the results are scattered into the outputs.
    Saved for the backward pass: per block its rows and the first layer's pre-activations (active points only).
    """

    @staticmethod
    def forward(ctx, vals, gy, gx, ff, fs, w1, b1, w2, b2, nw, nb, const, blocks, empty, shape, eps, floor):
        bsz, frames, h, w = shape
        plane, width, c = h * w, vals.shape[-1], ff.shape[-1]
        e_dim = width - c - 2
        control = torch.where(empty[:, None], torch.zeros_like(const), const).repeat_interleave(frames * plane, 0)
        motion = vals.new_zeros((bsz * frames * plane, c))
        pre = []  # per block the splatted rows and the first-layer pre-activations, kept for the backward pass
        gyt, gxt = _cell_major(gy), _cell_major(gx)
        for b, cols, t0, t1 in blocks:
            sl = slice(b * frames + t0, b * frames + t1)
            hy, hx = _factors_at(gyt, gxt, cols, sl, h, w)
            g = torch.bmm(hy * hx, vals[sl])  # (T_b, M, E+C+2)
            mot = _motion(g, ff[sl, None], fs[sl, None], e_dim, c, floor)[0]
            # A block starting after frame 0 is preceded by zero input, so by SiLU(b1) in the first layer.
            pad1, h0 = (None, None) if t0 == 0 else ([None, None], F.silu(b1))
            a1 = _causal_taps([(g[..., :e_dim], w1[:, :e_dim]), (mot, w1[:, e_dim:])], b1, pad1)
            y = _second_layer(a1, w2, b2, nw, nb, eps, h0)
            rows = _rows(cols, b, t0, t1, frames, plane)
            control.index_copy_(0, rows, y.reshape(-1, y.shape[-1]))
            motion.index_copy_(0, rows, mot.reshape(-1, c))
            pre += [g, a1]
        ctx.save_for_backward(vals, gy, gx, ff, fs, w1, b1, w2, b2, nw, nb, const, empty, *pre)
        ctx.eps, ctx.floor, ctx.shape, ctx.blocks = eps, floor, shape, blocks
        return control, motion

    @staticmethod
    def backward(ctx, g_control, g_motion):
        vals, gy, gx, ff, fs, w1, b1, w2, b2, nw, nb, const, empty, *pre = ctx.saved_tensors
        bsz, frames, h, w = ctx.shape
        plane, width, c, floor = h * w, vals.shape[-1], ff.shape[-1], ctx.floor
        e_dim = width - c - 2
        need_vals, need_y, need_x = ctx.needs_input_grad[:3]
        g_vals = torch.zeros_like(vals)
        gyt, gxt = _cell_major(gy), _cell_major(gx)
        g_gy = torch.zeros_like(gyt) if need_y else None  # cell-major, as gyt
        g_gx = torch.zeros_like(gxt) if need_x else None
        g_ff, g_fs = torch.zeros_like(ff), torch.zeros_like(fs)
        g_w1, g_b1 = torch.zeros_like(w1), torch.zeros_like(b1)
        params2 = [p.detach().requires_grad_() for p in (w2, b2, nw, nb)]
        g2 = [torch.zeros_like(p) for p in params2]
        if g_control is None:
            g_control = vals.new_zeros((bsz * frames * plane, w2.shape[-1]))
        # The constant went to every point of a non-empty element outside the computed blocks.
        g_const = sum(
            (g_control[i * frames * plane : (i + 1) * frames * plane].sum(0) for i in range(bsz) if not empty[i]),
            torch.zeros_like(const),
        )
        for (b, cols, t0, t1), g, a1 in zip(ctx.blocks, pre[0::2], pre[1::2], strict=True):
            rows = _rows(cols, b, t0, t1, frames, plane)
            sl = slice(b * frames + t0, b * frames + t1)
            g_out = g_control.index_select(0, rows).reshape(t1 - t0, -1, g_control.shape[-1])
            g_const -= g_out.sum((0, 1))
            a1 = a1.detach().requires_grad_()
            with torch.enable_grad():
                b1l = b1.detach().requires_grad_()
                h0 = None if t0 == 0 else F.silu(b1l)
                y = _second_layer(a1, *params2, ctx.eps, h0)
                inputs = [a1, *params2] + ([] if t0 == 0 else [b1l])
                g_a1, *gp = torch.autograd.grad(y, inputs, g_out)
            if t0:
                g_b1 += gp.pop()
            for acc, gpar in zip(g2, gp, strict=True):
                acc += gpar
            hy, hx = _factors_at(gyt, gxt, cols, sl, h, w)
            heat = hy * hx  # (T_b, M, k)
            mot, num, den, pos = _motion(g, ff[sl, None], fs[sl, None], e_dim, c, floor)
            parts = [(g[..., :e_dim], w1[:, :e_dim]), (mot, w1[:, e_dim:])]
            (g_s, g_mot), g_w, g_b, _ = _causal_taps_backward(g_a1, parts, None if t0 == 0 else [None, None])
            g_w1 += torch.cat(g_w, 1)
            g_b1 += g_b
            if g_motion is not None:
                g_mot = g_mot + g_motion.index_select(0, rows).reshape(g_mot.shape)
            # motion = O · num / den, num = Σ H e f + floor·ff, den = Σ H e + floor·fs (1 where not positive)
            q = g_mot * g[..., -1:] / den  # ∂/∂num
            g_den = torch.where(pos, -(q * num).sum(-1, keepdim=True) / den, torch.zeros_like(den))
            g_o = (g_mot * num).sum(-1, keepdim=True) / den
            g_ff[sl] += floor * q.sum(1)
            g_fs[sl] += floor * g_den.sum(1)
            g_rows = torch.cat([g_s, q, g_den, g_o], -1)  # (T_b, M, E+C+2)
            if need_vals:
                g_vals[sl] += torch.bmm(heat.transpose(1, 2), g_rows)
            if need_y or need_x:
                g_heat = torch.bmm(g_rows, vals[sl].transpose(1, 2))  # (T_b, M, k)
                ys, xs = _flat_cells(cols, sl, h, w)
                if need_y:
                    g_gy.view(-1, gy.shape[1]).index_add_(0, ys, (g_heat * hx).reshape(-1, gy.shape[1]))
                if need_x:
                    g_gx.view(-1, gx.shape[1]).index_add_(0, xs, (g_heat * hy).reshape(-1, gx.shape[1]))
        g_gy = g_gy.transpose(1, 2) if need_y else None
        g_gx = g_gx.transpose(1, 2) if need_x else None
        return (g_vals, g_gy, g_gx, g_ff, g_fs, g_w1, g_b1, *g2, g_const) + (None,) * 5


def _cell_major(f: torch.Tensor) -> torch.Tensor:
    """Gaussian factors (B·T', k, size) → (B·T', size, k) contiguous: one row of k values per cell coordinate."""
    return f.transpose(1, 2).contiguous()


def _flat_cells(cols: torch.Tensor, sl: slice, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices (T_b·M,) into the flattened cell-major factors (B·T'·h, k) and (B·T'·w, k) for frames ``sl``."""
    t = torch.arange(sl.start, sl.stop, device=cols.device)[:, None]
    ys, xs = torch.div(cols, w, rounding_mode="floor"), cols % w
    return (t * h + ys).reshape(-1), (t * w + xs).reshape(-1)


def _factors_at(gyt, gxt, cols, sl, h, w) -> tuple[torch.Tensor, torch.Tensor]:
    """The factors (T_b, M, k) of rows y and x of the cells ``cols`` in frames ``sl`` (one row gather each)."""
    ys, xs = _flat_cells(cols, sl, h, w)
    n = sl.stop - sl.start
    k = gyt.shape[-1]
    return gyt.view(-1, k).index_select(0, ys).view(n, -1, k), gxt.view(-1, k).index_select(0, xs).view(n, -1, k)


def _rows(cols: torch.Tensor, element: int, t0: int, t1: int, frames: int, plane: int) -> torch.Tensor:
    """Flat row indices ((t1-t0)·M,) in a (B·T·h·w, ·) grid: frames t0 … t1-1 of the columns ``cols``."""
    t = torch.arange(t0, t1, device=cols.device)
    return ((element * frames + t[:, None]) * plane + cols[None, :]).reshape(-1)


def _blocks(active: torch.Tensor, chunk: int) -> list[tuple[int, torch.Tensor, int, int]]:
    """Blocks (element, columns, t0, t1) covering every point whose fusion output is not the constant.

    active (B, T, h·w): points with non-zero input. Causality makes a column's output constant before its first
    active frame and from 5 frames after its last one (two 3-tap convolutions); columns are sorted by first and
    last active frame and cut into chunks, each computed on frames t0 … t1-1 from the chunk's earliest activity
    (before t0 the input is zero and the first layer's output SiLU(b1)).
    """
    frames = active.shape[1]
    t = torch.arange(frames, device=active.device)[:, None]
    blocks = []
    for b in range(active.shape[0]):
        cols = active[b].any(0).nonzero().squeeze(1)
        if cols.numel() == 0:
            continue
        act = active[b][:, cols]
        first = torch.where(act, t, frames).amin(0)
        last = torch.where(act, t, -1).amax(0)
        order = torch.argsort(first * frames + last)
        cols, first, last = cols[order], first[order], last[order]
        for i in range(0, cols.shape[0], chunk):
            t0 = int(first[i])
            t1 = min(int(last[i : i + chunk].max()) + 5, frames)
            blocks.append((b, cols[i : i + chunk], t0, t1))
    return blocks


def propagate_and_fuse(
    values: torch.Tensor,
    gy: torch.Tensor,
    gx: torch.Tensor,
    floor_feat: torch.Tensor,
    floor_sum: torch.Tensor,
    floor: float,
    conv1: torch.nn.Conv3d,
    conv2: torch.nn.Conv3d,
    norm: torch.nn.LayerNorm,
    stride: int = 4,
    empty: torch.Tensor | None = None,
    chunk: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Splat, propagation (eq. 4–5) and fusion (eq. 8) on the active points only → control volume, motion.

    values (B, T, N, E+C+2): per (frame, joint) the weighted rows [E, ε f, ε, 1] that ``geometry.splat_separable``
    would splat (structure map, Σ H ε f, Σ H ε, opacity); gy (B, T, N, h), gx (B, T, N, w) the windowed Gaussian
    factors; floor_feat (B, C, T'), floor_sum (B, 1, T'), ``floor`` the softmax floor (``geometry.propagate``).
    A point (latent frame, cell) is active when its opacity is positive; outside the causal reach of the active
    points the motion features are 0 and the control volume is the empty-scene value. ``empty`` (B,) bool:
    elements whose control volume is exactly 0. Returns control volume (B, O, T', h, w) and motion features
    (B, C, T', h, w), both with channels-last memory, equal (values and gradients) to ``splat_separable`` →
    ``propagate`` → the dense fusion.
    """
    b, _, n, width = values.shape
    h, w = gy.shape[-1], gx.shape[-1]
    c = floor_feat.shape[1]
    frames, _ = geo.temporal_groups(values.shape[1], stride)
    if empty is None:
        empty = torch.zeros(b, dtype=torch.bool, device=values.device)
    vals, gy_g, gx_g = (geo.group_latent(x, stride) for x in (values, gy, gx))
    with torch.no_grad():  # opacity = Σ_k H_k · weight_k, one small product per latent frame
        opacity = torch.bmm((gy_g * vals[..., -1:]).transpose(1, 2), gx_g)  # (B·T', h, w)
        active = (opacity > 0).reshape(b, frames, h * w) & ~empty[:, None, None]
    args = (conv1.weight, conv1.bias, conv2.weight, conv2.bias, norm.weight, norm.bias)
    const = empty_scene_value(*args, norm.eps)
    control, motion = _PropagateFuse.apply(
        vals, gy_g, gx_g, floor_feat.transpose(1, 2).reshape(b * frames, c),
        floor_sum.transpose(1, 2).reshape(b * frames, 1), tap_weights(conv1.weight), conv1.bias,
        tap_weights(conv2.weight), conv2.bias, norm.weight, norm.bias, const, _blocks(active, chunk), empty,
        (b, frames, h, w), norm.eps, floor,
    )
    control = control.reshape(b, frames, h, w, -1).permute(0, 4, 1, 2, 3)
    return control, motion.reshape(b, frames, h, w, c).permute(0, 4, 1, 2, 3)
