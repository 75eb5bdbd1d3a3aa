"""evaluate(): metrics against hand-computed values; control_sensitivity on fake generators; the CLI."""

from __future__ import annotations

import json
import math
import os
import types

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from embodiments import get  # noqa: E402
from embodiments.layout import FINGERTIPS, WRIST  # noqa: E402
from embodiments.sparse import SparseJoints  # noqa: E402
from worldmodel.evaluation.report import control_sensitivity, evaluate, hand_region, move_fingertips, shift_hand

EMB = "inspire_right"
K128 = np.array([[80.0, 0.0, 64.0], [0.0, 80.0, 64.0], [0.0, 0.0, 1.0]])
T = 4


def make_joints(K=K128, seed=0) -> SparseJoints:
    """Joints of the hand's slots in a 10 cm box ~35 cm in front of the camera (all inside a 128² image)."""
    rng = np.random.default_rng(seed)
    pos = np.zeros((T, 42, 3))
    pos[..., :2] = rng.uniform(-0.05, 0.05, (T, 42, 2))
    pos[..., 2] = rng.uniform(0.3, 0.4, (T, 42))
    return SparseJoints(pos, valid=np.broadcast_to(get(EMB).slot_mask, (T, 42)).copy(), embodiment=EMB, K=K)


def by_hand_uv(joints: SparseJoints, K) -> np.ndarray:
    p = joints.positions.astype(np.float64)
    p[..., 2] = np.where(joints.valid, p[..., 2], 1.0)  # invalid slots hold zeros
    return np.stack([K[0, 0] * p[..., 0] / p[..., 2] + K[0, 2], K[1, 1] * p[..., 1] / p[..., 2] + K[1, 2]], -1)


def smooth_frames(seed=0, size=128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, (T, size // 8, size // 8, 3)).astype(np.uint8)
    return np.repeat(np.repeat(base, 8, 1), 8, 2)


class OffsetProbe:
    """Stands in for a keypoint probe: answers the true projections plus known offsets per frame."""

    def __init__(self, K, offsets):
        self.K, self.offsets = K, np.asarray(offsets, np.float64)
        self.config = types.SimpleNamespace(embodiments=[EMB])

    def block_for(self, embodiment):
        if embodiment != EMB:
            raise ValueError(f"this probe was trained for {EMB}, not {embodiment!r}")
        return EMB, False

    def predict(self, frames, embodiment):
        self.seen_shape = frames.shape
        uv = by_hand_uv(self.joints, self.K) + self.offsets[:, None, :]
        return uv, np.ones(uv.shape[:2])

    def heldout_for(self, embodiment, size, two_hands=False):
        return {"size": 64, "mean_px": 1.25, "pck@5px": 0.97}


# ----------------------------------------------------------------------------------------------- evaluate
def test_psnr_ssim_and_probe_metrics_by_hand():
    ref_frames = smooth_frames()
    joints = make_joints()
    video = np.clip(ref_frames.astype(int) + 10, 0, 255).astype(np.uint8)  # every pixel +10 grey levels
    probe = OffsetProbe(K128, [[0, 4], [0, 8], [0, 4], [0, 8]])
    probe.joints = joints
    rep = evaluate(video, types.SimpleNamespace(frames=ref_frames, joints=joints), probe=probe)
    assert rep.psnr == pytest.approx(20 * math.log10(255 / 10), abs=1e-3)
    assert rep.frame0_psnr == pytest.approx(20 * math.log10(255 / 10), abs=1e-3)
    assert rep.hand_psnr == pytest.approx(20 * math.log10(255 / 10), abs=1e-3)  # +10 inside the hand region too
    assert 0.9 < rep.ssim < 1.0
    k = rep.keypoints
    n = int(get(EMB).slot_mask.sum()) * T
    assert k["n_joints"] == n
    assert k["mean_px"] == pytest.approx(6.0, abs=1e-4) and k["median_px"] == pytest.approx(6.0, abs=1e-4)
    assert k["pck@5px"] == pytest.approx(0.5)
    assert k["probe_heldout"]["mean_px"] == 1.25
    d = rep.to_dict()
    json.dumps(d)
    assert d["keypoints"]["pck@5px"] == pytest.approx(0.5) and d["frame_size"] == [128, 128]
    assert evaluate(ref_frames, types.SimpleNamespace(frames=ref_frames, joints=joints)).ssim == pytest.approx(1.0)


def test_identical_video_and_exclude_first():
    ref = smooth_frames()
    video = ref.copy()
    video[0] = 255 - video[0]  # only the first frame differs
    r = types.SimpleNamespace(frames=ref, joints=make_joints())
    rep = evaluate(video, r, exclude_first=True)
    assert math.isinf(rep.psnr) and rep.to_dict()["psnr"] is None and rep.exclude_first
    assert math.isfinite(evaluate(video, r).psnr)
    # frame 0 is scored on its own (the given image as it comes back): 255 − x against x
    mse0 = ((255.0 - 2 * ref[0].astype(float)) ** 2).mean() / 255**2
    assert rep.frame0_psnr == pytest.approx(-10 * math.log10(mse0), abs=1e-3)
    assert math.isinf(rep.hand_psnr)


def test_hand_psnr_sees_only_the_hand_region():
    ref = smooth_frames()
    joints = make_joints()
    mask = hand_region(joints, (128, 128), 6.0)
    video = ref.astype(float)
    video[~mask] = 255 - video[~mask]  # wrong everywhere except near the hand
    rep = evaluate(video.astype(np.uint8), types.SimpleNamespace(frames=ref, joints=joints))
    assert math.isinf(rep.hand_psnr) and rep.psnr < 10
    video = ref.astype(float)
    video[mask] += 20  # wrong only near the hand: 20 grey levels there
    rep = evaluate(video.astype(np.uint8), types.SimpleNamespace(frames=ref, joints=joints))
    assert rep.hand_psnr == pytest.approx(20 * math.log10(255 / 20), abs=1e-3)
    assert rep.psnr > rep.hand_psnr


def test_smaller_video_resizes_reference_and_scales_K():
    ref = smooth_frames()
    joints = make_joints()
    video = ref[:, ::2, ::2].copy()  # 64×64
    K64 = K128.copy()
    K64[:2] *= 0.5  # by hand: pixel-edge convention scales fx, cx alike
    probe = OffsetProbe(K64, np.zeros((T, 2)))
    probe.joints = joints
    rep = evaluate(video, types.SimpleNamespace(frames=ref, joints=joints), probe=probe)
    assert rep.reference_resized and rep.frame_size == (64, 64) and probe.seen_shape == (T, 64, 64, 3)
    assert rep.keypoints["mean_px"] == pytest.approx(0.0, abs=1e-4)
    assert rep.keypoints["pck@5px"] == 1.0


def test_evaluate_clear_errors():
    ref = smooth_frames()
    joints = make_joints()
    r = types.SimpleNamespace(frames=ref, joints=joints)
    with pytest.raises(ValueError, match="frames but the reference"):
        evaluate(ref[:3], r)
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        evaluate(ref[..., 0], r)
    with pytest.raises(ValueError, match="must have .frames"):
        evaluate(ref, ref)
    with pytest.raises(ValueError, match="intrinsics K"):
        evaluate(ref, types.SimpleNamespace(frames=ref, joints=joints.replace(K=None)))
    from worldmodel.evaluation.probe import KeypointProbe

    other = KeypointProbe(embodiments=["dex3_right"], size=32, widths=(4, 4, 4, 4)).eval()
    with pytest.raises(ValueError, match="trained for dex3_right"):
        evaluate(ref, r, probe=other)


# ----------------------------------------------------------------------------------------------- perturbations
def test_shift_and_fingertips_by_hand():
    j = make_joints()
    s = shift_hand(j, [0.03, 0.0, 0.0])
    m = j.valid
    np.testing.assert_allclose(s.positions[m] - j.positions[m], np.broadcast_to([0.03, 0, 0], (m.sum(), 3)), atol=1e-6)
    np.testing.assert_array_equal(s.positions[~m], 0)
    f = move_fingertips(j, 0.02)
    w = 21 + WRIST
    for tip in (21 + t for t in FINGERTIPS):
        before = np.linalg.norm(j.positions[:, tip] - j.positions[:, w], axis=-1)
        after = np.linalg.norm(f.positions[:, tip] - f.positions[:, w], axis=-1)
        np.testing.assert_allclose(after, np.maximum(before - 0.02, 0), atol=1e-5)
    with pytest.raises(ValueError, match="offset must have shape"):
        shift_hand(j, [1.0, 2.0])


def test_hand_region_matches_direct_count():
    pos = np.zeros((1, 42, 3))
    pos[0, 21] = [0.0, 0.0, 1.0]  # projects to (64, 64)
    pos[0, 22] = [0.4, 0.0, 1.0]  # (96, 64): the thumb CMC, child of the wrist
    valid = np.zeros((1, 42), bool)
    valid[0, 21] = True
    j = SparseJoints(pos, valid=valid, K=K128)
    reg = hand_region(j, (128, 128), radius=5.0)
    ys, xs = np.mgrid[0:128, 0:128]
    direct = (xs + 0.5 - 64) ** 2 + (ys + 0.5 - 64) ** 2 <= 25.0
    np.testing.assert_array_equal(reg[0], direct)
    valid[0, 22] = True
    both = SparseJoints(pos, valid=valid, K=K128)
    reg2 = hand_region(both, (128, 128), radius=5.0)
    assert reg2[0, 64, 80] and not reg[0, 64, 80]  # a pixel on the bone between the two joints
    assert not hand_region(both, (128, 128), radius=5.0, bones=False)[0, 64, 80]


def painter(size=128):
    """A fake generator that draws a disc at each projected valid joint on a fixed background."""
    bg = smooth_frames(seed=7, size=size)

    def fn(joints: SparseJoints) -> np.ndarray:
        uv = by_hand_uv(joints, joints.K)
        out = bg.copy()
        ys, xs = np.mgrid[0:size, 0:size]
        for t in range(len(joints)):
            for u, v in uv[t][joints.valid[t]]:
                out[t][(xs + 0.5 - u) ** 2 + (ys + 0.5 - v) ** 2 <= 4.0] = (255, 0, 0)
        return out

    return fn


def test_sensitivity_of_a_generator_that_follows_the_joints():
    res = control_sensitivity(painter(), make_joints(), radius=6.0)
    assert set(res) == {"shift_3cm", "fingertips_2cm"}
    for s in res.values():
        assert s.outside == 0.0 and s.inside > 0.01
        assert s.ratio > 100
        assert 0 < s.region_fraction < 0.6


def test_sensitivity_of_generators_that_ignore_the_joints():
    frames = smooth_frames(seed=3)
    res = control_sensitivity(lambda j: frames, make_joints())
    for s in res.values():
        assert s.inside == 0.0 and s.outside == 0.0 and s.ratio == 1.0
    rng = np.random.default_rng(0)  # a fresh noise video each call: changes everywhere alike
    noisy = control_sensitivity(lambda j: rng.random((T, 128, 128, 3)).astype(np.float32), make_joints())
    for s in noisy.values():
        assert s.inside > 0.2 and 0.9 < s.ratio < 1.1


def test_sensitivity_k_size_and_errors():
    # Output at 64² while K refers to 128²: k_size scales K, so the painted discs are still inside the region.
    j = make_joints()

    def half(joints):
        K = joints.K.copy()
        K[:2] *= 0.5
        return painter(64)(joints.replace(K=K))

    res = control_sensitivity(half, j, radius=4.0, k_size=(128, 128))
    assert all(s.outside == 0.0 and s.ratio > 100 for s in res.values())
    with pytest.raises(ValueError, match="must match"):
        control_sensitivity(lambda jj: smooth_frames()[:3], j)
    with pytest.raises(ValueError, match="intrinsics K"):
        control_sensitivity(painter(), j.replace(K=None))
    with pytest.raises(ValueError, match="at least one"):
        control_sensitivity(painter(), j, perturbations={})


# ----------------------------------------------------------------------------------------------- real data + CLI
def test_evaluate_a_simulated_clip_with_the_shipped_probe_and_cli(tmp_path):
    """A fresh MuJoCo rollout scored against itself: PSNR ∞, and the probe's error near its recorded figure."""
    from dexworld.cli import main
    from embodiments.clip import write_clip
    from sim_bridge import rollout
    from sim_bridge.motion import hand_axes, wrist_pose
    from worldmodel.evaluation.probe import load_probe

    emb = get("dex3_right")
    axes = hand_axes(emb)
    n = 9
    s = np.linspace(0, 1, n)[:, None]
    q = axes.open_q + 0.6 * s * (axes.closed_q - axes.open_q)
    wrist = np.stack([wrist_pose(axes, [0.05 + 0.04 * float(a), 0.12, 0.12], yaw=0.2) for a in s[:, 0]])
    r = rollout(emb.name, q, wrist, size=(128, 128), seed=11)
    probe = load_probe()
    rep = evaluate(r.frames, r, probe=probe)
    assert math.isinf(rep.psnr) and rep.ssim == pytest.approx(1.0)
    k = rep.keypoints
    assert k["n_joints"] > 40
    assert k["mean_px"] < 3.0 * k["probe_heldout"]["mean_px"] and k["probe_heldout"]["size"] == 128

    clip = write_clip(tmp_path / "clip.h5", r.frames, r.joints, prompt="test")
    np.save(tmp_path / "video.npy", r.frames[:, ::2, ::2])  # a "generated" video at 64²
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--video", str(tmp_path / "video.npy"), "--clip", str(clip), "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["frame_size"] == [64, 64] and m["reference_resized"] and m["psnr"] > 25
    assert m["keypoints"]["probe_heldout"]["size"] == 64 and m["keypoints"]["n_joints"] == k["n_joints"]
    assert main(["evaluate", "--video", str(tmp_path / "missing.mp4"), "--clip", str(clip)]) == 1
