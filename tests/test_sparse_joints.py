"""``SparseJoints``: construction checks, transforms, projection, mirroring, time slicing/resampling, files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from embodiments.sparse import SCHEMA_VERSION, SparseJoints
from embodiments.transforms import intrinsics, invert_transform, make_transform

K0 = intrinsics(500.0, 480.0, 320.0, 240.0)


def random_joints(T=6, seed=0, **kw) -> SparseJoints:
    rng = np.random.default_rng(seed)
    pos = rng.normal(0, 0.1, (T, 42, 3)) + [0.0, 0.0, 0.6]
    valid = rng.random((T, 42)) > 0.2
    return SparseJoints(pos, valid, **kw)


def random_transform(rng, n=None):
    shape = () if n is None else (n,)
    R = Rotation.random(n, random_state=int(rng.integers(1 << 31))).as_matrix()
    return make_transform(R, rng.normal(0, 0.5, shape + (3,)))


# ------------------------------------------------------------------ construction
def test_defaults_and_invalid_values_are_zeroed():
    pos = np.ones((2, 42, 3))
    pos[0, 5] = np.nan
    sj = SparseJoints(pos)
    assert sj.positions.dtype == np.float32 and sj.valid.dtype == bool
    assert not sj.valid[0, 5] and sj.valid.sum() == 83
    np.testing.assert_array_equal(sj.positions[0, 5], 0.0)
    assert sj.frame == "camera" and sj.fps == 16.0 and sj.K is None and not sj.mirrored


@pytest.mark.parametrize("kwargs, match", [
    ({"positions": np.zeros((2, 21, 3))}, "positions must have shape"),
    ({"positions": np.zeros((42, 3))}, "positions must have shape"),
    ({"positions": np.zeros((2, 42, 3)), "valid": np.ones((2, 41), bool)}, "valid must have shape"),
    ({"positions": np.full((2, 42, 3), np.nan), "valid": np.ones((2, 42), bool)}, "NaN/inf"),
    ({"positions": np.zeros((2, 42, 3)), "K": np.eye(4)}, "K must have shape"),
    ({"positions": np.zeros((2, 42, 3)), "K": np.zeros((3, 3))}, "invertible"),
    ({"positions": np.zeros((2, 42, 3)), "fps": 0.0}, "fps"),
    ({"positions": np.zeros((2, 42, 3)), "fps": float("nan")}, "fps"),
])
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SparseJoints(**kwargs)


def test_from_hand_and_hand():
    hand = np.random.default_rng(1).normal(size=(3, 21, 3))
    sj = SparseJoints.from_hand(hand, "left", frame="world")
    pos, valid = sj.hand("left")
    np.testing.assert_allclose(pos, hand.astype(np.float32))
    assert valid.all() and not sj.hand("right")[1].any() and sj.frame == "world"
    with pytest.raises(ValueError, match="21"):
        SparseJoints.from_hand(np.zeros((3, 20, 3)), "left")
    with pytest.raises(ValueError, match="side"):
        SparseJoints.from_hand(hand, "middle")


# ------------------------------------------------------------------ geometry
def test_transform_matches_manual_and_round_trips():
    rng = np.random.default_rng(2)
    sj = random_joints()
    T = random_transform(rng)
    moved = sj.transform(T, "world")
    manual = sj.positions.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    v = sj.valid
    np.testing.assert_allclose(moved.positions[v], manual[v], atol=1e-6)
    assert moved.frame == "world" and moved.K is None
    np.testing.assert_array_equal(moved.valid, sj.valid)
    back = moved.transform(invert_transform(T), "camera", K=K0)
    np.testing.assert_allclose(back.positions, sj.positions, atol=1e-6)
    np.testing.assert_array_equal(back.K, K0)


def test_per_frame_transform_round_trip():
    rng = np.random.default_rng(3)
    sj = random_joints(T=5)
    Ts = random_transform(rng, 5)
    moved = sj.transform(Ts, "world")
    for t in range(5):
        manual = sj.positions[t] @ Ts[t, :3, :3].T + Ts[t, :3, 3]
        np.testing.assert_allclose(moved.positions[t][sj.valid[t]], manual[sj.valid[t]], atol=1e-6)
    np.testing.assert_allclose(moved.transform(invert_transform(Ts), "camera").positions, sj.positions, atol=1e-6)
    with pytest.raises(ValueError, match="transform must have shape"):
        sj.transform(Ts[:3], "world")


def test_projection_matches_pinhole_and_drops_joints_behind_the_camera():
    pos = np.random.default_rng(4).normal(0, 0.1, (4, 42, 3)) + [0.0, 0.0, 0.6]
    pos[1, 3, 2] = -0.2  # behind
    pos[2, 7, 2] = 0.0  # on the camera plane
    sj = SparseJoints(pos, K=K0)
    pos = sj.positions
    uvd, valid = sj.project()
    x, y, z = (pos[..., i].astype(np.float64) for i in range(3))
    front = z > 0
    z = np.where(front, z, 1.0)
    np.testing.assert_allclose(uvd[..., 0][front], (500.0 * x / z + 320.0)[front], rtol=1e-6)
    np.testing.assert_allclose(uvd[..., 1][front], (480.0 * y / z + 240.0)[front], rtol=1e-6)
    np.testing.assert_allclose(uvd[..., 2][front], (1.0 / z)[front], rtol=1e-6)
    assert not valid[1, 3] and not valid[2, 7] and valid.sum() == 4 * 42 - 2
    assert np.isnan(uvd[1, 3]).all()


def test_projection_with_per_frame_K_and_without_K():
    Ks = np.stack([intrinsics(400 + 50 * t, 400 + 50 * t, 300, 200) for t in range(3)])
    sj = random_joints(T=3, K=Ks)
    uvd, _ = sj.project()
    p = sj.positions.astype(np.float64)
    for t in range(3):
        v = sj.valid[t]
        np.testing.assert_allclose(uvd[t, v, 0], Ks[t, 0, 0] * p[t, v, 0] / p[t, v, 2] + 300, rtol=1e-6)
    with pytest.raises(ValueError, match="intrinsics"):
        random_joints().project()
    a, b = random_joints().project(K0), random_joints(K=K0).project()
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(a[0][a[1]], b[0][b[1]])


def test_mirror_negates_x_and_swaps_hands():
    sj = random_joints(K=K0, embodiment="mano_right")
    m = sj.mirror()
    np.testing.assert_array_equal(m.positions[:, :21, 0], -sj.positions[:, 21:, 0])
    np.testing.assert_array_equal(m.positions[:, 21:, 1:], sj.positions[:, :21, 1:])
    np.testing.assert_array_equal(m.valid[:, :21], sj.valid[:, 21:])
    assert m.mirrored and not sj.mirrored


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(0, 10_000))
def test_mirror_twice_is_identity(T, seed):
    sj = random_joints(T=T, seed=seed, K=K0)
    twice = sj.mirror().mirror()
    np.testing.assert_array_equal(twice.positions, sj.positions)
    np.testing.assert_array_equal(twice.valid, sj.valid)
    np.testing.assert_array_equal(twice.K, sj.K)
    assert twice.mirrored == sj.mirrored and twice.frame == sj.frame


# ------------------------------------------------------------------ time
def test_slicing():
    Ks = np.stack([K0 * (1 + 0.01 * t) for t in range(10)])
    Ks[:, 2, 2] = 1
    sj = random_joints(T=10, K=Ks, fps=30.0)
    part = sj[2:9:3]
    np.testing.assert_array_equal(part.positions, sj.positions[2:9:3])
    np.testing.assert_array_equal(part.valid, sj.valid[2:9:3])
    np.testing.assert_array_equal(part.K, Ks[2:9:3])
    assert len(part) == 3 and part.fps == 10.0
    assert len(sj[:4]) == 4 and sj[:4].fps == 30.0
    with pytest.raises(TypeError, match="slice"):
        sj[3]
    with pytest.raises(ValueError, match="positive step"):
        sj[::-1]


def test_resample():
    sj = random_joints(T=5, fps=10.0)
    same = sj.resample(10.0)
    np.testing.assert_allclose(same.positions, sj.positions)
    np.testing.assert_array_equal(same.valid, sj.valid)
    up = sj.resample(20.0)
    assert len(up) == 9 and up.fps == 20.0
    np.testing.assert_allclose(up.positions[::2], sj.positions, atol=1e-7)
    both = sj.valid[:-1] & sj.valid[1:]
    mid = 0.5 * (sj.positions[:-1] + sj.positions[1:])
    np.testing.assert_allclose(up.positions[1::2][both], mid[both], atol=1e-6)
    np.testing.assert_array_equal(up.valid[1::2], both)
    down = sj.resample(5.0)
    np.testing.assert_array_equal(down.positions, sj.positions[::2])
    with pytest.raises(ValueError, match="past the last frame"):
        sj.resample(10.0, num_frames=6)
    with pytest.raises(ValueError, match="fps"):
        sj.resample(0.0)


# ------------------------------------------------------------------ files
@pytest.mark.parametrize("suffix", [".npz", ".h5", ".hdf5"])
@pytest.mark.parametrize("per_frame_K", [False, True])
def test_save_load_round_trip(tmp_path, suffix, per_frame_K):
    K = np.stack([K0] * 4) if per_frame_K else K0
    sj = random_joints(T=4, K=K, frame="camera", fps=12.5, embodiment="inspire_right").mirror()
    path = sj.save(tmp_path / f"clip{suffix}")
    back = SparseJoints.load(path)
    np.testing.assert_array_equal(back.positions, sj.positions)
    np.testing.assert_array_equal(back.valid, sj.valid)
    np.testing.assert_array_equal(back.K, sj.K)
    assert (back.frame, back.fps, back.embodiment, back.mirrored) == ("camera", 12.5, "inspire_right", True)
    assert [p.name for p in tmp_path.iterdir()] == [f"clip{suffix}"]  # no temporary files left behind


def test_save_load_without_K(tmp_path):
    sj = random_joints(T=2, frame="hand_root")
    for suffix in (".npz", ".h5"):
        back = SparseJoints.load(sj.save(tmp_path / f"a{suffix}"))
        assert back.K is None and back.frame == "hand_root"


def test_wrong_schema_version_is_refused(tmp_path):
    sj = random_joints(T=2)
    path = tmp_path / "old.npz"
    np.savez(path, positions=sj.positions, valid=sj.valid, schema_version=np.asarray(SCHEMA_VERSION + 1),
             frame=np.asarray("camera"), fps=np.asarray(16.0))
    with pytest.raises(ValueError, match="schema version 2"):
        SparseJoints.load(path)
    h5 = sj.save(tmp_path / "old.h5")
    with h5py.File(h5, "r+") as f:
        f["sparse_joints"].attrs["schema_version"] = 99
    with pytest.raises(ValueError, match="schema version 99"):
        SparseJoints.load(h5)
    np.savez(tmp_path / "none.npz", positions=sj.positions)
    with pytest.raises(ValueError, match="schema version None"):
        SparseJoints.load(tmp_path / "none.npz")


def test_wrong_shapes_and_files_are_refused(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, positions=np.zeros((3, 40, 3), np.float32), valid=np.ones((3, 40), bool),
             schema_version=np.asarray(SCHEMA_VERSION))
    with pytest.raises(ValueError, match=r"bad\.npz.*positions must have shape"):
        SparseJoints.load(path)
    np.savez(path, valid=np.ones((3, 42), bool), schema_version=np.asarray(SCHEMA_VERSION))
    with pytest.raises(ValueError, match="missing 'positions'"):
        SparseJoints.load(path)
    sj = random_joints(T=2)
    h5 = sj.save(tmp_path / "bad.h5")
    with h5py.File(h5, "r+") as f:
        del f["sparse_joints/valid"]
        f["sparse_joints"].create_dataset("valid", data=np.ones((2, 7), bool))
    with pytest.raises(ValueError, match="valid must have shape"):
        SparseJoints.load(h5)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=[1])
    with pytest.raises(ValueError, match="no 'sparse_joints' group"):
        SparseJoints.load(tmp_path / "other.h5")
    with pytest.raises(ValueError, match="file type"):
        sj.save(tmp_path / "clip.csv")
    with pytest.raises(FileNotFoundError):
        SparseJoints.load(tmp_path / "missing.npz")
