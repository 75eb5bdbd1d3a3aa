"""Egocentric annotation pipeline: schema, two-slot tracking, filters, mirroring, MANO joints, end to end."""

from __future__ import annotations

import dataclasses
import json
import pickle
import re

import numpy as np
import pytest

from embodiments.layout import HAND_PARENTS, NUM_HAND_JOINTS
from embodiments.sparse import SparseJoints
from sim_bridge.annotation import (
    AnnotationConfig,
    FilterConfig,
    TrackerConfig,
    VideoDetections,
    annotate_video,
    annotate_videos,
    evaluate_clip,
    load_detections,
    mirror_clip,
    plausible_hands,
    save_detections,
    track,
)
from sim_bridge.annotation.pipeline import clip_starts, detection_joints, video_plugin

K = np.array([[30.0, 0, 15.5], [0, 30.0, 15.5], [0, 0, 1]])


def hand(wrist, side: str = "left") -> np.ndarray:
    """(21, 3) an open hand with realistic bone lengths, wrist at ``wrist``, fingers towards −y (up in the image)."""
    sign = -1.0 if side == "left" else 1.0  # thumb towards the body's midline
    j = np.zeros((NUM_HAND_JOINTS, 3))
    spread = np.array([-0.03, -0.012, 0.0, 0.012, 0.024]) * sign
    for f in range(5):
        base = 1 + 4 * f
        start = np.array([spread[f], -0.06 if f else -0.02, 0.0])
        step = np.array([0.2 * spread[f], -0.025, 0.004])
        for k in range(4):
            j[base + k] = start + k * step
    return j + np.asarray(wrist, float)


def make_video_dets(rows, num_frames: int, fps: float = 16.0, video: str = "v.mp4", video_id: str = "") -> \
        VideoDetections:
    """rows: (frame, label 0/1, wrist (3,), true side) → VideoDetections with joints."""
    rows = sorted(rows, key=lambda r: r[0])
    D = len(rows)
    return VideoDetections(
        video=video, fps=fps, K=K, num_frames=num_frames,
        frame=np.array([r[0] for r in rows], np.int64), handedness=np.array([r[1] for r in rows], np.int8),
        handedness_conf=np.full(D, 0.9, np.float32), bbox=np.tile(np.float32([1, 1, 20, 20]), (D, 1)),
        joints=np.array([hand(r[2], r[3] if len(r) > 3 else ("left", "right")[r[1]]) for r in rows],
                        np.float32).reshape(D, 21, 3),
        mano={}, video_id=video_id)


def slot_of_truth(det: VideoDetections, tracks, truth: np.ndarray) -> np.ndarray:
    """(T, 2): the true identity (0/1) of the detection each slot took, −1 where none."""
    a = tracks.assignment
    return np.where(a >= 0, truth[np.maximum(a, 0)], -1)


# ====================================================================== tracking
def crossing_hands(T: int = 20, noise: float = 0.0, seed: int = 0):
    """Two hands moving towards and past each other along x (2 cm/frame), 4 mm apart in y at the crossing."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for t in range(T):
        xl, xr = -0.19 + 0.02 * t, 0.19 - 0.02 * t
        for ident, x, y in ((0, xl, 0.0), (1, xr, 0.004)):
            rows.append((t, ident, np.array([x, y, 0.5]) + noise * rng.standard_normal(3)))
            truth.append(ident)
    return make_video_dets(rows, T), np.array(truth)


def test_crossing_hands_keep_identity_thanks_to_labels():
    det, truth = crossing_hands()
    tr = track(det.translations(), det.frame, det.handedness, det.num_frames)
    ident = slot_of_truth(det, tr, truth)
    np.testing.assert_array_equal(ident, np.tile([0, 1], (det.num_frames, 1)))
    assert tr.label_overrides == 0
    # Without the handedness term the pure nearest-neighbour matching bounces at the crossing (the test can fail).
    tr0 = track(det.translations(), det.frame, det.handedness, det.num_frames,
                TrackerConfig(handedness_weight=0.0, swap_margin=0.0))
    assert (slot_of_truth(det, tr0, truth)[10:] == [1, 0]).all()


def test_handedness_flicker_is_corrected_by_geometry():
    rows, truth = [], []
    for t in range(15):
        flip = t in (5, 6)
        rows += [(t, 1 if flip else 0, np.array([-0.15, 0, 0.5]), "left"),
                 (t, 0 if flip else 1, np.array([0.15, 0, 0.5]), "right")]
        truth += [0, 1]
    det = make_video_dets(rows, 15)
    tr = track(det.translations(), det.frame, det.handedness, det.num_frames)
    np.testing.assert_array_equal(slot_of_truth(det, tr, np.array(truth)), np.tile([0, 1], (15, 1)))
    assert tr.swaps == 2  # labels flip at frame 5 and back at frame 7: both beat the label-consistent cost
    assert tr.label_overrides == 4

    # A lone hand whose label flickers stays in its slot (continuing a track beats opening one).
    rows = [(t, 1 if t in (4, 5) else 0, np.array([0.0, 0.0, 0.5]), "left") for t in range(10)]
    det = make_video_dets(rows, 10)
    tr = track(det.translations(), det.frame, det.handedness, det.num_frames)
    assert (tr.assignment[:, 0] == np.arange(10)).all() and (tr.assignment[:, 1] == -1).all()


@pytest.mark.parametrize(("margin", "swapped"), [(0.02, False), (0.0, True), (0.005, True)])
def test_hysteresis_blocks_small_improvements(margin, swapped):
    # Frame 1: the geometric swap beats the label-consistent assignment by exactly 0.01 m (2a − 2b − 2λ).
    a, b = 0.0775, 0.0225
    rows = [(0, 0, np.array([0.0, 0, 0.5])), (0, 1, np.array([0.1, 0, 0.5])),
            (1, 0, np.array([a, 0, 0.5])), (1, 1, np.array([b, 0, 0.5]))]
    det = make_video_dets(rows, 2)
    tr = track(det.translations(), det.frame, det.handedness, 2, TrackerConfig(swap_margin=margin))
    cost_consistent = a + (0.1 - b)
    cost_swapped = (0.1 - a) + b + 2 * 0.05
    assert cost_consistent - cost_swapped == pytest.approx(0.01)
    expect = [3, 2] if swapped else [2, 3]
    np.testing.assert_array_equal(tr.assignment[1], expect)
    assert (tr.swaps, tr.swaps_blocked) == ((1, 0) if swapped else (0, 1))


@pytest.mark.parametrize(("gap", "forgotten"), [(8, False), (10, False), (12, True)])
def test_gap_reset(gap, forgotten):
    # A left hand vanishes for `gap` frames and comes back at the same place labelled "right".
    p = np.array([0.0, 0.0, 0.5])
    frames = list(range(5)) + list(range(5 + gap, 10 + gap))
    rows = [(t, 0 if t < 5 else 1, p, "left") for t in frames]
    det = make_video_dets(rows, 10 + gap)
    tr = track(det.translations(), det.frame, det.handedness, det.num_frames)
    back = tr.assignment[5 + gap]
    if forgotten:  # history gone: the label decides → right slot
        assert back[1] >= 0 and back[0] == -1
        assert (5 + 11, 0) in tr.resets  # reset once the slot has been unseen for 11 > 10 frames
    else:  # history kept: the nearby track continues despite the label
        assert back[0] >= 0 and back[1] == -1
        assert tr.resets == ()


def test_third_hand_does_not_steal_tracks():
    rows, truth = [], []
    for t in range(30):
        rows += [(t, 0, np.array([-0.1 + 0.002 * t, 0, 0.5])), (t, 1, np.array([0.1, 0.001 * t, 0.5]))]
        truth += [0, 1]
        if 10 <= t < 20:  # someone else's hand, labelled left, far from both
            rows.append((t, 0, np.array([0.4, -0.2, 0.9]), "left"))
            truth.append(2)
    det = make_video_dets(rows, 30)
    order = np.argsort([r[0] for r in rows], kind="stable")
    tr = track(det.translations(), det.frame, det.handedness, 30)
    np.testing.assert_array_equal(slot_of_truth(det, tr, np.array(truth)[order]), np.tile([0, 1], (30, 1)))
    np.testing.assert_array_equal(tr.detections_per_frame, [2] * 10 + [3] * 10 + [2] * 10)


def test_tracker_rejects_bad_input():
    with pytest.raises(ValueError, match="sorted"):
        track(np.zeros((2, 3)), np.array([1, 0]), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="max_gap"):
        TrackerConfig(max_gap=-1)


# ====================================================================== filters
def test_filters_each_reason():
    T = 20
    full = np.ones((T, 2), bool)
    n2 = np.full(T, 2)
    r = evaluate_clip(full, full, n2)
    assert r.kept and r.reasons == () and r.hand_presence == 1.0 and r.mano_density == 1.0

    few = np.zeros((T, 2), bool)
    few[:3, 0] = True  # 15 % of frames < 20 %
    r = evaluate_clip(few, few, n2)
    assert not r.kept and r.reason == "few_hands" and r.hand_presence == pytest.approx(0.15)
    few[:4, 0] = True  # exactly 20 % is enough
    assert evaluate_clip(few, few, n2).kept

    plaus = np.zeros((T, 2), bool)
    plaus[:1, 0] = True  # 1 of 40 cells = 2.5 % < 5 %
    r = evaluate_clip(full, plaus, n2)
    assert r.reasons == ("sparse_mano",) and r.mano_density == pytest.approx(0.025)
    plaus[:2, 0] = True  # 5 % passes
    assert evaluate_clip(full, plaus, n2).kept

    n = n2.copy()
    n[:6] = 3  # 30 % of frames with a third hand
    r = evaluate_clip(full, full, n)
    assert r.reasons == ("extra_hands",) and r.extra_hand_fraction == pytest.approx(0.3)
    n[5] = 2
    assert evaluate_clip(full, full, n).kept  # 25 % is not more than 25 %

    r = evaluate_clip(np.zeros((T, 2), bool), np.zeros((T, 2), bool), np.full(T, 3))
    assert r.reasons == ("few_hands", "sparse_mano", "extra_hands") and r.reason == "few_hands"


def test_plausible_hands():
    good = hand([0, 0, 0.5])
    behind = hand([0, 0, -0.5])
    broken = good.copy()
    broken[8] += [0.0, -0.3, 0.0]  # a 30 cm finger bone
    collapsed = good.copy()
    collapsed[2] = collapsed[1]  # zero-length bone
    joints = np.stack([good, behind, broken, collapsed, good, good])
    mano = {"pose": np.zeros((6, 45)), "betas": np.zeros((6, 10))}
    mano["betas"][4, 0] = 9.0  # far outside MANO's shape space
    mano["pose"][5, :3] = [4.0, 0, 0]  # a 4 rad joint rotation
    has = np.array([True] * 6)
    np.testing.assert_array_equal(plausible_hands(joints, mano, has), [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(plausible_hands(joints, mano, ~has), [1, 0, 0, 0, 1, 1])
    # bones in the template are all within the bounds the check uses
    bones = np.linalg.norm(good[1:] - good[np.asarray(HAND_PARENTS[1:])], axis=-1)
    assert bones.min() > FilterConfig().min_bone and bones.max() < FilterConfig().max_bone


# ====================================================================== mirroring
def test_mirror_clip_round_trip_and_projection():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    pos = np.zeros((3, 42, 3), np.float32)
    pos[:, 21:] = hand([0.05, 0.02, 0.5], "right")
    valid = np.zeros((3, 42), bool)
    valid[:, 21:] = True
    Kc = K.copy()
    Kc[0, 2] = 12.25  # off-centre principal point, so reflecting cx matters
    joints = SparseJoints(pos, valid, K=Kc, fps=16.0)
    f2, j2 = mirror_clip(frames, joints)
    assert j2.mirrored and j2.valid[:, :21].all() and not j2.valid[:, 21:].any()
    np.testing.assert_array_equal(f2, frames[:, :, ::-1])
    # mirrored joints project onto the flipped pixels: u' = W − 1 − u, v' = v
    uv, _ = joints.project()
    uv2, _ = j2.project()
    np.testing.assert_allclose(uv2[:, :21, 0], 31 - uv[:, 21:, 0], atol=1e-4)
    np.testing.assert_allclose(uv2[:, :21, 1], uv[:, 21:, 1], atol=1e-4)
    f3, j3 = mirror_clip(f2, j2)  # undo
    np.testing.assert_array_equal(f3, frames)
    np.testing.assert_allclose(j3.positions, joints.positions)
    np.testing.assert_array_equal(j3.valid, joints.valid)
    np.testing.assert_allclose(j3.K, joints.K)
    assert not j3.mirrored


# ====================================================================== schema
def _json_doc(num_frames=12, nan_frame=None):
    frames = []
    for t in range(num_frames):
        hands = [{"handedness": "left", "handedness_conf": 0.9, "bbox": [1, 2, 10, 12],
                  "joints": hand([-0.05, 0, 0.5]).tolist()},
                 {"handedness": "right", "handedness_conf": 0.8, "bbox": [15, 2, 30, 12],
                  "mano": {"pose": [0.1] * 45, "betas": [0.0] * 10, "global_orient": [0, 0, 0],
                           "transl": [0.05, 0, 0.5]}}]
        if t == nan_frame:
            hands[1]["mano"]["pose"][3] = float("nan")
        frames.append({"frame": t, "hands": hands})
    return {"video": "clip.mp4", "fps": 30, "intrinsics": {"fx": 30, "fy": 30, "cx": 15.5, "cy": 15.5},
            "num_frames": num_frames, "frames": frames}


def test_schema_round_trips(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps(_json_doc()))
    (v,) = load_detections(p)
    assert v.num_detections == 24 and v.video == str(tmp_path / "clip.mp4") and v.video_id == "clip"
    assert v.has_joints.sum() == 12 and v.has_mano.sum() == 12 and v.fps == 30.0
    np.testing.assert_allclose(v.K, K)
    for suffix in (".json", ".npz", ".h5"):
        q = save_detections(tmp_path / f"copy{suffix}", v)
        (w,) = load_detections(q)
        for f in ("frame", "handedness", "handedness_conf", "bbox", "K"):
            np.testing.assert_allclose(getattr(w, f), getattr(v, f), err_msg=f"{suffix} {f}")
        np.testing.assert_allclose(w.joints, v.joints, atol=1e-6)
        for k in v.mano:
            np.testing.assert_allclose(w.mano[k], v.mano[k], atol=1e-6)
        assert (w.num_frames, w.fps, w.video_id) == (v.num_frames, v.fps, v.video_id)
    # wrist where joints are given, MANO translation otherwise
    np.testing.assert_allclose(v.translations()[v.has_joints], v.joints[v.has_joints, 0])
    np.testing.assert_allclose(v.translations()[~v.has_joints], v.mano["transl"][~v.has_joints])


def test_nan_hand_is_dropped_and_counted(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps(_json_doc(nan_frame=4)))
    (v,) = load_detections(p)
    assert v.num_detections == 23 and v.nonfinite_frames == (4,) and v.nonfinite_hands == 1
    assert (v.frame == 4).sum() == 1
    q = save_detections(tmp_path / "d.npz", v)  # the columnar form counts NaN rows the same way
    cols = dict(np.load(q))
    cols["mano_transl"][0] = np.nan  # row 0 has joints too, so it is kept
    cols["joints"][1] = np.nan  # row 1 has only MANO (NaN joints mean "not given") → kept
    cols["mano_pose"][1, 0] = np.nan  # … until its MANO is NaN as well → dropped
    np.savez(tmp_path / "e.npz", **cols)
    (w,) = load_detections(tmp_path / "e.npz")
    assert w.num_detections == 22 and w.nonfinite_hands == 1 and w.nonfinite_frames == (0,)


def test_columnar_form_names_the_first_bad_row(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps(_json_doc()))
    (v,) = load_detections(p)
    cols = dict(np.load(save_detections(tmp_path / "d.npz", v)))
    cols["handedness_conf"][5] = 1.5
    cols["bbox"][3] = [10, 1, 2, 20]  # x1 < x0, an earlier row than the bad confidence
    np.savez(tmp_path / "e.npz", **cols)
    with pytest.raises(ValueError, match=rf"frame {int(v.frame[3])} \(row 3\): field 'bbox'"):
        load_detections(tmp_path / "e.npz")
    cols["bbox"][3] = v.bbox[3]
    np.savez(tmp_path / "e.npz", **cols)
    with pytest.raises(ValueError, match=r"\(row 5\): field 'handedness_conf' must be in \[0, 1\], got 1.5"):
        load_detections(tmp_path / "e.npz")


@pytest.mark.parametrize(("mutate", "match"), [
    (lambda d: d["frames"][3]["hands"][1].pop("bbox"), r"video 'clip.mp4': frame 3, hand 1: missing field 'bbox'"),
    (lambda d: d["frames"][2]["hands"][0].update(handedness="both"), r"frame 2, hand 0: field 'handedness'"),
    (lambda d: d["frames"][5]["hands"][0].update(bbox=[1, 2, 3]), r"frame 5, hand 0: field 'bbox' must have shape"),
    (lambda d: d["frames"][1]["hands"][1]["mano"].update(betas=[0] * 3), r"frame 1, hand 1: field 'mano.betas'"),
    (lambda d: d["frames"][6]["hands"][0].update(joints=[[0, 0]] * 21), r"frame 6, hand 0: field 'joints'"),
    (lambda d: d["frames"][7]["hands"][0].update(handedness_conf=1.5), r"frame 7, hand 0: field 'handedness_conf'"),
    (lambda d: d["frames"][0]["hands"][0].pop("joints"), r"frame 0, hand 0: needs field 'mano'"),
    (lambda d: d.pop("intrinsics"), r"video 'clip.mp4': missing field 'intrinsics'"),
    (lambda d: d.update(fps=0), r"field 'fps' must be a positive number"),
    (lambda d: d["frames"].append({"frame": 3, "hands": []}), r"frame 3: listed twice"),
    (lambda d: d.update(num_frames=5), r"frame 11 is past 'num_frames' = 5"),
    (lambda d: d.pop("video"), r"missing field 'video'"),
])
def test_malformed_json_names_video_frame_and_field(tmp_path, mutate, match):
    doc = _json_doc()
    mutate(doc)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=match):
        load_detections(p)


def test_malformed_columnar_and_files(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps(_json_doc()))
    (v,) = load_detections(p)
    cols = v._columns()
    bad = dict(cols, bbox=cols["bbox"][:, :3])
    np.savez(tmp_path / "b.npz", **bad)
    with pytest.raises(ValueError, match=r"video '.*clip.mp4': field 'bbox' must have shape \(24, 4\)"):
        load_detections(tmp_path / "b.npz")
    hb = cols["handedness"].copy()
    hb[5] = 7
    np.savez(tmp_path / "c.npz", **dict(cols, handedness=hb))
    with pytest.raises(ValueError, match=r"frame 2 \(row 5\): field 'handedness'"):
        load_detections(tmp_path / "c.npz")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_detections(tmp_path / "x.json")
    (tmp_path / "x.txt").write_text("{}")
    with pytest.raises(ValueError, match="unknown detections file type"):
        load_detections(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError):
        load_detections(tmp_path / "missing.json")


# ====================================================================== MANO joints
def _write_toy_mano(path, seed: int):
    """A MANO-format pickle (numpy arrays only) with a made-up 778-vertex hand: same layout as the real files."""
    rng = np.random.default_rng(seed)
    V, J = 778, 16
    parents = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14])
    joints = np.zeros((J, 3))
    for j in range(1, J):
        joints[j] = joints[parents[j]] + [0.01 * ((j - 1) // 3 - 2), 0.03, 0.0]
    owner = rng.integers(0, J, V)
    verts = joints[owner] + 0.005 * rng.standard_normal((V, 3))
    J_reg = np.zeros((J, V))
    for j in range(J):
        J_reg[j, owner == j] = 1.0 / max((owner == j).sum(), 1)
    weights = np.eye(J)[owner]
    kintree = np.stack([np.where(parents < 0, 2**32 - 1, parents), np.arange(J)]).astype(np.int64)
    data = {"v_template": verts, "shapedirs": 0.001 * rng.standard_normal((V, 3, 10)),
            "posedirs": 0.0001 * rng.standard_normal((V, 3, 135)), "J_regressor": J_reg, "weights": weights,
            "kintree_table": kintree, "f": rng.integers(0, V, (100, 3))}
    path.write_bytes(pickle.dumps(data, protocol=2))


def test_mano_detections_go_through_embodiments_mano(tmp_path):
    from embodiments.mano import ManoModel

    for side, seed in (("LEFT", 1), ("RIGHT", 2)):
        _write_toy_mano(tmp_path / f"MANO_{side}.pkl", seed)
    p = tmp_path / "d.json"
    p.write_text(json.dumps(_json_doc()))
    (v,) = load_detections(p)
    with pytest.raises(ValueError, match=r"12 right hands .* no MANO_RIGHT.pkl"):
        detection_joints(v, None)
    from sim_bridge.annotation.pipeline import load_mano_models

    models = load_mano_models(tmp_path)
    w = detection_joints(v, models)
    assert w.has_joints.all()
    np.testing.assert_array_equal(w.joints[v.has_joints], v.joints[v.has_joints])  # supplied joints kept
    rows = np.flatnonzero(~v.has_joints)
    right = ManoModel.load(tmp_path / "MANO_RIGHT.pkl")
    ref = right.forward(pose=v.mano["pose"][rows], betas=v.mano["betas"][rows],
                        global_orient=v.mano["global_orient"][rows], transl=v.mano["transl"][rows]).joints
    np.testing.assert_allclose(w.joints[rows], ref.numpy(), atol=1e-6)


# ====================================================================== end to end
def _write_video(path, T: int, seed: int = 0) -> np.ndarray:
    import imageio.v3 as iio

    rng = np.random.default_rng(seed)
    frames = np.repeat(np.repeat(rng.integers(0, 255, (T, 8, 8, 3), dtype=np.uint8), 4, 1), 4, 2)
    iio.imwrite(path, frames, fps=16, codec="libx264", plugin=video_plugin())
    return iio.imread(path, plugin=video_plugin())  # decoded (lossy) frames: what the pipeline must store


def _e2e_detections(tmp_path, T: int = 40) -> dict:
    """Video 'both': two hands, frames 0–29, none after (clip 3 dropped); 'right': a lone right hand."""
    docs = {}
    for name, sides in (("both", ("left", "right")), ("right", ("right",))):
        frames = []
        for t in range(T):
            hands = []
            if name == "right" or t < 30:
                for s in sides:
                    x = (-0.05 if s == "left" else 0.05) + 0.001 * t
                    hands.append({"handedness": s, "handedness_conf": 0.9, "bbox": [0, 0, 31, 31],
                                  "joints": hand([x, 0.03, 0.4], s).tolist()})
            frames.append({"frame": t, "hands": hands})
        docs[name] = {"video": f"{name}.mp4", "fps": 16, "K": K.tolist(), "num_frames": T, "frames": frames}
    p = tmp_path / "dets.json"
    p.write_text(json.dumps({"videos": list(docs.values())}))
    return {"path": p, "decoded": {n: _write_video(tmp_path / f"{n}.mp4", T, seed=i) for i, n in enumerate(docs)}}


def test_end_to_end_cli(tmp_path, capsys):
    from dexworld.cli import main
    from embodiments.clip import read_clip

    e2e = _e2e_detections(tmp_path)
    out = tmp_path / "clips"
    # --dry-run decides the same clips and writes nothing (docs/annotation.md), not even the report.
    rc = main(["annotate", str(e2e["path"]), "-o", str(out), "--clip-frames", "9", "--clip-stride", "10", "--dry-run"])
    assert rc == 0 and not out.exists()
    dry = capsys.readouterr().out
    assert "kept (dry run, not written)" in dry and "nothing written" in dry
    rc = main(["annotate", str(e2e["path"]), "-o", str(out), "--clip-frames", "9", "--clip-stride", "10"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "kept" in text and "dropped: few_hands" in text
    report = json.loads((out / "annotation_report.json").read_text())
    both, right = report["videos"]
    assert [c["kept"] for c in both["clips"]] == [True, True, True, False]  # starts 0, 10, 20, 30
    assert both["clips"][3]["reasons"] == ["few_hands", "sparse_mano"]
    assert all(c["kept"] and c["mirrored"] for c in right["clips"])
    assert not any(c["mirrored"] for c in both["clips"])
    (v_both, v_right) = load_detections(e2e["path"])

    clip = read_clip(out / "both_000010.h5")
    np.testing.assert_array_equal(clip.frames, e2e["decoded"]["both"][10:19])
    assert len(clip.joints) == 9 and clip.joints.valid.all() and not clip.joints.mirrored
    np.testing.assert_allclose(clip.joints.positions[:, :21], v_both.joints[v_both.handedness == 0][10:19],
                               atol=1e-6)
    np.testing.assert_allclose(clip.joints.positions[:, 21:], v_both.joints[v_both.handedness == 1][10:19],
                               atol=1e-6)
    assert clip.extra["source_start"] == 10 and clip.extra["video_id"] == "both"

    # the lone right hand was mirrored into the left slots; undoing the mirror gives back video and joints
    clip = read_clip(out / "right_000020.h5")
    assert clip.joints.mirrored and clip.joints.valid[:, :21].all() and not clip.joints.valid[:, 21:].any()
    frames, joints = mirror_clip(clip.frames, clip.joints)
    np.testing.assert_array_equal(frames, e2e["decoded"]["right"][20:29])
    np.testing.assert_allclose(joints.positions[:, 21:], v_right.joints[20:29], atol=1e-6)
    np.testing.assert_allclose(joints.K, K)
    assert sorted(p.name for p in out.glob("*.h5")) == [
        "both_000000.h5", "both_000010.h5", "both_000020.h5", "right_000000.h5", "right_000010.h5",
        "right_000020.h5", "right_000030.h5"]


def test_cli_errors_and_frame_step(tmp_path, capsys):
    from dexworld.cli import main
    from embodiments.clip import read_clip

    e2e = _e2e_detections(tmp_path)
    assert main(["annotate", str(e2e["path"]), "--video", "x.mp4", "-o", str(tmp_path / "o")]) == 1
    assert "--video names one video" in capsys.readouterr().err
    # a missing video is reported per video, the batch goes on, exit code 1
    (v,) = [v for v in load_detections(e2e["path"]) if v.video_id == "both"]
    save_detections(tmp_path / "one.npz", v)
    rc = main(["annotate", str(tmp_path / "one.npz"), "--video", str(tmp_path / "nope.mp4"), "-o",
               str(tmp_path / "o"), "--clip-frames", "5"])
    assert rc == 1 and "nope.mp4 does not exist" in capsys.readouterr().err
    rc = main(["annotate", str(tmp_path / "one.npz"), "-o", str(tmp_path / "o2"), "--clip-frames", "5",
               "--frame-step", "3", "--mirror", "none"])
    assert rc == 0
    clip = read_clip(tmp_path / "o2" / "both_000015.h5")
    np.testing.assert_array_equal(clip.frames, e2e["decoded"]["both"][15:28:3])
    assert clip.joints.fps == pytest.approx(16 / 3)


def test_clip_starts_and_config():
    cfg = AnnotationConfig(clip_frames=5, frame_step=2)
    assert cfg.stride == 10 and clip_starts(30, cfg) == [0, 10, 20]  # span 9: 20..28 fits, 30 does not exist
    assert clip_starts(81, AnnotationConfig()) == [0] and clip_starts(80, AnnotationConfig()) == []
    with pytest.raises(ValueError, match="mirror"):
        AnnotationConfig(mirror="left")


def test_process_pool_matches_sequential(tmp_path):
    rng = np.random.default_rng(3)
    videos = []
    for n in range(3):
        rows = [(t, s, np.array([(-0.1, 0.1)[s], 0, 0.5]) + 0.01 * rng.standard_normal(3))
                for t in range(60) for s in (0, 1) if rng.random() < (0.9 if n else 0.1)]
        videos.append(make_video_dets(rows, 60, video_id=f"v{n}"))
    cfg = AnnotationConfig(clip_frames=9)
    seq = annotate_videos(videos, tmp_path, cfg, workers=1, write=False)
    par = annotate_videos(videos, tmp_path, cfg, workers=2, write=False)
    assert [dataclasses.asdict(r) for r in seq] == [dataclasses.asdict(r) for r in par]
    assert seq[0].kept < len(seq[0].clips) and seq[1].kept == len(seq[1].clips) == 6
    # the per-video function alone gives the same report
    assert dataclasses.asdict(annotate_video(videos[1], tmp_path, cfg, write=False)) == dataclasses.asdict(seq[1])
    with pytest.raises(ValueError, match="unique"):
        annotate_videos([videos[0], videos[0]], tmp_path, cfg)


def test_ray_adapter(tmp_path):
    ray = pytest.importorskip("ray", reason="ray is not installed here; the Ray adapter test runs only where it is")
    from sim_bridge.annotation.ray_adapter import annotate_with_ray

    rows = [(t, s, np.array([(-0.1, 0.1)[s], 0, 0.5])) for t in range(30) for s in (0, 1)]
    videos = [make_video_dets(rows, 30, video_id="a")]
    cfg = AnnotationConfig(clip_frames=9)
    try:  # the adapter starts a local cluster when none runs; stop it so other tests in this process can start theirs
        got = annotate_with_ray(videos, tmp_path, cfg, write=False)
    finally:
        ray.shutdown()
    assert [dataclasses.asdict(r) for r in got] == [dataclasses.asdict(r) for r in
                                                    annotate_videos(videos, tmp_path, cfg, write=False)]


def test_read_frames_with_either_decoder(tmp_path, monkeypatch):
    import sim_bridge.annotation.pipeline as pl

    decoded = _write_video(tmp_path / "v.mp4", 12)
    for plugin in ("FFMPEG", "pyav"):
        if plugin == "pyav":
            pytest.importorskip("av", reason="PyAV not installed; the ffmpeg plugin is used instead")
        monkeypatch.setattr(pl, "video_plugin", lambda p=plugin: p)
        got = dict(pl.read_frames(tmp_path / "v.mp4", [7, 2, 2, 9]))
        assert sorted(got) == [2, 7, 9]
        for i, f in got.items():
            np.testing.assert_array_equal(f, decoded[i])
        with pytest.raises(ValueError, match="has 12 frames but the detections need frame 12"):
            list(pl.read_frames(tmp_path / "v.mp4", [3, 12]))


@pytest.mark.parametrize("form", ["json", "npz"])
def test_all_nan_detections_are_dropped_and_counted_not_a_crash(tmp_path, capsys, form):
    """Every hand of every frame is NaN (a detector that failed throughout): 24 hands in 12 frames are dropped and
    counted, the one clip is dropped for too few hands, exit code 0 and no traceback (used to be an IndexError)."""
    from dexworld.cli import main

    doc = _json_doc(num_frames=12)
    for fr in doc["frames"]:
        for h in fr["hands"]:
            h["bbox"] = [float("nan")] * 4
    path = tmp_path / "d.json"
    path.write_text(json.dumps(doc))
    if form == "npz":
        good = tmp_path / "good.json"
        good.write_text(json.dumps(_json_doc(num_frames=12)))
        cols = dict(np.load(save_detections(tmp_path / "g.npz", load_detections(good))))
        cols["bbox"][:] = np.nan
        path = tmp_path / "d.npz"
        np.savez(path, **cols)
    out = tmp_path / "out"
    assert main(["annotate", str(path), "-o", str(out), "--clip-frames", "9"]) == 0  # every clip dropped: no video read
    (video,) = json.loads((out / "annotation_report.json").read_text())["videos"]
    assert video["nonfinite_hands"] == 24 and video["nonfinite_frames"] == 12 and video["error"] is None
    assert [c["reasons"] for c in video["clips"]] == [["few_hands", "sparse_mano"]]
    assert re.search(r"hands dropped for NaN/inf\s*│\s*24\s", capsys.readouterr().out)


@pytest.mark.parametrize("video_id", ["../../../escaped", "/tmp/abs", "sub/dir", ".."])
def test_video_id_cannot_name_a_path_outside_the_output_folder(tmp_path, capsys, video_id):
    from dexworld.cli import main

    doc = {**_json_doc(num_frames=12), "video_id": video_id}
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    (work / "d.json").write_text(json.dumps(doc))
    before = sorted(tmp_path.rglob("*"))
    assert main(["annotate", str(work / "d.json"), "-o", str(work / "out"), "--clip-frames", "9"]) == 1
    err = capsys.readouterr().err
    assert f"d.json: video 'clip.mp4': field 'video_id': {video_id!r} must be a plain name" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written anywhere
    # the library refuses it as well (detections built in code, not read from a file)
    det = make_video_dets([(t, 0, [0.0, 0.0, 0.5]) for t in range(12)], 12, video_id=video_id)
    with pytest.raises(ValueError, match="must be a plain name"):
        annotate_video(det, work / "out", AnnotationConfig(clip_frames=9), write=False)
