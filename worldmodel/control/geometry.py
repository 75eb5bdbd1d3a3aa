"""Pure tensor functions that turn 3D hand joints into the control signal of the hand control module.

Everything here is stateless torch code, batched over (B, T, N) = (clips, frames, joints). The module in
``worldmodel.control`` composes these functions with its learnable parts. Conventions: camera frame OpenCV
(x right, y down, z forward), metres, pixel intrinsics; latent-grid coordinates are in cells, cell (i, j) sits at
x = j, y = i (no half-cell offset, as the authors' module does).

Heatmaps are never formed as dense per-joint 2-D maps. A Gaussian is separable,
``exp(-((x-u)^2 + (y-v)^2) / 2σ^2) = g_x(x) · g_y(y)``, so each joint and frame carries two 1-D factors
(length w and h) that are zero outside a window of ``radius`` cells; their outer product is exactly the Gaussian
restricted to the (2r+1)^2 square window. Splatting features with these factors is one batched matrix product
per latent frame, which also fuses the temporal compression (the frames of one group are summed in the same
product).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "scale_intrinsics",
    "project_to_latent",
    "sinusoidal_encoding",
    "gaussian_factors",
    "hard_visibility",
    "soft_visibility",
    "temporal_groups",
    "compress_frames",
    "compress_masked_mean",
    "group_latent",
    "frame_weights",
    "splat_separable",
    "pool_source_features",
    "propagate",
    "window_truncation_bound",
]


def scale_intrinsics(K: torch.Tensor, downsample: float) -> torch.Tensor:
    """Pixel intrinsics (..., 3, 3) of the full canvas → intrinsics of the latent grid (first two rows / s)."""
    scale = K.new_tensor([1.0 / downsample, 1.0 / downsample, 1.0])
    return K * scale[:, None]


def project_to_latent(
    joints: torch.Tensor,
    K: torch.Tensor,
    min_depth: float = 0.2,
    disparity_scale: float = 0.2,
    clamp: str = "point",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project camera-frame joints (B, T, N, 3) with latent-grid intrinsics K (B, T, 3, 3) → u, v, disparity.

    z_c = max(z, ``min_depth``); disparity = disparity_scale / z_c. ``clamp="point"``: a point nearer than
    ``min_depth`` is moved back to that depth, (u, v) = K·(x/z_c, y/z_c, 1) after the perspective division.
    ``clamp="divisor"`` (the authors' module): (u, v) = (K·X)₀,₁ / z_c — the point stays where it is, only the
    divisor is clamped, so a zero joint lands on cell (0, 0). Returns three (B, T, N) tensors, u, v in cells.
    """
    z = joints[..., 2].clamp(min=min_depth)
    if clamp == "divisor":
        p = torch.einsum("btij,btnj->btni", K, joints)
        return p[..., 0] / z, p[..., 1] / z, disparity_scale / z
    if clamp != "point":
        raise ValueError(f"clamp must be 'point' or 'divisor', got {clamp!r}")
    ray = torch.stack([joints[..., 0] / z, joints[..., 1] / z, torch.ones_like(z)], dim=-1)
    p = torch.einsum("btij,btnj->btni", K, ray)
    return p[..., 0] / p[..., 2], p[..., 1] / p[..., 2], disparity_scale / z


def sinusoidal_encoding(x: torch.Tensor, dim: int = 32, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal encoding (..., dim) of scalars x (...): [sin(x·f_k), cos(x·f_k)], f_k = P^(-k/(dim/2-1))."""
    half = dim // 2
    k = torch.arange(half, dtype=x.dtype, device=x.device)
    freqs = torch.exp(-math.log(max_period) * k / max(half - 1, 1))
    angles = x[..., None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def gaussian_factors(
    centre: torch.Tensor, size: int, sigma: float, radius: int | None
) -> torch.Tensor:
    """1-D Gaussian factors (..., size) exp(-(i - c)^2 / 2σ^2) at cells i = 0..size-1 around centres c (...).

    Cells farther than ``radius + 0.5`` from the centre are zero, so the outer product of an x and a y factor
    is the Gaussian on a (2r+1) x (2r+1) window; ``radius=None`` keeps the full grid.
    """
    cells = torch.arange(size, dtype=centre.dtype, device=centre.device)
    offset = cells - centre[..., None]
    g = torch.exp(-offset.square() / (2.0 * sigma * sigma))
    if radius is not None:
        g = g * (offset.abs() <= radius + 0.5)
    return g


def window_truncation_bound(sigma: float, radius: int, num_joints: int = 1) -> float:
    """Largest heatmap value any ``num_joints`` joints can lose at one cell through the window truncation."""
    return num_joints * math.exp(-((radius + 0.5) ** 2) / (2.0 * sigma * sigma))


def _pairwise(u: torch.Tensor, v: torch.Tensor, disp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise image distance (B, N, N) and disparity lead d_j - d_i (B, N, N) for joints (B, N)."""
    dist = torch.sqrt((u[:, :, None] - u[:, None, :]).square() + (v[:, :, None] - v[:, None, :]).square())
    lead = disp[:, None, :] - disp[:, :, None]
    return dist, lead


def _others(valid: torch.Tensor) -> torch.Tensor:
    """Mask (B, N, N) of the pairs (i, j) with j != i and j valid: who may occlude joint i."""
    n = valid.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=valid.device)
    return valid[:, None, :] & ~eye


def hard_visibility(
    u: torch.Tensor,
    v: torch.Tensor,
    disp: torch.Tensor,
    valid: torch.Tensor,
    radius: float = 1.0,
    depth_margin: float = 1e-3,
) -> torch.Tensor:
    """The authors' 0/1 visibility (B, N) of joints (B, N) in one frame.

    Joint i is occluded when another valid joint lies closer than ``radius`` cells in the image and is nearer
    to the camera by more than ``depth_margin`` in disparity.
    """
    dist, lead = _pairwise(u, v, disp)
    occluded = (dist < radius) & (lead > depth_margin) & _others(valid)
    return 1.0 - occluded.any(dim=-1).to(u.dtype)


def soft_visibility(
    u: torch.Tensor,
    v: torch.Tensor,
    disp: torch.Tensor,
    valid: torch.Tensor,
    gamma: float = 100.0,
    tau: float = 1.0,
    radius: float = 1.0,
    depth_margin: float = 1e-3,
) -> torch.Tensor:
    """The paper's soft visibility (B, N): v_i = 1 - max_j P(i←j) over other valid joints j (eq. 2–3).

    P(i←j) = S(‖p_i - p_j‖) · sigmoid(γ (d_j - d_i - margin)), with the spatial overlap
    S(r) = exp(-max(r - radius, 0)^2 / 2τ^2): a Gaussian in the distance beyond a flat core of ``radius`` cells
    (``radius=0`` is a plain Gaussian). As γ → ∞ and τ → 0, P tends to the hard rule of ``hard_visibility``.
    """
    dist, lead = _pairwise(u, v, disp)
    spatial = torch.exp(-(dist - radius).clamp(min=0.0).square() / (2.0 * tau * tau))
    penalty = spatial * torch.sigmoid(gamma * (lead - depth_margin))
    penalty = torch.where(_others(valid), penalty, torch.zeros_like(penalty))
    return 1.0 - penalty.amax(dim=-1)


def temporal_groups(num_frames: int, stride: int = 4) -> tuple[int, int]:
    """(latent frames T', input frames used) for frame 0 kept, then groups of ``stride`` (remainder dropped)."""
    latent = 1 + (num_frames - 1) // stride
    return latent, 1 + stride * (latent - 1)


def compress_frames(x: torch.Tensor, stride: int = 4, dim: int = 1) -> torch.Tensor:
    """Temporal compression along ``dim``: frame 0 kept, the rest averaged in groups of ``stride``."""
    x = x.movedim(dim, 0)
    latent, used = temporal_groups(x.shape[0], stride)
    rest = x[1:used].reshape(latent - 1, stride, *x.shape[1:]).mean(dim=1)
    return torch.cat([x[:1], rest], dim=0).movedim(0, dim)


def _group(x: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, T, ...) → (B, T', stride, ...): frame 0 padded with stride-1 zero frames in front, remainder dropped."""
    latent, used = temporal_groups(x.shape[1], stride)
    pad = x.new_zeros((x.shape[0], stride - 1, *x.shape[2:]))
    return torch.cat([pad, x[:, :used]], dim=1).reshape(x.shape[0], latent, stride, *x.shape[2:])


def group_latent(x: torch.Tensor, stride: int = 4) -> torch.Tensor:
    """(B, T, N, ...) → (B·T', stride·N, ...): the (frame, joint) rows that make up each latent frame.

    Frame 0 is padded with stride-1 zero frames in front (they carry nothing), the remainder is dropped.
    """
    latent, _ = temporal_groups(x.shape[1], stride)
    g = _group(x, stride)
    return g.reshape(x.shape[0] * latent, stride * x.shape[2], *x.shape[3:])


def compress_masked_mean(x: torch.Tensor, valid: torch.Tensor, stride: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Per latent frame mean of x (B, T, N) over the valid frames of its group → (values, present), (B, T', N).

    ``present`` marks joints valid in at least one frame of the group; absent joints get 0.
    """
    w = valid.to(x.dtype)
    num = _group(torch.where(valid, x, torch.zeros_like(x)), stride).sum(2)
    den = _group(w, stride).sum(2)
    present = den > 0
    return num / den.clamp(min=1.0), present


def frame_weights(num_frames: int, stride: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Weight (T,) of each input frame in its latent frame: 1 for frame 0, 1/stride after, 0 when dropped."""
    _, used = temporal_groups(num_frames, stride)
    w = torch.full((num_frames,), 1.0 / stride, dtype=dtype, device=device)
    w[0] = 1.0
    w[used:] = 0.0
    return w


def _support(f: torch.Tensor) -> list[tuple[int, int]]:
    """[(first, last + 1)] of the cells where any of the factors f (n, k, size) is non-zero, per leading index."""
    nz = (f != 0).any(1)  # (n, size)
    size = nz.shape[-1]
    cells = torch.arange(size, device=f.device)
    first = torch.where(nz, cells, size).amin(-1)
    last = torch.where(nz, cells, -1).amax(-1) + 1
    return [(a, max(a, z)) for a, z in zip(first.tolist(), last.tolist(), strict=True)]


class _SeparableSplat(torch.autograd.Function):
    """out[i, y, x, c] = Σ_k gy[i, k, y] gx[i, k, x] vals[i, k, c], one latent frame i at a time.

    Each frame's products are formed only on the bounding box of its factors' support (the union of the joints'
    windows); outside it every term has a zero factor. Zeros of gy and gx are treated as structural: the gradient
    returned for them is 0 (exact for our factors, whose entries outside the window are a product with a 0 mask,
    and for underflowed Gaussians). Written as a custom function (rather than a broadcast product then
    ``torch.bmm``) so that only the small per-joint inputs are saved for the backward pass.
    """

    @staticmethod
    def forward(ctx, vals, gy, gx):
        n, k, c = vals.shape
        h, w = gy.shape[-1], gx.shape[-1]
        out = vals.new_zeros((n, h, w, c))
        boxes = list(zip(_support(gy), _support(gx), strict=True))
        for i, ((y0, y1), (x0, x1)) in enumerate(boxes):
            if y1 == y0 or x1 == x0:
                continue
            rows = (gy[i, :, y0:y1, None] * vals[i, :, None, :]).reshape(k, (y1 - y0) * c)
            prod = gx[i, :, x0:x1].T @ rows  # (wb, hb*c)
            out[i, y0:y1, x0:x1] = prod.reshape(x1 - x0, y1 - y0, c).transpose(0, 1)
        ctx.save_for_backward(vals, gy, gx)
        ctx.boxes = boxes
        return out

    @staticmethod
    def backward(ctx, grad):
        vals, gy, gx = ctx.saved_tensors
        n, k, c = vals.shape
        need_v, need_y, need_x = ctx.needs_input_grad[:3]
        g_vals = torch.zeros_like(vals) if need_v else None
        g_gy = torch.zeros_like(gy) if need_y else None
        g_gx = torch.zeros_like(gx) if need_x else None
        for i, ((y0, y1), (x0, x1)) in enumerate(ctx.boxes):
            if y1 == y0 or x1 == x0:
                continue
            hb, wb = y1 - y0, x1 - x0
            gi = grad[i, y0:y1, x0:x1].transpose(0, 1).reshape(wb, hb * c)
            fy, fx = gy[i, :, y0:y1], gx[i, :, x0:x1]
            if need_v or need_y:
                m = (fx @ gi).reshape(k, hb, c)  # Σ_x gx G
                if need_v:
                    g_vals[i] = torch.bmm(fy[:, None, :], m).squeeze(1)
                if need_y:
                    g_gy[i, :, y0:y1] = torch.bmm(m, vals[i, :, :, None]).squeeze(2)
            if need_x:
                rows = (fy[:, :, None] * vals[i, :, None, :]).reshape(k, hb * c)
                g_gx[i, :, x0:x1] = rows @ gi.T
        return g_vals, g_gy, g_gx


def splat_separable(values: torch.Tensor, gy: torch.Tensor, gx: torch.Tensor, stride: int = 4) -> torch.Tensor:
    """Splat per-joint features into latent frames: out[t', c, y, x] = Σ_{t∈t', n} gy[t,n,y] gx[t,n,x] values[t,n,c].

    values (B, T, N, C) already carry the temporal and validity weights; gy (B, T, N, h), gx (B, T, N, w) are the
    (windowed) Gaussian factors. Frames of one latent frame are summed in the same matrix product, so temporal
    compression costs nothing extra. Each latent frame's product covers only the bounding box of its joints'
    windows. Returns (B, C, T', h, w) with channels-last memory (a permuted view of (B, T', h, w, C)).
    """
    b, _, n, c = values.shape
    h, w = gy.shape[-1], gx.shape[-1]
    latent, _ = temporal_groups(values.shape[1], stride)
    k = stride * n
    vals = _group(values, stride).reshape(b * latent, k, c)
    gy_g = _group(gy, stride).reshape(b * latent, k, h)
    gx_g = _group(gx, stride).reshape(b * latent, k, w)
    out = _SeparableSplat.apply(vals, gy_g, gx_g)  # (B*T', h, w, C)
    return out.reshape(b, latent, h, w, c).permute(0, 4, 1, 2, 3)


def pool_source_features(
    z0: torch.Tensor, gy: torch.Tensor, gx: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Heatmap-weighted average of the reference latent z0 (B, C, h, w) per joint → (B, N, C).

    gy (B, N, h), gx (B, N, w) are the joints' Gaussian factors in the source frame; the heatmap is normalised
    to sum 1 over the grid (+eps), as the authors do.
    """
    num = torch.einsum("bny,bcyx,bnx->bnc", gy, z0, gx)
    mass = gy.sum(-1) * gx.sum(-1)
    return num / (mass + eps)[..., None]


def propagate(
    opacity: torch.Tensor,
    weighted_feat: torch.Tensor,
    weight_sum: torch.Tensor,
    floor_feat: torch.Tensor,
    floor_sum: torch.Tensor,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Depth-weighted softmax propagation times total opacity (eq. 4–5), from splatted sums.

    The softmax over joints of log(H_k + eps) + λ d_k has weights (H_k + eps) e_k / Σ_j (H_j + eps) e_j with
    e_k = exp(λ (d_k - max d)). Its numerator and denominator split into a sparse part (splatted:
    ``weighted_feat`` = Σ H_k e_k f_k (B, C, T', h, w), ``weight_sum`` = Σ H_k e_k (B, 1, T', h, w)) and a part
    constant over the grid (``floor_feat`` = Σ e_k f_k (B, C, T'), ``floor_sum`` = Σ e_k (B, 1, T'), sums over the
    joints present in the latent frame). ``opacity`` = Σ H_k (B, 1, T', h, w). Frames without joints give 0.
    """
    num = weighted_feat + eps * floor_feat[..., None, None]
    den = weight_sum + eps * floor_sum[..., None, None]
    den = torch.where(den > 0, den, torch.ones_like(den))
    return opacity * num / den
