"""Pure geometry of the control signal: projection, encodings, windows, compression, splatting, propagation."""

from __future__ import annotations

import math

import torch

from worldmodel.control import geometry as geo


def test_projection_scales_intrinsics_and_clamps_depth():
    K = torch.tensor([[800.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]])
    Kl = geo.scale_intrinsics(K, 8).expand(1, 2, 3, 3)
    joints = torch.tensor([[[[0.1, -0.2, 2.0]], [[0.1, 0.05, 0.05]]]])  # second point closer than 0.2 m
    u, v, d = geo.project_to_latent(joints, Kl)
    assert torch.allclose(u[0, :, 0], torch.tensor([(800 * 0.05 + 320) / 8, (800 * 0.5 + 320) / 8]))
    assert torch.allclose(v[0, :, 0], torch.tensor([(600 * -0.1 + 240) / 8, (600 * 0.25 + 240) / 8]))
    assert torch.allclose(d[0, :, 0], torch.tensor([0.1, 1.0]))


def test_sinusoidal_encoding_frequencies():
    x = torch.tensor([0.7, -2.0])
    e = geo.sinusoidal_encoding(x, 32)
    k = 5
    f = math.exp(-math.log(10000.0) * k / 15)
    assert torch.allclose(e[:, k], torch.sin(x * f)) and torch.allclose(e[:, 16 + k], torch.cos(x * f))


def test_window_bound_holds():
    c = torch.rand(200) * 30
    full = geo.gaussian_factors(c, 30, 2.0, None)
    for r in (2, 4, 6):
        win = geo.gaussian_factors(c, 30, 2.0, r)
        assert ((full - win).abs().max() <= geo.window_truncation_bound(2.0, r)).item()
        assert ((win > 0).sum(-1) <= 2 * r + 2).all()


def test_compress_frames_keeps_first_and_drops_remainder():
    x = torch.arange(11.0)[None, :, None]  # 11 frames: 0 | 1-4 | 5-8 | 9,10 dropped
    y = geo.compress_frames(x, 4, dim=1)
    assert y[0, :, 0].tolist() == [0.0, 2.5, 6.5]
    assert geo.temporal_groups(11, 4) == (3, 9)


def test_masked_mean_and_presence():
    x = torch.arange(9.0).reshape(1, 9, 1)
    valid = torch.tensor([True, True, False, False, True, False, False, False, False]).reshape(1, 9, 1)
    m, present = geo.compress_masked_mean(x, valid, 4)
    assert m[0, :, 0].tolist() == [0.0, 2.5, 0.0] and present[0, :, 0].tolist() == [True, True, False]


def test_splat_equals_dense_heatmap_sum():
    g = torch.Generator().manual_seed(0)
    B, T, N, C, h, w = 2, 9, 5, 3, 7, 11
    u, v = torch.rand(B, T, N, generator=g) * w, torch.rand(B, T, N, generator=g) * h
    vals = torch.randn(B, T, N, C, generator=g, dtype=torch.float64)
    gy = geo.gaussian_factors(v.double(), h, 1.5, 2)
    gx = geo.gaussian_factors(u.double(), w, 1.5, 2)
    for hh, ww, gyy, gxx in ((h, w, gy, gx), (w, h, gx, gy)):  # both contraction orders
        weights = geo.frame_weights(T, 4, vals.dtype, vals.device)[:, None, None]
        out = geo.splat_separable(vals * weights, gyy, gxx, 4)
        heat = gyy[..., :, None] * gxx[..., None, :]  # dense (B, T, N, hh, ww)
        per_frame = torch.einsum("btnyx,btnc->btcyx", heat, vals)
        expected = geo.compress_frames(per_frame, 4, dim=1).transpose(1, 2)
        assert out.shape == (B, C, 3, hh, ww)
        assert torch.allclose(out, expected, atol=1e-12)


def test_propagate_matches_softmax_over_joints():
    g = torch.Generator().manual_seed(1)
    N, C = 4, 3
    H = torch.rand(N, 5, generator=g, dtype=torch.float64) * 0.2  # heatmaps of 4 joints at 5 cells
    d = torch.rand(N, generator=g, dtype=torch.float64)
    f = torch.randn(N, C, generator=g, dtype=torch.float64)
    lam = 5.0
    wts = torch.softmax(torch.log(H + 1e-6) + lam * d[:, None], dim=0)
    expected = torch.einsum("nx,nc->cx", wts, f) * H.sum(0)
    e = torch.exp(lam * (d - d.max()))
    grid = (1, -1, 1, 1, 5)  # (B, C, T', h, w) with one row of 5 cells
    out = geo.propagate(H.sum(0).reshape(grid), torch.einsum("nx,n,nc->cx", H, e, f).reshape(grid),
                        (H * e[:, None]).sum(0).reshape(grid), (e[:, None] * f).sum(0).reshape(1, C, 1),
                        e.sum().reshape(1, 1, 1))
    assert torch.allclose(out.reshape(C, 5), expected, atol=1e-14)


def test_visibility_rules():
    u = torch.tensor([[0.0, 0.5, 5.0]])
    v = torch.zeros(1, 3)
    d = torch.tensor([[0.1, 0.2, 0.9]])  # joint 1 in front of joint 0, joint 2 far away in the image
    valid = torch.ones(1, 3, dtype=torch.bool)
    assert geo.hard_visibility(u, v, d, valid).tolist() == [[0.0, 1.0, 1.0]]
    assert geo.hard_visibility(u, v, d, torch.tensor([[True, False, True]])).tolist() == [[1.0, 1.0, 1.0]]
    soft = geo.soft_visibility(u, v, d, valid, gamma=50.0, tau=1.0)
    assert soft[0, 0] < 0.01 and soft[0, 1] > 0.99 and soft[0, 2] > 0.99
    sharp = geo.soft_visibility(u, v, d, valid, gamma=1e6, tau=1e-3)
    assert torch.allclose(sharp, geo.hard_visibility(u, v, d, valid))


def test_splat_gradients_match_autograd_of_dense_form():
    g = torch.Generator().manual_seed(3)
    B, T, N, C, h, w = 1, 5, 3, 2, 4, 6
    vals = torch.randn(B, T, N, C, generator=g, dtype=torch.float64, requires_grad=True)
    gy = torch.rand(B, T, N, h, generator=g, dtype=torch.float64, requires_grad=True)
    gx = torch.rand(B, T, N, w, generator=g, dtype=torch.float64, requires_grad=True)
    # factors non-zero everywhere: the bounding box is the whole grid and the gradients are the plain ones
    assert torch.autograd.gradcheck(lambda a, b, c: geo.splat_separable(a, b, c, 4), (vals, gy, gx))


def test_windowed_splat_gradients_match_dense_heatmaps():
    """With windowed factors each frame's product covers only the windows' bounding box; gradients with respect
    to the values are still exact, and those for the factors are exact wherever the factor is non-zero."""
    g = torch.Generator().manual_seed(4)
    B, T, N, C, h, w = 1, 9, 3, 2, 16, 20
    u, v = 4 + torch.rand(B, T, N, generator=g) * 6, 3 + torch.rand(B, T, N, generator=g) * 5
    vals = torch.randn(B, T, N, C, generator=g, dtype=torch.float64, requires_grad=True)
    gy = geo.gaussian_factors(v.double(), h, 1.5, 2).requires_grad_()
    gx = geo.gaussian_factors(u.double(), w, 1.5, 2).requires_grad_()
    weight = torch.randn(B, C, 3, h, w, generator=g, dtype=torch.float64)
    fw = geo.frame_weights(T, 4, vals.dtype, vals.device)[:, None, None]  # the splat expects weighted values
    (geo.splat_separable(vals * fw, gy, gx, 4) * weight).sum().backward()
    got = [t.grad.clone() for t in (vals, gy, gx)]
    for t in (vals, gy, gx):
        t.grad = None
    heat = gy[..., :, None] * gx[..., None, :]
    dense = geo.compress_frames(torch.einsum("btnyx,btnc->btcyx", heat, vals), 4, dim=1).transpose(1, 2)
    (dense * weight).sum().backward()
    assert torch.allclose(got[0], vals.grad, atol=1e-12)
    for i, f in ((1, gy), (2, gx)):
        nz = f.detach() != 0
        assert torch.allclose(got[i][nz], f.grad[nz], atol=1e-12)
