"""Ablation switches of HandControlModule and the Wan-Move style 2D point-track baseline."""

from __future__ import annotations

import pytest
import torch

from worldmodel import HandControlModule
from worldmodel.control.baselines import copy_point_tracks
from worldmodel.control.geometry import project_to_latent, scale_intrinsics

N, C, T, H, W = 5, 4, 9, 80, 112  # latent grid 10 × 14, T' = 3


def inputs(seed=0, overlap=False):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(1, T, N, 2, generator=g) * 0.6 - 0.3
    z = 0.5 + torch.rand(1, T, N, 1, generator=g)
    joints = torch.cat([xy * z, z], -1).double()
    if overlap:  # joint 1 right behind joint 0 on its ray in frame 0
        joints[:, 0, 1] = joints[:, 0, 0] * 1.3
    K = torch.tensor([[[60.0, 0, W / 2], [0, 60.0, H / 2], [0, 0, 1]]], dtype=torch.float64)
    z0 = torch.randn(1, C, H // 8, W // 8, generator=g).double()
    return joints, K, z0


def module(**kw) -> HandControlModule:
    torch.manual_seed(0)
    return HandControlModule(num_joints=N, embed_dim=16, latent_channels=C, output_dim=8, **kw).double()


def loop_tracks(z0, u, v, valid, stride):
    """Plain-loop reference of copy_point_tracks."""
    b, c, h, w = z0.shape
    t = u.shape[1]
    frames = [min(k, t - 1) for k in range(0, t, stride)]
    out = torch.zeros(b, c, len(frames), h, w, dtype=z0.dtype)
    cnt = torch.zeros(b, 1, len(frames), h, w, dtype=z0.dtype)
    for i in range(b):
        for kk, f in enumerate(frames):
            for n in range(u.shape[2]):
                u0, v0, uf, vf = (int(round(float(x))) for x in (u[i, 0, n], v[i, 0, n], u[i, f, n], v[i, f, n]))
                if not (valid[i, 0, n] and valid[i, f, n]):
                    continue
                if not (0 <= u0 < w and 0 <= v0 < h and 0 <= uf < w and 0 <= vf < h):
                    continue
                out[i, :, kk, vf, uf] += z0[i, :, v0, u0]
                cnt[i, :, kk, vf, uf] += 1
    return out / cnt.clamp_min(1)


def test_copy_point_tracks_matches_loop_with_collisions_and_out_of_grid():
    g = torch.Generator().manual_seed(3)
    b, t, n, h, w = 2, 9, 7, 6, 8
    z0 = torch.randn(b, 3, h, w, generator=g, dtype=torch.float64)
    u = torch.rand(b, t, n, generator=g, dtype=torch.float64) * (w + 2) - 1  # some leave the grid
    v = torch.rand(b, t, n, generator=g, dtype=torch.float64) * (h + 2) - 1
    u[:, :, 1], v[:, :, 1] = u[:, :, 0], v[:, :, 0]  # a collision every frame
    valid = torch.rand(b, t, n, generator=g) > 0.2
    got = copy_point_tracks(z0, u, v, valid, 4)
    assert got.shape == (b, 3, 3, h, w)
    torch.testing.assert_close(got, loop_tracks(z0, u, v, valid, 4))


def test_copy_point_tracks_static_track_copies_in_place_and_rejects_bad_shapes():
    z0 = torch.arange(2 * 4 * 5, dtype=torch.float32).view(1, 2, 4, 5)
    u = torch.full((1, 5, 1), 3.0)
    v = torch.full((1, 5, 1), 2.0)
    out = copy_point_tracks(z0, u, v, torch.ones(1, 5, 1, dtype=torch.bool), 4)
    assert torch.equal(out[0, :, 1, 2, 3], z0[0, :, 2, 3]) and out.abs().sum() == 2 * z0[0, :, 2, 3].abs().sum()
    with pytest.raises(ValueError, match="u, v, valid"):
        copy_point_tracks(z0, u, v[:, :4], torch.ones(1, 5, 1, dtype=torch.bool))


def test_defaults_are_the_full_module():
    joints, K, z0 = inputs(overlap=True)
    full = module()
    explicit = module(use_occlusion=True, use_depth_weighting=True, use_propagation=True,
                      use_geometric_embedding=True, point_tracks_2d=False)
    for a, b in zip(full(joints, K, z0), explicit(joints, K, z0), strict=True):
        assert torch.equal(a, b)


def test_occlusion_switch_only_matters_when_joints_overlap():
    """Hard (upstream) visibility is 1 for isolated joints, so gating off changes nothing unless joints overlap."""
    for overlap in (False, True):
        joints, K, z0 = inputs(overlap=overlap)
        spread = torch.tensor([[-0.25, -0.2], [0.25, -0.2], [-0.25, 0.2], [0.25, 0.2], [0.0, 0.0]], dtype=joints.dtype)
        joints[:, 0, :, :2] = spread * joints[:, 0, :, 2:]  # frame 0: joints cells apart
        if overlap:
            joints[:, 0, 1] = joints[:, 0, 0] * 1.3
        _, m_on = module(occlusion="upstream").control_signal(joints, K, z0)
        _, m_off = module(occlusion="upstream", use_occlusion=False).control_signal(joints, K, z0)
        if overlap:
            assert (m_on - m_off).abs().max() > 1e-3
        else:
            torch.testing.assert_close(m_on, m_off, atol=1e-6, rtol=0)


def test_without_depth_order_and_gating_motion_ignores_depth():
    """Scaling each joint along its ray keeps (u, v); with OCA and OP off the motion features cannot change."""
    joints, K, z0 = inputs()
    scale = 1.0 + torch.rand(1, T, N, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    kw = dict(use_occlusion=False, use_depth_weighting=False)
    torch.testing.assert_close(module(**kw).control_signal(joints * scale, K, z0)[1],
                               module(**kw).control_signal(joints, K, z0)[1])
    assert (module().control_signal(joints * scale, K, z0)[1]
            - module().control_signal(joints, K, z0)[1]).abs().max() > 1e-4


def test_geometric_embedding_switch():
    """Without 3DGE the structure map sees no depth; with it, moving joints along their rays changes it."""
    joints, K, z0 = inputs()
    scaled = joints * 1.5
    s_off = [module(use_geometric_embedding=False).control_signal(j, K, z0)[0] for j in (joints, scaled)]
    torch.testing.assert_close(s_off[0], s_off[1])
    s_on = [module().control_signal(j, K, z0)[0] for j in (joints, scaled)]
    assert (s_on[0] - s_on[1]).abs().max() > 1e-4


def test_propagation_off_gives_no_motion_features():
    joints, K, z0 = inputs()
    control, motion = module(use_propagation=False)(joints, K, z0)
    assert torch.equal(motion, torch.zeros_like(motion)) and control.abs().sum() > 0


def test_point_tracks_mode_is_the_pure_baseline():
    joints, K, z0 = inputs()
    m = module(point_tracks_2d=True)
    control, motion = m(joints, K, z0)
    u, v, _ = project_to_latent(joints, scale_intrinsics(K[:, None].expand(1, T, 3, 3), 8))
    expected = loop_tracks(z0, u, v, torch.ones(1, T, N, dtype=torch.bool), 4)
    torch.testing.assert_close(motion, expected)
    assert motion.abs().sum() > 0 and torch.equal(control, torch.zeros(1, 8, 3, H // 8, W // 8, dtype=z0.dtype))
