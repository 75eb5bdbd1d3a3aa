"""HandControlModule: shapes, sizes, round trips, validity semantics, equality with a dense implementation."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
from safetensors.torch import save_file

from worldmodel import HandControlModule
from worldmodel.control.geometry import hard_visibility, project_to_latent, scale_intrinsics
from worldmodel.control.module import UPSTREAM_NAMES

TO_UPSTREAM = {ours: theirs for theirs, ours in UPSTREAM_NAMES.items()}


# ---------------------------------------------------------------------------------------------------------------
# An independent, deliberately plain dense implementation of the same equations: full (B, T, N, h, w) heatmaps,
# explicit softmax over joints, explicit loops over temporal groups and conv taps, float64.
# Checked once against the authors' reference vectors (radius=None): hand_conditioning_vector.safetensors (all
# joints valid) max abs diff 2.3e-06 on `out` and 7.5e-07 on `occ_latent`; ..._missing_hand.safetensors (a hand
# zero-filled in every frame, joints at z = 0.09-0.18 m, per-frame K) max abs diff 2.2e-07 on `out` and 4.8e-07
# on `occ_latent`, the missing hand given as NaN and marked invalid (the file was made in float64).
# ---------------------------------------------------------------------------------------------------------------
def dense_reference(state, joints, K, z0, valid=None, *, occlusion="upstream", fusion="mean", sigma=2.0,
                    radius=None, lam=5.0, occ_radius=1.0, margin=1e-3, gamma=100.0, tau=1.0, stride=4,
                    downsample=8):
    p = {k.removeprefix("state."): v.double() for k, v in state.items()}
    joints, K, z0 = joints.double(), K.double(), z0.double()
    B, T, N, _ = joints.shape
    C, h, w = z0.shape[1:]
    if valid is None:
        valid = torch.ones(B, T, N, dtype=torch.bool)
    joints = torch.where(valid[..., None], joints, torch.zeros_like(joints))
    if occlusion == "upstream":  # the authors' data: a missing joint is a zero joint like any other
        valid = torch.ones_like(valid)
    if K.ndim == 3:
        K = K[:, None].repeat(1, T, 1, 1)
    Kl = K.clone()
    Kl[..., 0, :] /= downsample
    Kl[..., 1, :] /= downsample
    z = joints[..., 2].clamp(min=0.2)
    if occlusion == "upstream":  # K·X, then u and v divided by the clamped depth (the point is not moved)
        X = joints
    else:  # the point moved back to the clamped depth
        X = torch.stack([joints[..., 0] / z, joints[..., 1] / z, torch.ones_like(z)], -1) * z[..., None]
    u = (Kl[..., 0, None, :] * X).sum(-1) / z
    v = (Kl[..., 1, None, :] * X).sum(-1) / z
    d = 0.2 / z

    half = p["joint_id_embed.weight"].shape[1]
    freqs = torch.tensor([10000.0 ** (-k / (half // 2 - 1)) for k in range(half // 2)], dtype=torch.float64)

    def enc(x):
        a = x[..., None] * freqs
        return torch.cat([torch.sin(a), torch.cos(a)], -1)

    e = (enc(u) + enc(v) + enc(d)) / 3 if fusion == "mean" else torch.cat([enc(u), enc(v), enc(d)], -1)
    ids = p["joint_id_embed.weight"].expand(B, T, N, half)
    if occlusion == "paper":  # eq. 6: the MLP sees [γ(u), γ(v), γ(d), E_id]
        e = torch.cat([e, ids], -1)
    hid = e @ p["coord_encoder.0.weight"].T + p["coord_encoder.0.bias"]
    hid = hid * torch.sigmoid(hid)
    m = hid @ p["coord_encoder.2.weight"].T + p["coord_encoder.2.bias"]
    emb = m if occlusion == "paper" else torch.cat([m, ids], -1)

    ys = torch.arange(h, dtype=torch.float64)[:, None]
    xs = torch.arange(w, dtype=torch.float64)[None, :]
    du = xs - u[..., None, None]
    dv = ys - v[..., None, None]
    H = torch.exp(-(du**2 + dv**2) / (2 * sigma**2))
    if radius is not None:
        H = H * ((du.abs() <= radius + 0.5) & (dv.abs() <= radius + 0.5))
    H = H * valid[..., None, None]

    vis = torch.ones(B, N, dtype=torch.float64)
    for b in range(B):
        for i in range(N):
            worst = 0.0
            for j in range(N):
                if j == i or not valid[b, 0, j]:
                    continue
                dist = math.hypot(u[b, 0, i] - u[b, 0, j], v[b, 0, i] - v[b, 0, j])
                lead = float(d[b, 0, j] - d[b, 0, i])
                if occlusion == "upstream":
                    worst = max(worst, float(dist < occ_radius and lead > margin))
                elif occlusion == "paper":  # eq. 2: Gaussian in the distance times sigmoid of the depth lead
                    worst = max(worst, math.exp(-dist**2 / (2 * tau**2)) / (1 + math.exp(-gamma * lead)))
                else:
                    s = math.exp(-max(dist - occ_radius, 0.0) ** 2 / (2 * tau**2))
                    worst = max(worst, s / (1 + math.exp(-gamma * (lead - margin))))
            vis[b, i] = 1 - worst
    H0 = H[:, 0]
    src = torch.einsum("bnyx,bcyx->bnc", H0 / (H0.sum((-1, -2), keepdim=True) + 1e-6), z0)
    src = src * (vis * valid[:, 0])[..., None]

    struct = torch.einsum("btnyx,btnc->btcyx", H, emb)
    groups = [[0]] + [list(range(1 + stride * g, 1 + stride * (g + 1))) for g in range((T - 1) // stride)]
    Tl = len(groups)
    Sc = torch.stack([struct[:, g].mean(1) for g in groups], 1)
    if occlusion == "paper":  # eqs. 4-5 on every input frame, then the frames of a group averaged
        logits = torch.log(H + 1e-6) + lam * d[..., None, None]
        logits = torch.where(valid[..., None, None], logits, torch.full_like(logits, -torch.inf))
        wts = torch.softmax(logits, 2).nan_to_num(0.0)
        per_frame = torch.einsum("btnyx,bnc->bctyx", wts, src) * H.sum(2)[:, None]
        prop = torch.stack([per_frame[:, :, g].mean(2) for g in groups], 2)
    else:  # heatmaps and disparities averaged first, then one propagation per latent frame
        Hc = torch.stack([H[:, g].mean(1) for g in groups], 1)
        vg = torch.stack([valid[:, g].double().sum(1) for g in groups], 1)
        dc = torch.stack([(d[:, g] * valid[:, g]).sum(1) for g in groups], 1) / vg.clamp(min=1)
        logits = torch.log(Hc + 1e-6) + lam * dc[..., None, None]
        logits = torch.where((vg > 0)[..., None, None], logits, torch.full_like(logits, -torch.inf))
        wts = torch.softmax(logits, 2).nan_to_num(0.0)
        prop = torch.einsum("btnyx,bnc->bctyx", wts, src) * Hc.sum(2)[:, None]

    x = torch.cat([Sc.permute(0, 2, 1, 3, 4), prop], 1)
    for name in ("causal_conv1", "causal_conv2"):
        W, bias = p[f"{name}.weight"][..., 0, 0], p[f"{name}.bias"]
        y = []
        for t in range(Tl):
            acc = bias[None, :, None, None].clone()
            for tap in range(3):
                acc = acc + torch.einsum("oc,bcyx->boyx", W[:, :, tap], x[:, :, max(t - 2 + tap, 0)])
            y.append(acc)
        x = torch.stack(y, 2)
        x = x * torch.sigmoid(x)
    mu = x.mean(1, keepdim=True)
    var = x.var(1, unbiased=False, keepdim=True)
    g, bb = p["cross_norm.weight"], p["cross_norm.bias"]
    out = (x - mu) / torch.sqrt(var + 1e-5) * g[None, :, None, None, None] + bb[None, :, None, None, None]
    return out, prop


def authors_state(model: HandControlModule) -> dict:
    return {TO_UPSTREAM[k]: v.detach() for k, v in model.state_dict().items() if k in TO_UPSTREAM}


def dense_kwargs(model: HandControlModule) -> dict:
    c = model.config
    return dict(occlusion=c.occlusion, fusion=model.coord_fusion, sigma=c.heatmap_sigma, radius=c.heatmap_radius,
                lam=float(model.depth_scale.detach()), occ_radius=c.occlusion_radius, margin=c.occlusion_depth_margin,
                gamma=c.soft_gamma, tau=c.soft_tau, stride=c.temporal_stride, downsample=c.downsample)


def make_inputs(B=2, T=9, N=6, h=10, w=14, C=4, seed=0, per_frame_K=False, spread=1.0):
    """Random joints in front of a camera whose latent grid is h x w; joints cluster so some overlap."""
    g = torch.Generator().manual_seed(seed)
    f = 1.1 * 8 * w
    K = torch.tensor([[f, 0.0, 4.0 * w], [0.0, f, 4.0 * h], [0.0, 0.0, 1.0]]).repeat(B, 1, 1)
    centre = torch.tensor([0.0, 0.0, 0.5]) + 0.05 * torch.randn(B, 1, 1, 3, generator=g)
    drift = 0.01 * torch.randn(B, T, 1, 3, generator=g).cumsum(1)
    joints = centre + drift + spread * 0.06 * torch.randn(B, 1, N, 3, generator=g) \
        + 0.004 * torch.randn(B, T, N, 3, generator=g)
    if per_frame_K:
        K = K[:, None].repeat(1, T, 1, 1)
        K[:, :, 0, 2] += torch.linspace(-3, 3, T)
    z0 = torch.randn(B, C, h, w, generator=g)
    return joints, K, z0


def with_overlaps(joints):
    """Make pairs overlap within one cell in the source frame: 1 behind 0 on its ray, 3 just beside 2, nearer."""
    joints = joints.clone()
    joints[:, 0, 1] = joints[:, 0, 0] * torch.tensor([1.0, 1.0, 1.1])
    joints[:, 0, 3] = joints[:, 0, 2] * torch.tensor([1.01, 0.99, 0.92])
    return joints


def tiny(occlusion="upstream", N=6, C=4, seed=0, **kw) -> HandControlModule:
    torch.manual_seed(seed)
    m = HandControlModule(num_joints=N, embed_dim=16, latent_channels=C, output_dim=8, occlusion=occlusion, **kw)
    # Non-trivial norm weights so that the comparison is not blind to them.
    with torch.no_grad():
        m.norm.weight.uniform_(0.5, 1.5)
        m.norm.bias.uniform_(-0.5, 0.5)
    return m.double()


# ---------------------------------------------------------------------------------------------------------------
def test_shapes_both_modes_and_per_frame_K():
    joints, K, z0 = make_inputs(per_frame_K=True)
    for occ in ("upstream", "soft", "paper"):
        control, motion = tiny(occ)(joints.double(), K.double(), z0.double())
        assert control.shape == (2, 8, 3, 10, 14)
        assert motion.shape == (2, 4, 3, 10, 14)
        assert torch.isfinite(control).all() and torch.isfinite(motion).all()


def test_parameter_count_at_paper_sizes():
    up = HandControlModule(occlusion="upstream")
    soft = HandControlModule(occlusion="soft")
    # coord MLP 2·(32·32+32) (+ 64·32 when concatenating), ids 42·32, convs 80·64·3+64 and 64·16·3+16, norm 32, λ
    assert sum(p.numel() for p in up.parameters()) == 2112 + 1344 + 15424 + 3088 + 32 + 1 == 22001
    assert sum(p.numel() for p in soft.parameters()) == 22001 + 64 * 32 <= 25_000
    # paper: the MLP maps [γ(u), γ(v), γ(d), E_id] (96 + 32) → 64 → 64 (eq. 6)
    paper = HandControlModule(occlusion="paper")
    assert sum(p.numel() for p in paper.parameters()) == (128 * 64 + 64) + (64 * 64 + 64) + 1344 + 15424 + 3088 \
        + 32 + 1 == 32305


def test_paper_mode_gradients_equal_the_dense_equations():
    joints, K, z0 = make_inputs(seed=9, T=9)
    joints = with_overlaps(joints)
    valid = torch.rand(joints.shape[:3], generator=torch.Generator().manual_seed(4)) > 0.2
    m = tiny("paper", heatmap_radius=None)
    control, motion = m(joints.double(), K.double(), z0.double(), valid)
    weight = torch.linspace(-1, 1, control.numel(), dtype=control.dtype).reshape(control.shape)
    ((control * weight).sum() + motion.sin().sum()).backward()
    params = {TO_UPSTREAM[n]: p for n, p in m.named_parameters() if n in TO_UPSTREAM}
    ref_c, ref_m = dense_reference(params, joints, K, z0, valid, **dense_kwargs(m))
    grads = torch.autograd.grad((ref_c * weight).sum() + ref_m.sin().sum(), list(params.values()))
    for name, g in zip(params, grads, strict=True):
        torch.testing.assert_close(m.get_parameter(UPSTREAM_NAMES[name]).grad, g, rtol=1e-9, atol=1e-10)
    assert m.depth_scale.grad is not None and m.depth_scale.grad.abs() > 0  # λ is learnt in paper mode


@pytest.mark.parametrize("occlusion", ["upstream", "soft", "paper"])
@pytest.mark.parametrize("per_frame_K", [False, True])
def test_sparse_equals_dense(occlusion, per_frame_K):
    joints, K, z0 = make_inputs(seed=3, per_frame_K=per_frame_K)
    joints = with_overlaps(joints)
    valid = torch.rand(joints.shape[:3], generator=torch.Generator().manual_seed(1)) > 0.2
    valid[:, 0, :4] = True
    # A small window (r=2) makes the truncation matter on this grid; the dense version applies the same window.
    for radius in (2, None):
        m = tiny(occlusion, heatmap_radius=radius)
        with torch.no_grad():
            m.depth_scale.fill_(3.7)
        control, motion = m(joints.double(), K.double(), z0.double(), valid)
        ref_c, ref_m = dense_reference(authors_state(m), joints, K, z0, valid, **dense_kwargs(m))
        assert (control - ref_c).abs().max() < 1e-9
        assert (motion - ref_m).abs().max() < 1e-9


def test_float32_default_window_equals_unwindowed_dense():
    joints, K, z0 = make_inputs(seed=5, h=30, w=34)
    m = tiny("soft").float()  # default radius 12 on a 30 x 34 grid: truncation below 1e-8
    control, motion = m(joints, K, z0)
    kw = dense_kwargs(m) | {"radius": None}
    ref_c, ref_m = dense_reference(authors_state(m), joints, K, z0, **kw)
    assert (control.double() - ref_c).abs().max() < 1e-5
    assert (motion.double() - ref_m).abs().max() < 1e-5


@pytest.mark.parametrize("occlusion", ["soft", "paper"])
def test_invalid_joint_changes_nothing(occlusion):
    joints, K, z0 = make_inputs(N=6, seed=7)
    m = tiny(occlusion, N=6)
    k = 4
    valid = torch.ones(joints.shape[:3], dtype=torch.bool)
    valid[:, :, k] = False
    other = joints.clone()
    other[:, :, k] = torch.randn(other[:, :, k].shape).abs() + 0.3  # somewhere else entirely
    nan = joints.clone()
    nan[:, :, k] = float("nan")
    outs = [m(x.double(), K.double(), z0.double(), valid) for x in (joints, other, nan)]
    for c, mo in outs[1:]:
        assert torch.equal(c, outs[0][0]) and torch.equal(mo, outs[0][1])
    # …and equals the dense equations on the five remaining joints (id embeddings of those joints).
    keep = [i for i in range(6) if i != k]
    state = authors_state(m)
    state["joint_id_embed.weight"] = state["joint_id_embed.weight"][keep]
    ref_c, ref_m = dense_reference(state, joints[:, :, keep], K, z0, **dense_kwargs(m))
    assert (outs[0][0] - ref_c).abs().max() < 1e-9 and (outs[0][1] - ref_m).abs().max() < 1e-9


def test_upstream_encodes_invalid_joints_as_zero_joints():
    """Upstream mode: a missing hand (NaN, marked invalid) is the authors' zero-filled hand; near joints project
    with the clamp on the divisor only."""
    joints, K, z0 = make_inputs(B=2, T=9, N=6, seed=21, per_frame_K=True)
    joints = joints.clone()
    joints[1, :, 2, 2] = torch.linspace(0.09, 0.18, 9)  # nearer than the 0.2 m clamp
    valid = torch.ones(joints.shape[:3], dtype=torch.bool)
    valid[0, :, 3:] = False  # "left hand" missing in every frame
    valid[1, 5:, 0] = False  # a joint lost half-way
    zero = torch.where(valid[..., None], joints, torch.zeros_like(joints))
    nan = torch.where(valid[..., None], joints, torch.full_like(joints, float("nan")))
    m = tiny("upstream", heatmap_radius=None)
    a = m(zero.double(), K.double(), z0.double())
    b = m(nan.double(), K.double(), z0.double(), valid)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    ref_c, ref_m = dense_reference(authors_state(m), zero, K, z0, **dense_kwargs(m))
    assert (a[0] - ref_c).abs().max() < 1e-9 and (a[1] - ref_m).abs().max() < 1e-9
    # Worked by hand: on a grid large enough that the real joints (centre cell (28, 20)) do not reach the corner,
    # three joints missing in every frame sit on cell (0, 0) with disparity 1.0, the largest, and occlude nobody
    # (equal depths). There the softmax gives each a third, the opacity is 3, so the motion features are
    # 3 x (z0 pooled with the normalised Gaussian around the corner), in every latent frame.
    big = make_inputs(B=1, T=9, N=6, h=40, w=56, C=4, seed=22)
    gone = torch.ones(big[0].shape[:3], dtype=torch.bool)
    gone[..., 3:] = False
    _, motion = m(torch.where(gone[..., None], big[0], float("nan")).double(), big[1].double(), big[2].double(), gone)
    ys, xs = torch.arange(40.0)[:, None], torch.arange(56.0)[None]
    H0 = torch.exp(-(xs**2 + ys**2) / 8).double()
    pooled = (H0 * big[2][0].double()).sum((-1, -2)) / (H0.sum() + 1e-6)
    for t in range(motion.shape[2]):
        torch.testing.assert_close(motion[0, :, t, 0, 0], 3 * pooled, rtol=1e-6, atol=1e-9)
    # The zero joints are not "nothing": without them the output differs (the other modes' semantics).
    soft_semantics = dense_reference(authors_state(m), nan, K, z0, valid, **(dense_kwargs(m) | {"occlusion": "soft"}))
    assert (a[1] - soft_semantics[1]).abs().max() > 1e-2


def test_authors_projection_of_zero_and_near_joints():
    # K of a 64 x 48 canvas: f = 80 px, centre (32, 24); latent K = first two rows / 8 → f 10, centre (4, 3).
    K = torch.tensor([[80.0, 0.0, 32.0], [0.0, 80.0, 24.0], [0.0, 0.0, 1.0]]).double()
    Kl = scale_intrinsics(K, 8)[None, None]
    pts = torch.tensor([[[[0.0, 0.0, 0.0], [0.02, -0.01, 0.1], [0.05, 0.02, 0.5]]]]).double()
    u, v, d = project_to_latent(pts, Kl, 0.2, 0.2, clamp="divisor")
    # zero joint: (K·0)/0.2 = 0 → cell (0, 0), disparity (1/0.2)/5 = 1.0
    # near joint: u = (10·0.02 + 4·0.1)/0.2 = 3.0, v = (10·(-0.01) + 3·0.1)/0.2 = 1.0, d = 1.0
    # far joint: u = 10·0.05/0.5 + 4 = 5.0, v = 10·0.02/0.5 + 3 = 3.4, d = 0.4
    torch.testing.assert_close(u[0, 0], torch.tensor([0.0, 3.0, 5.0]).double())
    torch.testing.assert_close(v[0, 0], torch.tensor([0.0, 1.0, 3.4]).double())
    torch.testing.assert_close(d[0, 0], torch.tensor([1.0, 1.0, 0.4]).double())
    # Clamping the point instead (the other modes) puts the near joint at (10·0.02/0.2 + 4, 10·(-0.01)/0.2 + 3).
    u, v, _ = project_to_latent(pts, Kl, 0.2, 0.2)
    torch.testing.assert_close((u[0, 0, 1], v[0, 0, 1]), (torch.tensor(5.0).double(), torch.tensor(2.5).double()))


def test_invalid_frames_ignore_coordinates():
    joints, K, z0 = make_inputs(seed=8, T=13)
    m = tiny("soft")
    valid = torch.rand(joints.shape[:3], generator=torch.Generator().manual_seed(2)) > 0.3
    moved = torch.where(valid[..., None], joints, torch.full_like(joints, float("nan")))
    a = m(joints.double(), K.double(), z0.double(), valid)
    b = m(moved.double(), K.double(), z0.double(), valid)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_element_without_valid_joints_gets_zero_control_and_warns():
    joints, K, z0 = make_inputs(B=2)
    m = tiny("soft")
    valid = torch.ones(joints.shape[:3], dtype=torch.bool)
    valid[0] = False
    joints = joints.clone()
    joints[0] = float("nan")  # never read
    with pytest.warns(UserWarning, match=r"every joint is invalid in batch element\(s\) \[0\]"):
        control, motion = m(joints.double(), K.double(), z0.double(), valid)
    assert torch.equal(control[0], torch.zeros_like(control[0])) and not torch.signbit(control[0]).any()
    assert torch.equal(motion[0], torch.zeros_like(motion[0]))
    alone = m(joints[1:].double(), K[1:].double(), z0[1:].double())
    assert torch.equal(control[1], alone[0][0]) and torch.equal(motion[1], alone[1][0])
    with pytest.warns(UserWarning, match="every joint is invalid"):
        control, motion = m(joints.double(), K.double(), z0.double(), torch.zeros_like(valid))
    assert not control.any() and not motion.any()
    control.sum().backward()  # differentiable, and nothing flows from an empty element
    assert all(p.grad is None or not p.grad.any() for p in m.parameters())


def _sparse_case(seed=12):
    """A 3-joint clip (33 frames, T' = 9) on a 12 x 20 grid with a window of r = 2: most cells inactive; joint 2
    appears in latent frame 5 and joint 1 leaves after latent frame 2, so the active cells' frame ranges differ."""
    joints, K, z0 = make_inputs(B=2, T=33, N=3, h=12, w=20, seed=seed, spread=2.0)
    valid = torch.ones(joints.shape[:3], dtype=torch.bool)
    valid[:, :17, 2] = False
    valid[:, 6:, 1] = False
    return joints.double(), K.double(), z0.double(), valid


def _dense_path(m, joints, K, z0, valid):
    structure, motion = m.control_signal(joints, K, z0, valid)
    return m.fuse(structure, motion), motion


def _grads(m, fn, *inputs):
    m.zero_grad(set_to_none=True)
    z0 = inputs[2].clone().requires_grad_()
    control, motion = fn(m, inputs[0], inputs[1], z0, *inputs[3:])
    weight = torch.linspace(-1, 1, control.numel(), dtype=control.dtype).reshape(control.shape)
    ((control * weight).sum() + (motion.sin() * 0.3).sum()).backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    return control.detach(), motion.detach(), grads | {"z0": z0.grad}


@pytest.mark.parametrize("occlusion", ["upstream", "soft", "paper"])
def test_active_cell_fusion_equals_dense_fusion_values_and_gradients(occlusion):
    joints, K, z0, valid = _sparse_case()
    m = tiny(occlusion, N=3, heatmap_radius=2)
    ours = _grads(m, lambda m, *a: m(*a), joints, K, z0, valid)
    dense = _grads(m, _dense_path, joints, K, z0, valid)
    assert (ours[0] - dense[0]).abs().max() < 1e-12 and (ours[1] - dense[1]).abs().max() < 1e-12
    assert set(ours[2]) == set(dense[2]) and ("depth_scale" in ours[2]) == (occlusion != "upstream")
    for name, g in dense[2].items():
        assert torch.allclose(ours[2][name], g, rtol=1e-10, atol=1e-12), name


def _plan_of(m, joints, K, z0, valid, tile, chunk):
    """The chunks ``propagate_and_fuse`` computes for this input, and the latent grid (T', h, w)."""
    from worldmodel.control import geometry as geo
    from worldmodel.control.fusion import _specs, tile_size

    values, gy, gx, _, _, empty = m._features(joints, K, z0, valid)
    grouped = [geo.group_latent(x.detach(), 4) for x in (values, gy, gx)]
    grid = (geo.temporal_groups(joints.shape[1], 4)[0], *z0.shape[-2:])
    return [spec.build() for spec in _specs(*grouped, empty, tile or tile_size(*grid[1:]), chunk)], grid


@pytest.mark.parametrize("tile, chunk", [(None, 64), ((2, 3), 10**6), ((3, 4), 1)])
def test_chunks_cover_every_point_that_differs_from_the_empty_scene(tile, chunk):
    """Independent check of the planning: the dense computation's outputs differ from the empty-scene value only
    at points some chunk computes, each once. With small tiles, chunks start after frame 0 and end before the last
    (joint 2 appears late, joint 1 leaves early)."""
    from worldmodel.control.fusion import empty_scene_value

    joints, K, z0, valid = _sparse_case()
    m = tiny("soft", N=3, heatmap_radius=2)
    with torch.no_grad():
        control, motion = _dense_path(m, joints, K, z0, valid)
        const = empty_scene_value(m.fuse_in.weight, m.fuse_in.bias, m.fuse_out.weight, m.fuse_out.bias,
                                  m.norm.weight, m.norm.bias, m.norm.eps)
    differs = ((control - const[:, None, None, None]).abs().amax(1) > 1e-12) | (motion.abs().amax(1) > 0)
    chunks, (frames, h, w) = _plan_of(m, joints, K, z0, valid, tile, chunk)
    covered = torch.zeros(2, frames * h * w, dtype=torch.bool)
    for ch in chunks:
        rows = (ch.rows[:, None] * ch.run + torch.arange(ch.run)).reshape(-1)  # runs → cells
        assert not covered[ch.element, rows].any()  # each point computed once
        covered[ch.element, rows] = True
    assert differs.any() and not (differs.flatten(1) & ~covered).any()
    assert not covered.all()
    if tile == (3, 4):
        assert covered.sum() < covered.numel() / 2
        assert any(not ch.start for ch in chunks) and any(ch.frames.stop % frames for ch in chunks)


@pytest.mark.parametrize("tile, chunk", [((2, 3), 3), (None, 10**6)])
def test_propagate_and_fuse_tiles_chunks_and_factor_gradients(tile, chunk):
    """Tiles that do and do not divide the grid, many chunks or one; gradients with respect to the splatted rows
    and the Gaussian factors too."""
    from worldmodel.control import geometry as geo
    from worldmodel.control.fusion import propagate_and_fuse

    joints, K, z0, valid = _sparse_case(seed=13)
    m = tiny("soft", N=3, heatmap_radius=2)
    values, gy, gx, ff, fs, empty = (x.detach() for x in m._features(joints, K, z0, valid))
    chunks = _plan_of(m, joints, K, z0, valid, tile, chunk)[0]
    assert (len(chunks) > 5) == (chunk == 3) and any(len(ch.groups) > 1 for ch in chunks)
    assert (tile is None) == all(ch.run > 1 and ch.inside is None for ch in chunks)  # 12 x 20: (12, 10) tiles

    def run(fused):
        leaves = [x.clone().requires_grad_() for x in (values, gy, gx, ff, fs)]
        v, y, x, f, s_ = leaves
        if fused:
            control, motion = propagate_and_fuse(v, y, x, f, s_, 1e-6, m.fuse_in, m.fuse_out, m.norm, 4, empty,
                                                 chunk=chunk, tile=tile)
        else:
            maps = geo.splat_separable(v, y, x, 4)
            structure, wf, ws, opacity = maps.split([16, 4, 1, 1], 1)
            motion = geo.propagate(opacity, wf, ws, f, s_, 1e-6)
            control = m.fuse(structure, motion)
        w = torch.cos(torch.arange(control.numel(), dtype=control.dtype)).reshape(control.shape)
        m.zero_grad(set_to_none=True)
        ((control * w).sum() + motion.square().sum()).backward()
        return control.detach(), motion.detach(), [t.grad for t in leaves], [p.grad.clone() for p in m.parameters()
                                                                            if p.grad is not None]

    a, b = run(True), run(False)
    assert (a[0] - b[0]).abs().max() < 1e-12 and (a[1] - b[1]).abs().max() < 1e-12
    # Rows of weight 0 (invalid joints) are multiplied by 0 upstream: their gradient is only partly formed.
    live = (values[..., -1:] > 0).expand_as(values)
    assert torch.allclose(a[2][0][live], b[2][0][live], atol=1e-11)
    for i, f in ((1, gy), (2, gx)):  # exact where the factor is non-zero (zeros are structural)
        assert torch.allclose(a[2][i][f != 0], b[2][i][f != 0], atol=1e-11)
    for i in (3, 4):
        assert torch.allclose(a[2][i], b[2][i], atol=1e-12)
    for ga, gb in zip(a[3], b[3], strict=True):
        assert torch.allclose(ga, gb, rtol=1e-10, atol=1e-12)


def test_chunks_side_by_side_on_torch_threads():
    """With n intra-op threads the chunks run on n threads, one each: same values and gradients as with one
    thread, torch's setting restored afterwards, and the caller's grad and inference modes kept."""
    joints, K, z0, valid = _sparse_case(seed=14)
    m = tiny("soft", N=3, heatmap_radius=2)
    from worldmodel.control import fusion
    from worldmodel.control import module as control_mod
    from worldmodel.control.fusion import propagate_and_fuse

    before = torch.get_num_threads()
    original = control_mod.propagate_and_fuse
    results = {}
    try:
        control_mod.propagate_and_fuse = lambda *a, **k: propagate_and_fuse(*a, **k, chunk=3, tile=(2, 3))
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results[n] = _grads(m, lambda m, *a: m(*a), joints, K, z0, valid)
            assert torch.get_num_threads() == n
            with torch.inference_mode():
                control, motion = m(joints, K, z0, valid)
            assert torch.equal(control, results[n][0]) and torch.equal(motion, results[n][1])
    finally:
        control_mod.propagate_and_fuse = original
        torch.set_num_threads(before)
    assert fusion._POOL[1] >= 2  # three threads: two workers besides the caller
    for n in (2, 3):
        assert torch.allclose(results[n][0], results[1][0], atol=1e-13)
        assert torch.allclose(results[n][1], results[1][1], atol=1e-13)
        for name, g in results[1][2].items():
            assert torch.allclose(results[n][2][name], g, rtol=1e-11, atol=1e-13), name


def test_group_cuts_are_optimal_partitions():
    """The grouping of tile-frames by joint count: exhaustive search over all cuts of short ascending lists."""
    from itertools import combinations

    from worldmodel.control.fusion import _cuts

    g = torch.Generator().manual_seed(0)
    for n in (1, 2, 5, 9):
        counts = sorted(torch.randint(0, 40, (n,), generator=g).tolist())
        cuts = _cuts(counts, most=3)
        assert cuts[0] == 0 and cuts[-1] == n and len(cuts) <= 4 and cuts == sorted(set(cuts))

        def cost(cs, counts=counts):
            return sum((z - a) * counts[z - 1] for a, z in zip(cs[:-1], cs[1:], strict=True))

        best = min(cost([0, *inner, n]) for r in range(3) for inner in combinations(range(1, n), r))
        assert cost(cuts) == best


def test_tile_size_divides_the_grid_when_it_can():
    from worldmodel.control.fusion import tile_size

    assert tile_size(60, 104) == (12, 8) and tile_size(64, 64) == (8, 8) and tile_size(90, 160) == (10, 8)
    th, tw = tile_size(7, 11)  # primes: no dividing tile, 8 x 8 with edge tiles reaching beyond the grid
    assert (th, tw) == (8, 8)


def test_soft_visibility_approaches_hard_mask():
    # Joints placed so that several pairs overlap within 1 cell in the source frame, at distinct depths.
    joints, K, z0 = make_inputs(seed=11, N=8, spread=0.5)
    joints = with_overlaps(joints)
    Kl = scale_intrinsics(K[:, None].double(), 8).expand(-1, joints.shape[1], -1, -1)
    u, v, d = project_to_latent(joints.double(), Kl)
    vis = hard_visibility(u[:, 0], v[:, 0], d[:, 0], torch.ones(2, 8, dtype=torch.bool))
    assert (vis == 0).sum() >= 2 and (vis == 1).sum() >= 4  # both cases occur
    hard = tiny("upstream", N=8)
    soft = tiny("soft", N=8, coord_fusion="mean", soft_gamma=1e7, soft_tau=1e-4)
    soft.load_state_dict(hard.state_dict())
    with torch.no_grad():
        soft.depth_scale.copy_(hard.depth_scale)
    a = hard(joints.double(), K.double(), z0.double())
    b = soft(joints.double(), K.double(), z0.double())
    assert (a[0] - b[0]).abs().max() < 1e-6 and (a[1] - b[1]).abs().max() < 1e-6
    mild = tiny("soft", N=8, coord_fusion="mean", soft_gamma=10.0, soft_tau=1.0)
    mild.load_state_dict(soft.state_dict())
    assert (mild(joints.double(), K.double(), z0.double())[1] - a[1]).abs().max() > 1e-3  # the limit is not trivial


@pytest.mark.parametrize("occlusion", ["upstream", "soft"])
def test_gradient_reaches_every_trainable_parameter(occlusion):
    joints, K, z0 = make_inputs(seed=2)
    m = tiny(occlusion)
    control, motion = m(joints.double(), K.double(), z0.double())
    (control.square().sum() + motion.square().sum()).backward()
    for name, p in m.named_parameters():
        if name == "depth_scale" and occlusion == "upstream":
            assert not p.requires_grad
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_save_pretrained_round_trip(tmp_path):
    joints, K, z0 = make_inputs()
    m = tiny("soft", soft_gamma=33.0).float()
    with torch.no_grad():
        m.depth_scale.fill_(4.2)
    m.save_pretrained(tmp_path / "ctrl")
    assert (tmp_path / "ctrl" / "diffusion_pytorch_model.safetensors").exists()
    back = HandControlModule.from_pretrained(tmp_path / "ctrl")
    assert back.config.soft_gamma == 33.0 and back.coord_fusion == "concat"
    a, b = m(joints, K, z0), back(joints, K, z0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def random_authors_state(N=6, E=16, C=4, out=8, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    half = E // 2
    shapes = {
        "coord_encoder.0.weight": (half, half), "coord_encoder.0.bias": (half,),
        "coord_encoder.2.weight": (half, half), "coord_encoder.2.bias": (half,),
        "joint_id_embed.weight": (N, half),
        "causal_conv1.weight": (E, E + C, 3, 1, 1), "causal_conv1.bias": (E,),
        "causal_conv2.weight": (out, E, 3, 1, 1), "causal_conv2.bias": (out,),
        "cross_norm.weight": (out,), "cross_norm.bias": (out,),
    }
    return {f"state.{k}": 0.3 * torch.randn(s, generator=g) + (1.0 if k == "cross_norm.weight" else 0.0)
            for k, s in shapes.items()}


def test_from_upstream_maps_names_with_and_without_prefix():
    state = random_authors_state()
    cfg = {"num_joints": 6, "embed_dim": 16, "vae_channels": 4, "output_dim": 8, "downsample_rate": 8,
           "occlusion_dist_threshold": 1.0, "canvas_height": 80, "canvas_width": 112, "note": "x"}
    a = HandControlModule.from_upstream(state, **cfg)
    b = HandControlModule.from_upstream({k.removeprefix("state."): v for k, v in state.items()}, **cfg)
    assert a.config.occlusion == "upstream" and a.coord_fusion == "mean" and a.config.latent_channels == 4
    for theirs, ours in UPSTREAM_NAMES.items():
        assert torch.equal(a.state_dict()[ours], state[f"state.{theirs}"])
        assert torch.equal(b.state_dict()[ours], state[f"state.{theirs}"])
    with pytest.raises(ValueError, match="unexpected keys"):
        HandControlModule.from_upstream({**state, "state.extra": torch.zeros(1)}, **cfg)


def test_upstream_regression_figures():
    """Fixed figures of upstream mode on a seeded input, derived once (float32, default radius)."""
    state = random_authors_state(seed=1)
    m = HandControlModule.from_upstream(state, num_joints=6, embed_dim=16, latent_channels=4, output_dim=8)
    joints, K, z0 = make_inputs(seed=4)
    with torch.no_grad():
        control, motion = m(joints, K, z0)
    figures = [control.sum().item(), control[1, 3, 2, 4, 6].item(), motion.abs().sum().item(),
               motion[0, 2, 1, 5, 7].item()]
    assert figures == pytest.approx(REGRESSION, rel=1e-5, abs=1e-5)
    ref_c, ref_m = dense_reference(state, joints, K, z0)
    assert (control.double() - ref_c).abs().max() < 1e-5 and (motion.double() - ref_m).abs().max() < 1e-5


REGRESSION = [-1659.964111328125, 1.987999439239502, 454.32037353515625, 0.03311574086546898]


def test_check_reference_and_cli(tmp_path):
    from dexworld.commands import check_upstream
    from worldmodel.control.upstream import check_reference

    state = random_authors_state(seed=2)
    cfg = {"num_joints": 6, "embed_dim": 16, "vae_channels": 4, "output_dim": 8}
    joints, K, z0 = make_inputs(seed=6)
    out, occ = dense_reference(state, joints, K, z0)
    tensors = {**state, "joints": joints, "K": K, "z0": z0, "out": out.float(), "occ_latent": occ.float()}
    save_file(tensors, tmp_path / "ref.safetensors", metadata={"config": json.dumps(cfg)})
    res = check_reference(tmp_path / "ref.safetensors")
    assert res["passed"] and res["out"] < 1e-5 and res["occ_latent"] < 1e-5
    tensors["occ_latent"] = tensors["occ_latent"] + 1e-3
    save_file(tensors, tmp_path / "bad.safetensors", metadata={"config": json.dumps(cfg)})
    parser = argparse.ArgumentParser()
    check_upstream.register(parser.add_subparsers())
    args = parser.parse_args(["check-upstream", str(tmp_path / "ref.safetensors")])
    assert args.func(args) == 0
    args = parser.parse_args(["check-upstream", str(tmp_path / "bad.safetensors")])
    assert args.func(args) == 1
    # A file with a `present` mask (a zero-filled hand): checked as given and with the missing joints NaN + invalid.
    present = torch.ones(joints.shape[:3], dtype=torch.bool)
    present[0, :, 3:] = False
    zeroed = torch.where(present[..., None], joints, torch.zeros_like(joints))
    out, occ = dense_reference(state, zeroed, K, z0)
    tensors = {**state, "joints": zeroed, "K": K, "z0": z0, "out": out.float(), "occ_latent": occ.float(),
               "present": present}
    save_file(tensors, tmp_path / "missing.safetensors", metadata={"config": json.dumps(cfg)})
    res = check_reference(tmp_path / "missing.safetensors")
    assert res["passed"] and set(res["runs"]) == {"as given", "missing as NaN, marked invalid"}
    assert max(max(d.values()) for d in res["runs"].values()) < 1e-5


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda j, K, z, v: (j[..., :2], K, z, v), "joints must be a tensor"),
        (lambda j, K, z, v: (j[:, :8], K, z, v[:, :8]), "T = 4k\\+1"),
        (lambda j, K, z, v: (j[:, :, :5], K, z, v[:, :, :5]), "num_joints"),
        (lambda j, K, z, v: (j, K, z, v[:, :, :5]), "valid must be"),
        (lambda j, K, z, v: (j, K[:1], z, v), "K must be"),
        (lambda j, K, z, v: (j, K[:, None].repeat(1, 5, 1, 1), z, v), "K must be"),
        (lambda j, K, z, v: (j, K * torch.tensor([1.0, 1.0, 0.0])[:, None], z, v), "singular"),
        (lambda j, K, z, v: (j, K * float("nan"), z, v), "NaN"),
        (lambda j, K, z, v: (j, K, z[:1], v), "z0 must be"),
        (lambda j, K, z, v: (j, K, z[:, :3], v), "latent_channels"),
        (lambda j, K, z, v: (j.index_put((torch.tensor(0), torch.tensor(2)), torch.tensor(float("nan"))), K, z, v),
         "marked valid"),
    ],
)
def test_clear_errors(change, match):
    joints, K, z0 = make_inputs()
    valid = torch.ones(joints.shape[:3], dtype=torch.bool)
    m = tiny("upstream").float()
    with pytest.raises(ValueError, match=match):
        m(*change(joints, K, z0, valid))


def test_concurrent_calls_leave_torch_thread_setting_alone():
    """Two Python threads running the module at once with 2 torch threads and many chunks (so the chunks go side by
    side): one call takes the thread pool, the other runs on its own; same outputs, torch's setting restored."""
    import threading

    joints, K, z0, valid = _sparse_case(seed=14)
    m = tiny("soft", N=3, heatmap_radius=2)
    from worldmodel.control import module as control_mod
    from worldmodel.control.fusion import propagate_and_fuse

    before = torch.get_num_threads()
    original = control_mod.propagate_and_fuse
    try:
        control_mod.propagate_and_fuse = lambda *a, **k: propagate_and_fuse(*a, **k, chunk=3, tile=(2, 3))
        torch.set_num_threads(2)
        with torch.no_grad():
            ref = m(joints, K, z0, valid)
            out: list = [None] * 4

            def run(i):
                out[i] = m(joints, K, z0, valid)

            threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert torch.get_num_threads() == 2
    finally:
        control_mod.propagate_and_fuse = original
        torch.set_num_threads(before)
    for o in out:  # a call that ran alone used torch's 2 threads inside each chunk: equal up to reduction order
        torch.testing.assert_close(o[0], ref[0], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(o[1], ref[1], rtol=1e-6, atol=1e-7)
