"""Evaluation metrics for generated videos and hand poses.

PSNR/SSIM come from torchmetrics. FID/FVD take their feature networks by path (nothing is downloaded) and share one
Fréchet distance; torchmetrics' FID metric is not used because it wraps torch-fidelity's Inception, which loads
weights with pickle (``weights_only=False``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def _video_tensor(video: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """(T, H, W, 3) uint8 or float in [0, 1] → float (T, 3, H, W) in [0, 1]."""
    v = torch.as_tensor(np.asarray(video) if not isinstance(video, torch.Tensor) else video)
    if v.ndim != 4 or v.shape[-1] != 3:
        raise ValueError(f"{name} must be a video of shape (T, H, W, 3), got {tuple(v.shape)}")
    v = v.float() / 255.0 if v.dtype == torch.uint8 else v.float()
    return v.permute(0, 3, 1, 2)


def psnr(video: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB over all frames (data range 1 after scaling uint8 by 1/255)."""
    a, b = _video_tensor(video, "video"), _video_tensor(reference, "reference")
    if a.shape != b.shape:
        raise ValueError(f"video {tuple(a.shape)} and reference {tuple(b.shape)} differ in shape")
    return float(peak_signal_noise_ratio(a, b, data_range=1.0))


def color_cast(video: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor) -> dict:
    """How much of a video's error is a colour cast: each frame's mean error per channel (video − reference).

    Returns ``cast`` (T,): the largest channel's absolute mean error of each frame, in 0–255 levels, and
    ``psnr_without_cast`` (T,): each frame's PSNR once its per-channel mean error is subtracted. A decoder whose
    latents lost the scene's absolute colour shows a large cast and a large gap between the two PSNRs.
    """
    a, b = _video_tensor(video, "video").double(), _video_tensor(reference, "reference").double()
    if a.shape != b.shape:
        raise ValueError(f"video {tuple(a.shape)} and reference {tuple(b.shape)} differ in shape")
    err = a - b  # (T, 3, H, W)
    offset = err.mean((2, 3), keepdim=True)
    rest = (err - offset).square().mean((1, 2, 3)).clamp_min(1e-12)
    return {"cast": (offset.abs().amax((1, 2, 3)) * 255).numpy(), "psnr_without_cast": (-10 * rest.log10()).numpy()}


def ssim(video: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor) -> float:
    """Mean structural similarity over frames (Gaussian window 11, σ 1.5)."""
    a, b = _video_tensor(video, "video"), _video_tensor(reference, "reference")
    if a.shape != b.shape:
        raise ValueError(f"video {tuple(a.shape)} and reference {tuple(b.shape)} differ in shape")
    kernel = min(11, (min(a.shape[-2:]) // 2) * 2 - 1)
    return float(structural_similarity_index_measure(a, b, data_range=1.0, kernel_size=kernel))


# ----------------------------------------------------------------------------------------------- Fréchet
def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    f = np.asarray(torch.as_tensor(features).double())
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape (N, D) with N >= 2, got {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between Gaussians: ‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½).

    tr((Σ1 Σ2)^½) is the sum of square roots of the eigenvalues of Σ1 Σ2 (real and ≥ 0 for PSD Σ), which avoids a
    matrix square root. torchmetrics computes the same inside its FID metric but keeps that function private.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise ValueError(f"shapes must be mu (D,), sigma (D, D) for both; got {mu1.shape}, {s1.shape}, "
                         f"{mu2.shape}, {s2.shape}")
    eig = np.linalg.eigvals(s1 @ s2)
    tr_sqrt = np.sqrt(np.clip(eig.real, 0.0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)


def _load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"feature-network weights not found at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


class InceptionFeatures(torch.nn.Module):
    """torchvision Inception-v3 pool features (N, 2048) from weights given by path (safetensors or a state dict).

    FID values are comparable only between runs that use the same weights file.
    """

    def __init__(self, weights: str | os.PathLike):
        super().__init__()
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits=True, init_weights=False)
        missing, _ = net.load_state_dict(_load_state_dict(weights), strict=False)
        if any(not k.startswith("AuxLogits") for k in missing):
            raise ValueError(f"{weights} is not a torchvision Inception-v3 state dict (missing {missing[:3]} …)")
        net.fc = torch.nn.Identity()
        self.net = net.eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 3, H, W) uint8 → features (N, 2048)."""
        x = images.float() / 255.0
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        mean = torch.tensor([0.485, 0.456, 0.406], device=x.device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=x.device).view(1, 3, 1, 1)
        return self.net((x - mean) / std)


def fid(real_frames: np.ndarray, fake_frames: np.ndarray, weights: str | os.PathLike | None,
        batch_size: int = 32) -> float:
    """FID between two sets of frames (N, H, W, 3) uint8, with an Inception-v3 given by path."""
    if weights is None:
        raise ValueError("FID needs Inception-v3 weights: pass --inception-weights PATH (torchvision layout, "
                         ".safetensors or a state dict); dexworld downloads nothing")
    net = InceptionFeatures(weights)

    def features(frames: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(frames)).permute(0, 3, 1, 2)
        return torch.cat([net(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).double().numpy()

    return frechet_distance(*feature_statistics(features(real_frames)), *feature_statistics(features(fake_frames)))


def fvd(real_videos: np.ndarray, fake_videos: np.ndarray, i3d_torchscript: str | os.PathLike | None) -> float:
    """FVD between video sets (N, T, H, W, 3) uint8 with the I3D TorchScript detector given by path.

    The detector is the TorchScript I3D commonly used for FVD (input (N, 3, T, 224, 224) in [-1, 1], called with
    ``rescale=False, resize=False, return_features=True``). TorchScript archives contain code: load only files
    you trust.
    """
    if i3d_torchscript is None:
        raise ValueError("FVD needs the I3D TorchScript detector: pass --i3d PATH; dexworld downloads nothing")
    path = Path(i3d_torchscript)
    if not path.exists():
        raise FileNotFoundError(f"I3D detector not found at {path}")
    detector = torch.jit.load(str(path), map_location="cpu").eval()

    def features(videos: np.ndarray) -> np.ndarray:
        v = torch.as_tensor(np.asarray(videos)).float().permute(0, 4, 1, 2, 3)  # N, 3, T, H, W
        n, c, t, h, w = v.shape
        v = torch.nn.functional.interpolate(v.transpose(1, 2).reshape(n * t, c, h, w), size=(224, 224),
                                            mode="bilinear", align_corners=False)
        v = v.reshape(n, t, c, 224, 224).transpose(1, 2) / 127.5 - 1.0
        with torch.no_grad():
            return detector(v, rescale=False, resize=False, return_features=True).numpy()

    return frechet_distance(*feature_statistics(features(real_videos)), *feature_statistics(features(fake_videos)))


# ----------------------------------------------------------------------------------------------- poses
def procrustes_align(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Similarity-align pred (..., N, 3) to target (..., N, 3) (scale, rotation, translation; Umeyama)."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape or pred.shape[-1] != 3:
        raise ValueError(f"pred and target must both be (..., N, 3); got {pred.shape} and {target.shape}")
    mp, mt = pred.mean(-2, keepdims=True), target.mean(-2, keepdims=True)
    p, t = pred - mp, target - mt
    cov = np.swapaxes(t, -1, -2) @ p  # (..., 3, 3)
    U, S, Vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.ones(S.shape)
    D[..., -1] = d
    R = (U * D[..., None, :]) @ Vt
    scale = (S * D).sum(-1) / np.maximum((p**2).sum((-1, -2)), 1e-12)
    return scale[..., None, None] * np.einsum("...ij,...nj->...ni", R, p) + mt


def mpjpe(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None, align: bool = False) -> float:
    """Mean per-joint position error (same unit as the input); ``align=True`` gives PA-MPJPE."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if align:
        pred = procrustes_align(pred, target)
    err = np.linalg.norm(pred - target, axis=-1)
    if valid is not None:
        valid = np.broadcast_to(np.asarray(valid, bool), err.shape)
        if not valid.any():
            raise ValueError("no valid joints to compare")
        return float(err[valid].mean())
    return float(err.mean())


def pa_mpjpe(pred: np.ndarray, target: np.ndarray) -> float:
    """Procrustes-aligned mean per-joint position error."""
    return mpjpe(pred, target, align=True)


def mpvpe(pred_vertices: np.ndarray, target_vertices: np.ndarray, align: bool = False) -> float:
    """Mean per-vertex position error of meshes (..., V, 3); ``align=True`` for the Procrustes-aligned variant."""
    return mpjpe(pred_vertices, target_vertices, align=align)


def pck(pred_uv: np.ndarray, target_uv: np.ndarray, threshold: float, valid: np.ndarray | None = None) -> float:
    """Fraction of 2D keypoints within ``threshold`` pixels of the target (PCK@threshold)."""
    err = np.linalg.norm(np.asarray(pred_uv, np.float64) - np.asarray(target_uv, np.float64), axis=-1)
    if valid is not None:
        err = err[np.broadcast_to(np.asarray(valid, bool), err.shape)]
    if err.size == 0:
        raise ValueError("no valid keypoints to compare")
    return float((err <= threshold).mean())
