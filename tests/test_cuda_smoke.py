"""CUDA smoke test of the whole path at tiny size: sampling on the GPU agrees with the CPU, a training step runs.

Skipped where no CUDA device is visible (CI and the development machines); run on a GPU machine with
``pytest tests/test_cuda_smoke.py``. The full-scale GPU figures come from ``benchmarks/gpu_check.py``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from _wm_helpers import SMALL_TINY, make_frames, make_joints, trained_tiny_pipeline

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")


def _pipe():
    return trained_tiny_pipeline()


def test_sampling_on_cuda_matches_cpu():
    image, joints = make_frames(1)[0], make_joints(5)
    cpu = _pipe()
    gpu = copy.deepcopy(cpu).to("cuda")  # the same weights (peft draws LoRA A from the global RNG)
    ref = cpu(image, joints, prompt="a hand", num_inference_steps=3, seed=0, progress=False).frames
    out = gpu(image, joints, prompt="a hand", num_inference_steps=3, seed=0, progress=False).frames
    assert out.shape == ref.shape == (5, 64, 64, 3)
    assert np.isfinite(out).all()
    # Same noise (CPU generator), same weights: only kernel rounding differs (TF32 off by default for float32).
    assert np.abs(out - ref).mean() < 2e-3


def test_training_step_on_cuda_moves_the_control_module():
    from worldmodel.wan.adapter import HandControlledWan, set_trainable

    pipe = _pipe().to("cuda")
    model = HandControlledWan(pipe.transformer, pipe.control).cuda()
    params = set_trainable(model.transformer, model.control)
    opt = torch.optim.AdamW(params, lr=1e-3)
    j = make_joints(5)
    joints = torch.from_numpy(j.positions).float()[None].cuda()
    K = torch.from_numpy(j.frame_K()).float()[None].cuda()
    cond = torch.randn(1, 20, 2, 8, 8, device="cuda")
    noisy, target = torch.randn(1, 16, 2, 8, 8, device="cuda"), torch.randn(1, 16, 2, 8, 8, device="cuda")
    before = [p.detach().clone() for p in model.control.parameters()]
    control, cond = model.control_maps(joints, K, cond)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        pred = model(noisy, torch.tensor([500.0], device="cuda"), cond, control,
                     torch.randn(1, 512, SMALL_TINY["text_dim"], device="cuda"),
                     torch.randn(1, 5, SMALL_TINY["clip_hidden"], device="cuda"))
    loss = torch.nn.functional.mse_loss(pred.float(), target)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.control.parameters(), strict=True))
