"""Keypoint probe: the shipped weights against their recorded accuracy, training, soft-argmax, errors."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")

from embodiments import get, mirror_twin  # noqa: E402
from embodiments.layout import HAND_JOINT_NAMES, NUM_HAND_JOINTS, side_offset  # noqa: E402
from embodiments.sparse import SparseJoints  # noqa: E402
from sim_bridge.probe_renders import render_heldout, render_probe_data  # noqa: E402
from worldmodel.evaluation.probe import (  # noqa: E402
    DEFAULT_PROBE_DIR,
    KeypointProbe,
    describe_heldout,
    keypoint_error,
    load_probe,
    soft_argmax,
)
from worldmodel.evaluation.probe_training import (  # noqa: E402
    draw_probabilities,
    evaluate_probe,
    measure_probe,
    probe_loss,
    save_probe,
    train_probe,
)

FRESH_SEED = 424_242  # neither the training (0) nor the recorded held-out seed (1_000_003)


@pytest.fixture(scope="module")
def shipped():
    return load_probe()


def test_shipped_probe_files_and_size(shipped):
    files = {p.name: p.stat().st_size for p in DEFAULT_PROBE_DIR.iterdir()}
    assert "diffusion_pytorch_model.safetensors" in files and "config.json" in files and "accuracy.json" in files
    assert sum(files.values()) < 8 * 2**20  # small enough to live in git beside the code
    n = sum(p.numel() for p in shipped.parameters())
    assert 50_000 < n < 2_000_000
    assert {"inspire_right", "dex3_right"} <= set(shipped.config.embodiments)
    acc = json.loads((DEFAULT_PROBE_DIR / "accuracy.json").read_text())
    assert acc["heldout"] == shipped.config.heldout  # the figure beside the weights is the one in the config


def test_shipped_probe_accuracy_file_meets_the_goal():
    """Issue 19's acceptance: the shipped probe's accuracy file shows ≤ 2.5 px at 128² on held-out renders of both
    hands, measured on at least 1024 renders per hand (≥ 10 000 joints in the image)."""
    acc = json.loads((DEFAULT_PROBE_DIR / "accuracy.json").read_text())
    for hand in ("inspire_right", "dex3_right"):
        fig = acc["heldout"][hand]["128"]
        assert fig["mean_px"] <= 2.5 and fig["n"] >= 10_000, (hand, fig)
    info = acc["train_info"]
    assert info.get("measured", info)["num_heldout"] >= 1024
    assert acc["read_sizes"] == [128, 144, 160]  # read as docs/evaluation.md says the shipped probe reads


@pytest.mark.parametrize("embodiment", ["inspire_right", "dex3_right", "inspire_left", "dex3_left"])
def test_shipped_probe_reproduces_recorded_accuracy(shipped, embodiment):
    """On fresh renders (new scenes and poses) the error is within 1.5× of the recorded held-out figure. The probe
    was trained on right hands only; it reads the left ones through their mirror twins as accurately."""
    data = render_probe_data(embodiment, 40, size=128, seed=FRESH_SEED, renders_per_scene=8, progress=False,
                             hand_style=shipped.config.train_info.get("hand_style", "simple"))
    got = evaluate_probe(shipped, data, sizes=(64, 128))
    twin = embodiment.replace("_left", "_right")
    for size in ("64", "128"):
        recorded = shipped.config.heldout[twin][size]
        assert got[size]["mean_px"] <= 1.5 * recorded["mean_px"], (size, got[size], recorded)
        assert got[size]["pck@5px"] >= recorded["pck@5px"] - 0.15
        assert got[size]["visibility_acc"] > 0.85
    # the probe must beat a detector that always answers the image centre by a wide margin
    centre = np.linalg.norm(data.uv - 64.0, axis=-1)[data.valid].mean()
    assert got["128"]["mean_px"] < 0.3 * centre


def test_predict_shapes_slots_and_frame_pixels(shipped):
    emb = get("dex3_right")
    data = render_probe_data(emb.name, 4, size=64, seed=FRESH_SEED + 1, progress=False)
    uv, vis = shipped.predict(data.images, emb.name)
    assert uv.shape == (4, 42, 2) and vis.shape == (4, 42)
    assert np.isnan(uv[:, ~emb.slot_mask]).all() and np.isfinite(uv[:, emb.slot_mask]).all()
    assert (vis[:, ~emb.slot_mask] == 0).all() and ((vis >= 0) & (vis <= 1)).all()
    # A non-square frame (width stretched ×2) gives u doubled, v unchanged, up to the probe's own error.
    wide = np.repeat(data.images, 2, axis=2)
    uv_w, _ = shipped.predict(wide, emb.name)
    m = emb.slot_mask
    assert np.abs(uv_w[:, m, 0] - 2 * uv[:, m, 0]).mean() < 1.0
    assert np.abs(uv_w[:, m, 1] - uv[:, m, 1]).mean() < 0.6


def test_soft_argmax_matches_peak_and_centre():
    heat = torch.full((1, 2, 8, 8), -1e4)
    heat[0, 0, 2, 5] = 0.0  # row 2, column 5 → u = 5.5·s, v = 2.5·s
    heat[0, 1] = 0.0  # uniform → image centre
    uv = soft_argmax(heat, stride=4)
    torch.testing.assert_close(uv[0, 0], torch.tensor([22.0, 10.0]))
    torch.testing.assert_close(uv[0, 1], torch.tensor([16.0, 16.0]))


def test_head_stride_2_heatmaps_and_coordinates(tmp_path):
    """A stride-2 head gives S/2 heatmaps; a peak in cell (row 3, col 6) is pixel (6.5·2, 3.5·2)."""
    model = KeypointProbe(embodiments=["dex3_right"], size=32, widths=(8, 8, 16, 16), head_stride=2).eval()
    heat, vis = model(torch.rand(2, 3, 32, 32))
    assert heat.shape == (2, 21, 16, 16) and vis.shape == (2, 21) and model.stride == 2
    peak = torch.full((1, 1, 16, 16), -1e4)
    peak[0, 0, 3, 6] = 0.0
    torch.testing.assert_close(soft_argmax(peak, model.stride)[0, 0], torch.tensor([13.0, 7.0]))
    model.save_pretrained(str(tmp_path / "p"), safe_serialization=True)
    loaded = load_probe(tmp_path / "p")
    assert loaded.stride == 2
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x)[0], model(x)[0])
    with pytest.raises(ValueError, match="head_stride"):
        KeypointProbe(embodiments=["dex3_right"], size=32, head_stride=8)


def test_test_time_sizes_average_the_positions_read_at_each_size(tmp_path):
    """A probe with test_time_sizes reads the frame resized to each size and averages the positions, each in the
    frame's own pixels: here against the soft-argmax written out in numpy for two read sizes, on a non-square
    frame of neither size."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = KeypointProbe(embodiments=["dex3_right"], size=32, widths=(8, 8, 16, 16), head_stride=2,
                          test_time_sizes=[32, 48]).eval()
    assert model.read_sizes == (32, 48)
    frames = np.random.default_rng(1).integers(0, 256, (3, 40, 56, 3), dtype=np.uint8)  # H 40, W 56
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    expected = []
    for S in (32, 48):
        xs = F.interpolate(x, size=(S, S), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
        with torch.no_grad():
            heat = model(xs)[0].double().numpy()  # (3, 21, S/2, S/2)
        p = np.exp(heat - heat.max(axis=(2, 3), keepdims=True))
        p /= p.sum(axis=(2, 3), keepdims=True)
        centres = (np.arange(S // 2) + 0.5) * 2  # heatmap cells of 2 px
        u = (p.sum(2) * centres).sum(-1) * 56 / S
        v = (p.sum(3) * centres).sum(-1) * 40 / S
        expected.append(np.stack([u, v], -1))
    expected = np.mean(expected, 0)
    emb = get("dex3_right")
    o = side_offset(emb.side)
    present = emb.slot_mask[o:o + NUM_HAND_JOINTS]
    uv, _ = model.predict(frames, "dex3_right")
    np.testing.assert_allclose(uv[:, o:o + NUM_HAND_JOINTS][:, present], expected[:, present], atol=1e-4)
    # the sizes travel with the weights; a probe without them reads at its working size alone
    model.save_pretrained(str(tmp_path / "p"), safe_serialization=True)
    assert load_probe(tmp_path / "p").read_sizes == (32, 48)
    plain = KeypointProbe(embodiments=["dex3_right"], size=32, widths=(8, 8, 16, 16), head_stride=2)
    assert plain.read_sizes == (32,)
    for bad in ([30], [32, 32], [], [16]):
        with pytest.raises(ValueError, match="test_time_sizes must be distinct multiples of 16"):
            KeypointProbe(embodiments=["dex3_right"], size=32, test_time_sizes=bad)


def test_measure_probe_records_the_figures_of_the_probe_as_it_now_reads():
    """measure_probe keeps the weights, makes the test-time sizes part of the probe and stores the error that probe
    makes on the given renders (computed here from its own readings), beside a record of the renders."""
    torch.manual_seed(0)
    model = KeypointProbe(embodiments=["dex3_right"], size=32, widths=(8, 8, 16, 16), head_stride=2,
                          train_info={"steps": 60, "heldout_seed": 9}).eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    data = render_heldout("dex3_right", 4, 32, seed=FRESH_SEED + 2, progress=False)
    plain_uv, _ = model.predict(data.images, "dex3_right")
    table = measure_probe(model, [data], {"heldout_seed": FRESH_SEED + 2, "num_heldout": 4}, test_time_sizes=[32, 48])
    o = side_offset("right")
    uv, _ = model.predict(data.images, "dex3_right")
    err = np.linalg.norm(uv[:, o:o + NUM_HAND_JOINTS] - data.uv, axis=-1)[data.valid]
    plain = np.linalg.norm(plain_uv[:, o:o + NUM_HAND_JOINTS] - data.uv, axis=-1)[data.valid]
    assert table["dex3_right"]["32"]["mean_px"] == pytest.approx(err.mean(), rel=1e-6)
    # the figure is the averaged reading's, not the plain one's
    assert np.abs(uv - plain_uv)[:, o:o + NUM_HAND_JOINTS][data.valid].max() > 1e-2
    assert table["dex3_right"]["32"]["mean_px"] != pytest.approx(plain.mean(), rel=1e-6)
    assert model.config.heldout == table and model.config.test_time_sizes == [32, 48]
    info = model.config.train_info
    assert info["steps"] == 60 and info["measured"]["heldout_seed"] == FRESH_SEED + 2
    assert info["measured"]["test_time_sizes"] == [32, 48]
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, weights[k])
    with pytest.raises(ValueError, match="renders of the probe's embodiments"):
        measure_probe(model, [render_heldout("inspire_right", 1, 32, seed=1, progress=False)], {})
    two = KeypointProbe(embodiments=["dex3_right"], size=32, widths=(8, 8, 16, 16),
                        train_info={"two_hand_heldout": {}})
    with pytest.raises(ValueError, match="give heldout_two_hands"):
        measure_probe(two, [data], {})


def test_mixed_hand_style_alternates_scenes_with_the_same_labels():
    """'mixed' renders scene blocks in simple, detailed, simple, … style; poses and cameras do not depend on it."""
    kw = dict(size=32, seed=FRESH_SEED + 3, renders_per_scene=2, renders_per_appearance=2, progress=False)
    simple = render_probe_data("inspire_right", 4, hand_style="simple", **kw)
    detailed = render_probe_data("inspire_right", 4, hand_style="detailed", **kw)
    mixed = render_probe_data("inspire_right", 4, hand_style="mixed", **kw)
    np.testing.assert_array_equal(simple.uv, detailed.uv)
    assert not np.array_equal(simple.images[:2], detailed.images[:2])  # the geometry differs
    np.testing.assert_array_equal(mixed.images[:2], simple.images[:2])
    np.testing.assert_array_equal(mixed.images[2:], detailed.images[2:])
    np.testing.assert_array_equal(mixed.uv, simple.uv)
    with pytest.raises(ValueError, match="hand_style"):
        render_probe_data("inspire_right", 1, hand_style="fancy", **kw)


class _FixedProbe:
    """Stands in for a probe: answers fixed detections, so the error is known by hand."""

    reads_two_hands = True

    def __init__(self, uv):
        self.uv = uv

    def block_for(self, name):
        return name, False

    def predict(self, frames, name):
        return self.uv, np.ones(self.uv.shape[:2])

    def heldout_for(self, name, size, two_hands=False):
        return None


def test_keypoint_error_on_occluded_joints_and_scored_frames():
    emb = get("dex3_right")
    T = 3
    K = np.array([[50.0, 0, 32], [0, 50, 32], [0, 0, 1]])
    pos = np.zeros((T, 42, 3))
    pos[..., 2] = 1.0  # every joint at the optical axis, 1 m away → pixel (32, 32)
    joints = SparseJoints(pos, valid=np.broadcast_to(emb.slot_mask, (T, 42)).copy(), embodiment=emb.name, K=K)
    uv = np.full((T, 42, 2), 32.0)
    slots = np.flatnonzero(emb.slot_mask)
    uv[:, slots[0], 0] += 3.0  # one joint 3 px off in every frame
    uv[2, slots[1], 1] += 4.0  # another 4 px off in frame 2 only
    visible = np.ones((T, 42), bool)
    visible[:, slots[0]] = False  # the 3-px joint is hidden in every frame
    r = keypoint_error(_FixedProbe(uv), np.zeros((T, 64, 64, 3), np.uint8), joints, visible=visible)
    n = len(slots)
    assert r["n_joints"] == T * n
    assert r["mean_px"] == pytest.approx((3 * 3.0 + 4.0) / (T * n))
    assert r["occluded"]["n_joints"] == T and r["occluded"]["mean_px"] == pytest.approx(3.0)
    later = keypoint_error(_FixedProbe(uv), np.zeros((T, 64, 64, 3), np.uint8), joints, frames_scored=slice(1, None))
    assert later["n_joints"] == 2 * n and later["mean_px"] == pytest.approx((2 * 3.0 + 4.0) / (2 * n))
    assert "occluded" not in later
    with pytest.raises(ValueError, match="visible must have shape"):
        keypoint_error(_FixedProbe(uv), np.zeros((T, 64, 64, 3), np.uint8), joints, visible=visible[:, :21])


def test_keypoint_error_of_a_pair_scores_each_hand_in_its_own_slots():
    """Two hands: the pooled figures count both hands' joints, ``hands`` each hand's; every joint at pixel (32, 32),
    the left hand's detections 2 px off, the right hand's 6 px off."""
    left, right = get("dex3_left"), get("dex3_right")
    T = 2
    K = np.array([[50.0, 0, 32], [0, 50, 32], [0, 0, 1]])
    pos = np.zeros((T, 42, 3))
    pos[..., 2] = 1.0
    mask = left.slot_mask | right.slot_mask
    joints = SparseJoints(pos, valid=np.broadcast_to(mask, (T, 42)).copy(), embodiment="dex3_left+dex3_right", K=K)
    uv = np.full((T, 42, 2), 32.0)
    uv[:, :21, 0] += 2.0  # left half
    uv[:, 21:, 1] += 6.0  # right half
    r = keypoint_error(_FixedProbe(uv), np.zeros((T, 64, 64, 3), np.uint8), joints)
    n_l, n_r = int(left.slot_mask.sum()), int(right.slot_mask.sum())
    assert r["embodiment"] == "dex3_left+dex3_right" and r["n_joints"] == T * (n_l + n_r)
    assert r["mean_px"] == pytest.approx((2.0 * n_l + 6.0 * n_r) / (n_l + n_r))
    assert r["pck@5px"] == pytest.approx(n_l / (n_l + n_r))
    assert r["hands"]["dex3_left"]["mean_px"] == pytest.approx(2.0)
    assert r["hands"]["dex3_right"] == {"n_joints": T * n_r, "mean_px": pytest.approx(6.0),
                                        "median_px": pytest.approx(6.0), "pck@5px": 0.0}
    assert "hands" not in keypoint_error(_FixedProbe(uv), np.zeros((T, 64, 64, 3), np.uint8), joints,
                                         embodiment="dex3_right")
    one_hand_probe = _FixedProbe(uv)
    one_hand_probe.reads_two_hands = False
    with pytest.raises(ValueError, match="one-hand frames"):
        keypoint_error(one_hand_probe, np.zeros((T, 64, 64, 3), np.uint8), joints)


def test_heldout_accuracy_on_visible_and_hidden_joints():
    """evaluate_probe splits the error by the renders' visibility flags; figures by hand from fixed detections."""
    from sim_bridge.probe_renders import ProbeData

    emb = get("inspire_right")
    o = side_offset(emb.side)
    present = emb.slot_mask[o:o + NUM_HAND_JOINTS]
    N = 2
    labels = np.full((N, NUM_HAND_JOINTS, 2), 10.0, np.float32)
    valid = np.broadcast_to(present, (N, NUM_HAND_JOINTS)).copy()
    valid[1, np.flatnonzero(present)[:3]] = False  # three joints outside the image in render 1
    visible = valid.copy()
    hidden = np.flatnonzero(present)[-2:]  # the last two joints of each render hidden
    visible[:, hidden] = False
    pred = np.full((N, 42, 2), 10.0)
    pred[:, o:o + NUM_HAND_JOINTS, 0] += np.where(visible, 1.0, 4.0)  # 1 px off when seen, 4 px when hidden
    data = ProbeData(emb.name, np.zeros((N, 32, 32, 3), np.uint8), labels, valid, visible)
    got = evaluate_probe(_FixedProbe(pred), data, sizes=(32,))["32"]
    n_hidden = 2 * N
    n = int(valid.sum())
    assert got["n"] == n
    assert got["visible_mean_px"] == pytest.approx(1.0) and got["occluded_mean_px"] == pytest.approx(4.0)
    assert got["occluded_fraction"] == pytest.approx(n_hidden / n)
    assert got["mean_px"] == pytest.approx(((n - n_hidden) * 1.0 + n_hidden * 4.0) / n)
    # without visibility flags the split is simply absent
    plain = evaluate_probe(_FixedProbe(pred), ProbeData(emb.name, data.images, labels, valid), sizes=(32,))["32"]
    assert "visible_mean_px" not in plain and plain["mean_px"] == pytest.approx(got["mean_px"])
    # per joint: the hidden joints read 4 px, the others 1 px; the joints render 1 leaves out count once
    per = evaluate_probe(_FixedProbe(pred), data, sizes=(32,), per_joint=True)["32"]["per_joint"]
    assert list(per) == [HAND_JOINT_NAMES[j] for j in np.flatnonzero(present)]  # in order, only the hand's joints
    for j in np.flatnonzero(present):
        r = per[HAND_JOINT_NAMES[j]]
        if j in hidden:
            assert r == {"mean_px": pytest.approx(4.0), "n": N, "occluded_fraction": 1.0, "visible_mean_px": None,
                         "occluded_mean_px": pytest.approx(4.0)}
        else:
            assert r["mean_px"] == pytest.approx(1.0) and r["occluded_fraction"] == 0.0
            assert r["n"] == (1 if j in np.flatnonzero(present)[:3] else N)
    assert "per_joint" not in got
    # by what hides them: the two hidden joints of each render behind the palm (code 1) in render 0 and behind an
    # object (code 4) in render 1; the groups' shares and parts of the mean by hand
    occ = np.where(visible, 0, -1).astype(np.int8)
    occ[0, hidden], occ[1, hidden] = 1, 4
    occ[~valid] = -1
    by = evaluate_probe(_FixedProbe(pred), dataclasses.replace(data, occluded_by=occ), sizes=(32,),
                        by_occluder=True)["32"]["by_occluder"]
    assert set(by) == {0, 1, 4}
    assert by[0] == {"n": n - 4, "share": pytest.approx((n - 4) / n), "mean_px": pytest.approx(1.0),
                     "adds_px": pytest.approx((n - 4) / n)}
    for code in (1, 4):
        assert by[code] == {"n": 2, "share": pytest.approx(2 / n), "mean_px": pytest.approx(4.0),
                            "adds_px": pytest.approx(8 / n)}
    assert sum(g["adds_px"] for g in by.values()) == pytest.approx(got["mean_px"])
    with pytest.raises(ValueError, match="by_occluder needs renders with occluded_by"):
        evaluate_probe(_FixedProbe(pred), data, sizes=(32,), by_occluder=True)


def test_heldout_renders_flag_visible_joints_without_changing_frames_or_labels():
    kw = dict(size=48, seed=FRESH_SEED + 4, progress=False)
    held = render_heldout("inspire_right", 8, **kw)
    plain = render_probe_data("inspire_right", 8, renders_per_scene=16, **kw)
    np.testing.assert_array_equal(held.images, plain.images)
    np.testing.assert_array_equal(held.uv, plain.uv)
    assert plain.visible is None and held.visible.shape == held.valid.shape
    # what hides a joint agrees with whether it is seen: code 0 exactly where visible, -1 where not valid
    assert plain.occluded_by is None
    np.testing.assert_array_equal(held.occluded_by == 0, held.visible)
    assert (held.occluded_by[~held.valid] == -1).all() and (held.occluded_by[held.valid] >= 0).all()
    assert not (held.visible & ~held.valid).any()  # a joint outside the image is not "visible"
    hidden = (held.valid & ~held.visible).sum() / held.valid.sum()
    assert 0.05 < hidden < 0.95  # a hand hides some of its own joints from most cameras, never all of them


def test_renders_carry_their_pinhole_intrinsics():
    """K per render: square pixels, principal point at the image centre, focal length from the drawn vertical
    field of view (50–75°, the renders' SceneConfig): f = (S/2) / tan(fovy/2)."""
    S = 48
    data = render_probe_data("dex3_right", 16, size=S, seed=FRESH_SEED + 5, renders_per_appearance=8, progress=False)
    K = data.K
    assert K.shape == (16, 3, 3)
    np.testing.assert_allclose(K[:, 0, 0], K[:, 1, 1])
    np.testing.assert_allclose(K[:, :2, 2], S / 2, atol=0.5)
    lo, hi = (S / 2) / np.tan(np.radians(75) / 2), (S / 2) / np.tan(np.radians(50) / 2)
    assert ((K[:, 0, 0] >= lo - 1e-6) & (K[:, 0, 0] <= hi + 1e-6)).all()
    assert len(np.unique(K[:, 0, 0].round(6))) == 2  # one camera per appearance block of 8 renders


def test_tiny_probe_trains_saves_and_loads(tmp_path):
    train = [render_probe_data("dex3_right", 48, 32, seed=3, progress=False)]
    heldout = [render_heldout("dex3_right", 8, 32, seed=3 + 1_000_003, progress=False)]
    report = train_probe(train, heldout, size=32, steps=60, out_dir=tmp_path / "p", seed=3, batch_size=16,
                         widths=(8, 8, 16, 16), progress=False, eval_sizes=(32,))
    assert report.loss_last < 0.85 * report.loss_first
    held = report.heldout["dex3_right"]["32"]
    assert np.isfinite(held["mean_px"]) and 0 <= held["pck@5px"] <= 1
    loaded = load_probe(tmp_path / "p")
    assert loaded.config.heldout == report.heldout
    assert json.loads((tmp_path / "p" / "accuracy.json").read_text())["heldout"] == report.heldout
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    a, _ = report.model.predict(x, "dex3_right")
    b, _ = loaded.predict(x, "dex3_right")
    np.testing.assert_allclose(a, b, atol=1e-4)

    # continuing from the saved probe starts from its weights: at a vanishing learning rate one step leaves the
    # parameters where they were, while a fresh probe of another seed starts elsewhere
    cont = train_probe(train, heldout, size=32, steps=1, seed=4, batch_size=4, lr=1e-12, progress=False,
                       eval_sizes=(32,), init=loaded)
    fresh = train_probe(train, heldout, size=32, steps=1, seed=4, batch_size=4, lr=1e-12, progress=False,
                        eval_sizes=(32,), widths=(8, 8, 16, 16))
    before = dict(loaded.named_parameters())
    for name, w in cont.model.named_parameters():
        torch.testing.assert_close(w, before[name], atol=1e-6, rtol=0)
    assert (dict(fresh.model.named_parameters())["heatmap.weight"] - before["heatmap.weight"]).abs().max() > 1e-3
    assert cont.model.config.train_info["init"]["steps"] == 60
    # a continued probe reads at the init probe's sizes unless told otherwise
    loaded.register_to_config(test_time_sizes=[32, 48])
    kw = dict(size=32, steps=1, seed=4, batch_size=4, lr=1e-12, progress=False, eval_sizes=(32,), init=loaded)
    assert train_probe(train, heldout, **kw).model.read_sizes == (32, 48)
    assert train_probe(train, heldout, test_time_sizes=[32], **kw).model.read_sizes == (32,)
    other = [render_probe_data("inspire_right", 4, 32, seed=3, progress=False)]
    with pytest.raises(ValueError, match="init probe covers dex3_right at 32², not inspire_right at 32²"):
        train_probe(other, [render_heldout("inspire_right", 2, 32, seed=5, progress=False)], size=32, steps=1,
                    progress=False, eval_sizes=(32,), init=loaded)


def test_hidden_joints_count_hidden_weight_times_in_the_coordinate_loss():
    """The weighted loss is the weighted mean of each joint's own loss (each from a call scoring that joint alone):
    (Σ_seen e + w·Σ_hidden e) / (n_seen + w·n_hidden), for the L1 and the Gaussian terms; the reported pixel error
    stays the plain mean."""
    torch.manual_seed(0)
    model = KeypointProbe(embodiments=["dex3_right"], size=32, widths=(8, 8, 16, 16), head_stride=2).eval()
    B, J = 2, NUM_HAND_JOINTS
    images = torch.rand(B, 3, 32, 32)
    uv = torch.rand(B, J, 2) * 32
    valid = torch.zeros(B, J, dtype=torch.bool)
    valid[0, [0, 3, 5]] = True
    valid[1, [1, 3]] = True
    hidden = torch.zeros(B, J, dtype=torch.bool)
    hidden[0, 3] = hidden[1, 1] = True
    hidden[1, 7] = True  # not valid: carries no weight
    emb, present = torch.zeros(B, dtype=torch.long), torch.ones(B, J, dtype=torch.bool)
    one = {}
    for b, j in valid.nonzero().tolist():
        alone = torch.zeros_like(valid)
        alone[b, j] = True
        with torch.no_grad():
            one[(b, j)] = probe_loss(model, images, uv, alone, emb, present)[1]
    w = {k: 3.0 if hidden[k].item() else 1.0 for k in one}
    with torch.no_grad():
        _, plain = probe_loss(model, images, uv, valid, emb, present)
        _, same = probe_loss(model, images, uv, valid, emb, present, hidden, 1.0)
        _, heavy = probe_loss(model, images, uv, valid, emb, present, hidden, 3.0)
    for term in ("l1", "ce"):
        expect = sum(w[k] * one[k][term] for k in one) / sum(w.values())
        assert heavy[term] == pytest.approx(expect, rel=1e-5)
        assert same[term] == pytest.approx(plain[term], rel=1e-6)
        assert plain[term] == pytest.approx(np.mean([one[k][term] for k in one]), rel=1e-5)
    assert heavy["px"] == pytest.approx(plain["px"], rel=1e-6)


def test_sample_weights_draw_each_hand_in_proportion():
    # 100 and 300 renders weighted 1 : 3 -> a quarter of the draws from the first hand, 1/400 per render of it
    p = draw_probabilities([100, 300], [1.0, 3.0])
    assert p.shape == (400,) and float(p.sum()) == pytest.approx(1.0)
    assert float(p[:100].sum()) == pytest.approx(0.25) and float(p[0]) == pytest.approx(0.0025)
    assert float(p[100:].sum()) == pytest.approx(0.75) and float(p[399]) == pytest.approx(0.0025)
    # weights 1 : 1 over unequal sets: each hand half the draws, not in proportion to its renders
    q = draw_probabilities([10, 30], [1.0, 1.0])
    assert float(q[:10].sum()) == pytest.approx(0.5) and float(q[10]) == pytest.approx(0.5 / 30)


def test_training_with_hidden_weight_and_sample_weights_records_them():
    from sim_bridge.probe_renders import render_probe_sets

    train, held, info = render_probe_sets(["dex3_right", "inspire_right"], 8, 2, 32, 32, seed=3, progress=False,
                                          visibility=True)
    assert all(d.visible is not None and not (d.visible & ~d.valid).any() for d in train)
    report = train_probe(train, held, size=32, steps=2, seed=3, batch_size=4, widths=(8, 8, 16, 16),
                         progress=False, eval_sizes=(32,), data_info=info, hidden_weight=2.0,
                         sample_weights=[1.5, 1.0])
    ti = report.model.config.train_info
    assert ti["hidden_weight"] == 2.0 and ti["sample_weights"] == {"dex3_right": 1.5, "inspire_right": 1.0}
    plain, _, _ = render_probe_sets(["dex3_right"], 4, 2, 32, 32, seed=3, progress=False)
    assert plain[0].visible is None
    with pytest.raises(ValueError, match="visibility flags"):
        train_probe(plain, held[:1], size=32, steps=1, progress=False, eval_sizes=(32,), hidden_weight=2.0)
    with pytest.raises(ValueError, match="one positive weight per embodiment"):
        train_probe(train, held, size=32, steps=1, progress=False, eval_sizes=(32,), sample_weights=[1.0])


def test_a_killed_probe_run_resumes_to_the_same_probe(tmp_path, monkeypatch):
    """Killed after its 4th step with a state saved every 2 steps, the run resumes at step 4 and ends with exactly
    the weights and losses of the run that was never interrupted; the state file goes once the probe is saved."""
    import worldmodel.evaluation.probe_training as pt

    train = [render_probe_data("dex3_right", 24, 32, seed=3, progress=False, visibility=True)]
    held = [render_heldout("dex3_right", 4, 32, seed=5, progress=False)]
    kw = dict(size=32, steps=6, seed=3, batch_size=4, widths=(8, 8, 16, 16), progress=False, eval_sizes=(32,),
              hidden_weight=2.0)
    whole = train_probe(train, held, out_dir=tmp_path / "whole", **kw)
    calls, real_loss = [], pt.probe_loss

    def killed_at_step_5(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(pt, "probe_loss", killed_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train_probe(train, held, out_dir=tmp_path / "run", save_every=2, **kw)
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["train_state.pt"]
    # a fresh run into that folder is refused: it would overwrite, then delete, the interrupted run's state
    for every in (2, 0):
        with pytest.raises(ValueError, match=r"holds an interrupted run \(step 4\)"):
            train_probe(train, held, out_dir=tmp_path / "run", save_every=every, **kw)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["train_state.pt"]
    with pytest.raises(ValueError, match=r"another run's: lr 0.003 \(now 0.001\)"):
        train_probe(train, held, out_dir=tmp_path / "run", resume=True, **{**kw, "lr": 1e-3})
    resumed = train_probe(train, held, out_dir=tmp_path / "run", save_every=2, resume=True, **kw)
    assert resumed.model.config.train_info["resumed_at_step"] == 4
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert (resumed.loss_first, resumed.loss_last, resumed.log) == (whole.loss_first, whole.loss_last, whole.log)
    assert not (tmp_path / "run" / "train_state.pt").exists() and (tmp_path / "run" / "accuracy.json").exists()
    with pytest.raises(FileNotFoundError, match="no train_state.pt"):
        train_probe(train, held, out_dir=tmp_path / "run", resume=True, **kw)


def test_mirror_twins_and_what_a_probe_reads(shipped):
    assert mirror_twin("inspire_left") == "inspire_right" and mirror_twin("dex3_right") == "dex3_left"
    assert mirror_twin("mano_right") == "mano_left" and mirror_twin("no_such_hand_left") is None
    assert shipped.block_for("dex3_right") == ("dex3_right", False)
    assert shipped.block_for("dex3_left") == ("dex3_right", True)
    assert shipped.knows("inspire_left") and not shipped.knows("mano_left") and not shipped.knows("no_such_hand")
    # trained on one-hand frames: it would confuse the hands of a pair, so it does not claim to read one
    assert not shipped.reads_two_hands and not shipped.knows("inspire_left+inspire_right")
    left = shipped.heldout_for("inspire_left", 128)
    assert left["mirrored_from"] == "inspire_right"
    assert left["mean_px"] == shipped.config.heldout["inspire_right"]["128"]["mean_px"]
    assert "mirrored_from" not in shipped.heldout_for("inspire_right", 128)
    assert "dex3_right's; this hand read mirrored" in describe_heldout(shipped.heldout_for("dex3_left", 128))
    assert describe_heldout(None) == "the probe has no recorded held-out accuracy"


def test_a_left_hand_is_read_on_the_flipped_frame(shipped):
    """The left-hand reading is the right-hand reading of the left-right flipped frame, with u flipped back: pixel u
    of the flipped frame covers [W-1-u, W-u) of the original, so a position u maps to W - u."""
    frames = render_probe_data("inspire_left", 3, 96, seed=FRESH_SEED, progress=False).images
    uv_left, vis_left = shipped.predict(frames, "inspire_left")
    uv_right, vis_right = shipped.predict(np.ascontiguousarray(frames[:, :, ::-1]), "inspire_right")
    lo, ro = side_offset("left"), side_offset("right")
    np.testing.assert_allclose(uv_left[:, lo:lo + 21, 0], 96 - uv_right[:, ro:ro + 21, 0], atol=1e-4)
    np.testing.assert_allclose(uv_left[:, lo:lo + 21, 1], uv_right[:, ro:ro + 21, 1], atol=1e-4)
    np.testing.assert_allclose(vis_left[:, lo:lo + 21], vis_right[:, ro:ro + 21], atol=1e-6)
    assert np.isnan(uv_left[:, ro:ro + 21]).all()  # nothing in the other hand's slots


def test_clear_errors(shipped, tmp_path):
    with pytest.raises(ValueError, match="trained for"):
        shipped.predict(np.zeros((1, 64, 64, 3), np.uint8), "mano_left")
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        shipped.predict(np.zeros((64, 64, 3), np.uint8), "dex3_right")
    with pytest.raises(FileNotFoundError, match="train-probe"):
        load_probe(tmp_path / "nothing")
    with pytest.raises(ValueError, match="multiple of 16"):
        KeypointProbe(embodiments=["dex3_right"], size=40)
    pos = np.zeros((2, 42, 3), np.float32)
    pos[:, 21:, 2] = 0.4
    no_k = SparseJoints(pos, embodiment="dex3_right")
    with pytest.raises(ValueError, match="intrinsics K"):
        keypoint_error(shipped, np.zeros((2, 64, 64, 3), np.uint8), no_k)
    with_k = no_k.replace(K=np.array([[60.0, 0, 32], [0, 60, 32], [0, 0, 1]]))
    with pytest.raises(ValueError, match="must match"):
        keypoint_error(shipped, np.zeros((3, 64, 64, 3), np.uint8), with_k)


def test_render_labels_are_projections_of_joint_slots():
    """Labels are the rollout's own projections restricted to the hand's slots and the image."""
    emb = get("inspire_right")
    d = render_probe_data(emb.name, 8, size=32, seed=FRESH_SEED + 2, progress=False)
    o = side_offset(emb.side)
    present = emb.slot_mask[o:o + NUM_HAND_JOINTS]
    assert d.images.shape == (8, 32, 32, 3) and d.images.dtype == np.uint8
    assert not d.valid[:, ~present].any()
    assert ((d.uv[d.valid] >= 0) & (d.uv[d.valid] < 32)).all()
    assert d.valid.mean() > 0.3


def test_two_hand_renders_put_the_mirror_twin_beside_the_labelled_hand(shipped):
    """With ``two_hands=1`` every render also holds the labelled hand's mirror twin: the frames change, and the
    shipped probe (trained on one-hand frames) reads the labelled hand far worse there."""
    kw = dict(num_renders=32, size=128, seed=FRESH_SEED + 9, renders_per_scene=8, progress=False,
              hand_style="detailed")
    one = render_probe_data("inspire_right", **kw)
    two = render_probe_data("inspire_right", two_hands=1.0, **kw)
    assert two.images.shape == one.images.shape and two.valid.any()
    assert not np.array_equal(one.images, two.images)
    e1 = evaluate_probe(shipped, one, (128,))["128"]["mean_px"]
    e2 = evaluate_probe(shipped, two, (128,))["128"]["mean_px"]
    assert e2 > 2 * e1, (e1, e2)
    with pytest.raises(ValueError, match="two_hands"):
        render_probe_data("inspire_right", 1, 32, two_hands=1.5, progress=False)


def test_a_probe_trained_with_two_hand_renders_says_so(tmp_path):
    from sim_bridge.probe_renders import render_probe_sets, render_two_hand_heldout

    train, held, info = render_probe_sets(["dex3_right"], 16, 4, 32, 32, seed=3, progress=False, two_hands=0.5)
    assert info["two_hand_renders"] == 0.5
    pairs = render_two_hand_heldout(["dex3_right"], 4, 32, seed=3, progress=False)
    report = train_probe(train, held, size=32, steps=2, seed=3, batch_size=4, widths=(8, 8, 16, 16), progress=False,
                         eval_sizes=(32,), data_info=info, heldout_two_hands=pairs)
    assert report.model.reads_two_hands and report.model.knows("dex3_left+dex3_right")
    pair_fig = report.model.config.train_info["two_hand_heldout"]["dex3_right"]["mean_px"]
    assert np.isfinite(pair_fig)
    held = report.model.heldout_for("dex3_left", 32, two_hands=True)
    assert held["mean_px"] == pair_fig and held["mirrored_from"] == "dex3_right"
    assert "two-hand held-out renders" in describe_heldout(held)
    _, _, plain = render_probe_sets(["dex3_right"], 4, 2, 32, 32, seed=3, progress=False)
    assert "two_hand_renders" not in plain


def test_cli_train_probe(tmp_path, capsys):
    from dexworld.cli import main

    out = tmp_path / "probe"
    argv = ["train-probe", "--embodiment", "dex3_right", "--renders", "16", "--heldout", "4", "--size", "32",
            "--steps", "3", "--batch-size", "8", "--widths", "8,8,16,24", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert "held-out" in capsys.readouterr().out
    acc = json.loads((out / "accuracy.json").read_text())
    assert acc["embodiments"] == ["dex3_right"] and set(acc["heldout"]["dex3_right"]) == {"32", "64", "128"}
    assert acc["read_sizes"] == [32]  # no --test-time-sizes: read at the working size alone
    assert {"visible_mean_px", "occluded_mean_px", "occluded_fraction"} <= set(acc["heldout"]["dex3_right"]["32"])
    assert load_probe(out).config.widths == [8, 8, 16, 24]
    with pytest.raises(SystemExit):
        main(["train-probe", "--embodiment", "dex3_right", "--widths", "8,8,16", "--out", str(tmp_path / "p3")])
    assert "--widths: expected 4 comma-separated integers" in capsys.readouterr().err
    # continuing a probe with other widths is refused in one line, before rendering
    assert main(["train-probe", "--embodiment", "dex3_right", "--size", "32", "--init", str(out), "--widths",
                 "16,32,64,96", "--out", str(tmp_path / "p4")]) == 1
    err = capsys.readouterr().err
    assert "--widths 16,32,64,96" in err and "8,8,16,24" in err and not (tmp_path / "p4").exists()
    assert main(["train-probe", "--embodiment", "no_such_hand", "--out", str(out)]) == 1
    capsys.readouterr()
    # --init with a probe of other hands is refused before any rendering, in one line naming the folder
    assert main(["train-probe", "--embodiment", "inspire_right", "--size", "32", "--init", str(out),
                 "--out", str(tmp_path / "p2")]) == 1
    err = capsys.readouterr().err
    assert f"--init {out}" in err and "Traceback" not in err and not (tmp_path / "p2").exists()
    # a --sample-weight for a hand not trained, or not a positive number, is refused in one line before rendering
    for bad, says in (("inspire_right=2", "inspire_right is not one of the --embodiment hands (dex3_right)"),
                      ("dex3_right=0", "expected EMBODIMENT=W"), ("dex3_right", "expected EMBODIMENT=W")):
        assert main(["train-probe", "--embodiment", "dex3_right", "--sample-weight", bad,
                     "--out", str(tmp_path / "p5")]) == 1
        err = capsys.readouterr().err
        assert f"--sample-weight {bad}: {says}" in err and "Traceback" not in err
    assert not (tmp_path / "p5").exists()
    # an interrupted run in --out: refused without --resume, and with --resume under other options, before rendering
    from worldmodel.evaluation.probe_resume import save_train_state

    run = tmp_path / "run"
    run.mkdir()
    assert main(["train-probe", "--embodiment", "dex3_right", "--resume", "--out", str(run)]) == 1
    assert f"--resume: no interrupted run in --out {run} (no train_state.pt)" in capsys.readouterr().err
    save_train_state(run, {"fingerprint": {"embodiments": ["dex3_right"], "steps": 2500, "lr": 3e-3, "seed": 0},
                           "step": 1000, "model": {}})
    assert main(["train-probe", "--embodiment", "dex3_right", "--out", str(run)]) == 1
    assert "holds an interrupted run's train_state.pt (step 1000 of 2500): add --resume" in capsys.readouterr().err
    assert main(["train-probe", "--embodiment", "dex3_right", "--resume", "--seed", "7", "--out", str(run)]) == 1
    assert "was started with seed 0 (now 7)" in capsys.readouterr().err
    (run / "train_state.pt").write_bytes(b"not a state")
    assert main(["train-probe", "--embodiment", "dex3_right", "--resume", "--out", str(run)]) == 1
    err = capsys.readouterr().err
    assert "not a readable probe training state" in err and "Traceback" not in err
    assert sorted(p.name for p in run.iterdir()) == ["train_state.pt"]


def test_cli_measure_probe(tmp_path, capsys):
    from dexworld.cli import main

    src, out = tmp_path / "probe", tmp_path / "measured"
    model = KeypointProbe(embodiments=["dex3_right"], size=32, widths=(8, 8, 16, 16), head_stride=2,
                          train_info={"heldout_seed": 11, "num_heldout": 3, "hand_style": "simple"})
    save_probe(model, src, accuracy_extra={"log": [{"step": 0, "loss": 3.0}], "loss_first": 3.0})
    assert main(["measure-probe", "--probe", str(src), "--out", str(out), "--test-time-sizes", "32,48",
                 "--no-progress"]) == 0
    assert "read at 32, 48; held-out seed 11, 3 renders per hand" in capsys.readouterr().out
    got = load_probe(out)
    assert got.config.test_time_sizes == [32, 48] and set(got.config.heldout["dex3_right"]) == {"32", "64", "128"}
    assert got.config.heldout["dex3_right"]["32"]["n"] == int(render_heldout(
        "dex3_right", 3, 32, seed=11, progress=False).valid.sum())
    acc = json.loads((out / "accuracy.json").read_text())
    assert acc["log"] == [{"step": 0, "loss": 3.0}] and acc["heldout"] == got.config.heldout  # the log is kept
    assert acc["read_sizes"] == [32, 48]  # the file says at which sizes its figures were read
    assert sorted(p.name for p in src.iterdir()) == ["accuracy.json", "config.json",
                                                    "diffusion_pytorch_model.safetensors"]
    assert load_probe(src).config.get("test_time_sizes") is None  # the source folder is left as it was
    # measured again in place on other renders: the reading sizes stay; the next default is the newest held-out set
    assert main(["measure-probe", "--probe", str(out), "--out", str(out), "--seed", "13", "--heldout", "2",
                 "--no-progress"]) == 0
    assert main(["measure-probe", "--probe", str(out), "--out", str(tmp_path / "again"), "--no-progress"]) == 0
    again = load_probe(tmp_path / "again").config
    assert again.test_time_sizes == [32, 48] and again.train_info["measured"]["heldout_seed"] == 13
    assert again.train_info["measured"]["num_heldout"] == 2 and again.train_info["heldout_seed"] == 11
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["measure-probe", "--probe", str(src), "--out", str(out), "--test-time-sizes", "30,32"])
    assert "--test-time-sizes: expected a multiple of 16 pixels" in capsys.readouterr().err
    bare = tmp_path / "bare"
    KeypointProbe(embodiments=["dex3_right"], size=32, widths=(8, 8, 16, 16)).save_pretrained(str(bare))
    assert main(["measure-probe", "--probe", str(bare), "--out", str(tmp_path / "o2")]) == 1
    err = capsys.readouterr().err
    assert "records no held-out seed and count; give --seed and --heldout" in err and "Traceback" not in err
    assert main(["measure-probe", "--probe", str(tmp_path / "none"), "--out", str(tmp_path / "o3")]) == 1
    assert "no keypoint probe at" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()
