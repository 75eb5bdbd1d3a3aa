"""Evaluation metrics against hand computations and known transforms."""

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.transform import Rotation

from worldmodel.evaluation import metrics


def test_psnr_matches_hand_computation():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-10, 11, a.shape), 0, 255).astype(np.uint8)
    mse = ((a / 255.0 - b / 255.0) ** 2).mean()
    assert metrics.psnr(a, b) == pytest.approx(10 * np.log10(1.0 / mse), rel=1e-5)


def test_color_cast_separates_a_uniform_tint_from_the_rest_of_the_error():
    rng = np.random.default_rng(3)
    ref = rng.integers(60, 190, (2, 16, 16, 3)).astype(np.uint8)
    noise = rng.integers(-5, 6, ref.shape)
    tint = np.array([[12, -29, 23], [0, 0, 0]])  # frame 0 tinted by (+12, −29, +23) levels, frame 1 not
    video = (ref.astype(int) + noise + tint[:, None, None, :]).astype(np.uint8)  # no clipping: 60−34 … 189+28
    out = metrics.color_cast(video, ref)
    offset = (video.astype(float) - ref).mean((1, 2))  # (T, 3) by hand: the tint plus the noise's own mean
    np.testing.assert_allclose(out["cast"], np.abs(offset).max(1), rtol=1e-6)
    assert abs(out["cast"][0] - 29) < 1 and out["cast"][1] < 1
    rest = ((video.astype(float) - ref - offset[:, None, None, :]) / 255.0) ** 2  # the error left without the mean
    np.testing.assert_allclose(out["psnr_without_cast"], -10 * np.log10(rest.mean((1, 2, 3))), rtol=1e-6)
    # the tinted frame gains a lot from removing its cast; the untinted one almost nothing
    plain = [metrics.psnr(video[t:t + 1], ref[t:t + 1]) for t in range(2)]
    assert out["psnr_without_cast"][0] - plain[0] > 10 and abs(out["psnr_without_cast"][1] - plain[1]) < 0.1


def test_ssim_identity_and_degradation():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    noisy = np.clip(a.astype(int) + rng.integers(-60, 61, a.shape), 0, 255).astype(np.uint8)
    assert metrics.ssim(noisy, a) < 0.95


def test_video_shape_errors():
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr(np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 9, 3)))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        metrics.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))


def test_frechet_distance_against_scipy_sqrtm():
    rng = np.random.default_rng(2)
    f1 = rng.normal(size=(200, 6))
    f2 = rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6)) + 0.5
    mu1, s1 = metrics.feature_statistics(f1)
    mu2, s2 = metrics.feature_statistics(f2)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    assert metrics.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


def test_fid_without_weights_is_a_clear_error():
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="Inception-v3 weights"):
        metrics.fid(frames, frames, None)
    with pytest.raises(ValueError, match="I3D"):
        metrics.fvd(frames[None], frames[None], None)


def test_fid_with_weights_by_path(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=True, init_weights=True)
    path = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (6, 48, 48, 3), dtype=np.uint8)
    different = metrics.fid(real, 255 - real, path)
    assert different > 0
    assert abs(metrics.fid(real, real, path)) < 1e-6 * different


def test_procrustes_recovers_similarity_transform():
    rng = np.random.default_rng(3)
    target = rng.normal(size=(4, 21, 3))
    R = Rotation.random(4, random_state=3).as_matrix()
    pred = 1.7 * np.einsum("bij,bnj->bni", R, target) + rng.normal(size=(4, 1, 3))
    aligned = metrics.procrustes_align(pred, target)
    np.testing.assert_allclose(aligned, target, atol=1e-9)
    assert metrics.pa_mpjpe(pred, target) == pytest.approx(0.0, abs=1e-9)
    assert metrics.mpjpe(pred, target) > 0.1


def test_procrustes_does_not_reflect():
    rng = np.random.default_rng(4)
    target = rng.normal(size=(21, 3))
    mirrored = target * np.array([-1.0, 1.0, 1.0])
    # A reflection is not a rotation: the aligned error must stay positive.
    assert metrics.pa_mpjpe(mirrored, target) > 1e-3


def test_mpjpe_with_validity_and_pck():
    pred = np.zeros((2, 3, 3))
    target = np.zeros((2, 3, 3))
    target[0, 0] = [3.0, 4.0, 0.0]
    valid = np.array([[True, True, True], [True, False, True]])
    assert metrics.mpjpe(pred, target, valid) == pytest.approx(5.0 / 5)
    uv = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    assert metrics.pck(uv, np.zeros_like(uv), threshold=5.0) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no valid"):
        metrics.mpjpe(pred, target, np.zeros((2, 3), bool))
