"""MANO: the restricted unpickler (incl. malicious pickles) and linear blend skinning on a generated model file."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.spatial.transform import Rotation

from embodiments.mano import ManoModel, ManoUnpickler, UnsafePickleError, load_mano_pickle

V, J, S = 778, 16, 10
PARENTS = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14])
MANO_NAMES = ["wrist", "index1", "index2", "index3", "middle1", "middle2", "middle3", "pinky1", "pinky2", "pinky3",
              "ring1", "ring2", "ring3", "thumb1", "thumb2", "thumb3"]
TIPS = {"thumb": 745, "index": 317, "middle": 444, "ring": 556, "pinky": 673}


@contextlib.contextmanager
def fake_chumpy():
    """A module tree named like chumpy's, so pickles name 'chumpy.ch.Ch' as the real files do; removed after."""

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x, np.float64)
            self._dirty_vars = {"x"}
            self._make_dense = False
            self._depends_on_deps = {}

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    pkg, mod = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")
    mod.Ch, pkg.ch, pkg.Ch = Ch, mod, Ch
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch")}
    sys.modules.update({"chumpy": pkg, "chumpy.ch": mod})
    try:
        yield Ch
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def make_model_dict(seed=0, Ch=None):
    """A MANO-structured model: vertices clustered on a 16-joint hand tree, sparse skinning weights."""
    rng = np.random.default_rng(seed)
    joints = np.zeros((J, 3))
    dirs = {1: (0.02, 0.09, 0), 4: (0.0, 0.095, 0), 7: (-0.035, 0.08, 0), 10: (-0.018, 0.09, 0), 13: (0.03, 0.03, 0.01)}
    for j in range(1, J):
        root = j - (j - 1) % 3
        step = np.array(dirs[root]) if j == root else np.array(dirs[root]) / np.linalg.norm(dirs[root]) * 0.03
        joints[j] = joints[PARENTS[j]] + step + rng.normal(0, 0.002, 3)
    owner = rng.integers(0, J, V)
    for name, v in TIPS.items():
        owner[v] = MANO_NAMES.index(f"{name}3")
    v_template = joints[owner] + rng.normal(0, 0.008, (V, 3))
    weights = np.zeros((V, J))
    w = rng.uniform(0.6, 1.0, V)
    weights[np.arange(V), owner] = np.where(owner > 0, w, 1.0)
    has_parent = owner > 0
    weights[np.arange(V)[has_parent], PARENTS[owner[has_parent]]] += 1 - w[has_parent]
    # pose blend shapes: a joint's rotation may deform only vertices skinned to its subtree
    posedirs = np.zeros((V, 3, 9 * (J - 1)))
    for v in range(V):
        for j in np.flatnonzero(weights[v]):
            a = j
            while a > 0:
                posedirs[v, :, 9 * (a - 1):9 * a] = rng.normal(0, 0.004, (3, 9))
                a = PARENTS[a]
    J_reg = np.zeros((J, V))
    for j in range(J):
        members = np.flatnonzero(owner == j)
        J_reg[j, members] = 1.0 / len(members)
    kintree = np.stack([np.where(PARENTS < 0, 2**32 - 1, PARENTS), np.arange(J)]).astype(np.int64)
    wrap = (lambda a: Ch(a)) if Ch is not None else (lambda a: a)
    comps = np.linalg.qr(rng.normal(size=(45, 45)))[0]
    return {
        "v_template": wrap(v_template), "shapedirs": wrap(rng.normal(0, 0.004, (V, 3, S))), "posedirs": posedirs,
        "J_regressor": sp.csc_matrix(J_reg), "weights": weights, "kintree_table": kintree,
        "f": rng.integers(0, V, (1538, 3)).astype(np.uint32), "hands_components": comps,
        "hands_mean": rng.normal(0, 0.2, 45), "J": joints, "bs_style": "lbs", "bs_type": "lrotmin",
    }


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("mano") / "MANO_RIGHT.pkl"
    with fake_chumpy() as Ch:
        data = make_model_dict(Ch=Ch)
        path.write_bytes(pickle.dumps(data, protocol=2))
    return path


@pytest.fixture(scope="module")
def model(model_file):
    return ManoModel.load(model_file, dtype=torch.float64)


@pytest.fixture(scope="module")
def plain():
    return make_model_dict()


def naive_mano(d, theta, betas, transl):
    """Independent per-vertex loop: shape → pose blend → tree → skin, with scipy rotations."""
    v_shaped = d["v_template"] + d["shapedirs"] @ betas
    J_reg = d["J_regressor"].toarray()
    Jr = J_reg @ v_shaped
    R = [Rotation.from_rotvec(t).as_matrix() for t in theta]
    G = []
    for j in range(J):
        local = np.eye(4)
        local[:3, :3] = R[j]
        local[:3, 3] = Jr[j] - (Jr[PARENTS[j]] if j else 0)
        G.append(local if j == 0 else G[PARENTS[j]] @ local)
    feat = np.concatenate([(R[j] - np.eye(3)).ravel() for j in range(1, J)])
    verts = np.empty((V, 3))
    for v in range(V):
        p = v_shaped[v] + d["posedirs"][v] @ feat
        M = np.zeros((4, 4))
        for j in np.flatnonzero(d["weights"][v]):
            unrest = np.eye(4)
            unrest[:3, 3] = -Jr[j]
            M += d["weights"][v, j] * (G[j] @ unrest)
        verts[v] = M[:3, :3] @ p + M[:3, 3] + transl
    by_name = {n: G[i][:3, 3] + transl for i, n in enumerate(MANO_NAMES)}
    order = ["wrist"]
    for f in ("thumb", "index", "middle", "ring", "pinky"):
        by_name[f"{f}_tip"] = verts[TIPS[f]]
        order += [f"{f}1", f"{f}2", f"{f}3", f"{f}_tip"]
    return verts, np.stack([by_name[n] for n in order])


# ------------------------------------------------------------------ loader
def test_loader_turns_chumpy_and_sparse_into_numpy(model_file, plain):
    data = load_mano_pickle(model_file)
    assert "chumpy" not in sys.modules  # loading never imports chumpy
    assert isinstance(data["v_template"], np.ndarray) and isinstance(data["shapedirs"], np.ndarray)
    np.testing.assert_array_equal(data["v_template"], plain["v_template"])
    np.testing.assert_array_equal(data["shapedirs"], plain["shapedirs"])
    assert sp.issparse(data["J_regressor"]) and data["J_regressor"].format == "csc"
    np.testing.assert_array_equal(data["J_regressor"].toarray(), plain["J_regressor"].toarray())
    assert data["bs_style"] == "lbs"


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_loader_handles_pickle_protocols(tmp_path, plain, protocol):
    path = tmp_path / "MANO_LEFT.pkl"
    with fake_chumpy() as Ch:
        path.write_bytes(pickle.dumps({**plain, "v_template": Ch(plain["v_template"])}, protocol=protocol))
    m = ManoModel.load(path, dtype=torch.float64)
    assert m.side == "left"
    np.testing.assert_array_equal(m.v_template.numpy(), plain["v_template"])


def test_old_module_paths_are_allowed():
    u = ManoUnpickler(io.BytesIO(b""))
    for module, name in (("scipy.sparse.csc", "csc_matrix"), ("numpy.core.multiarray", "_reconstruct"),
                         ("chumpy.ch", "Ch"), ("copy_reg", "_reconstructor")):
        assert u.find_class(module, name) is not None


class _Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("payload", ["system", "eval", "popen", "handwritten"])
def test_malicious_pickles_are_refused_without_running(tmp_path, plain, payload):
    import builtins
    import subprocess

    marker = tmp_path / "pwned"
    path = tmp_path / "MANO_RIGHT.pkl"
    if payload == "handwritten":  # the classic protocol-0 exploit: os.system('touch …')
        path.write_bytes(f"cos\nsystem\n(Vtouch {marker}\ntR.".encode())
    else:
        evil = {"system": _Evil(os.system, f"touch {marker}"),
                "eval": _Evil(builtins.eval, f"open({str(marker)!r}, 'w').close()"),
                "popen": _Evil(subprocess.Popen, ["touch", str(marker)])}[payload]
        path.write_bytes(pickle.dumps({**plain, "weights": evil}, protocol=2))
    with pytest.raises(UnsafePickleError, match="refusing to load"):
        ManoModel.load(path)
    assert not marker.exists()


def test_allowed_helpers_cannot_be_abused(tmp_path):
    # copyreg._reconstructor may only build the loader's own stand-ins
    proto0 = b"ccopy_reg\n_reconstructor\n(c__builtin__\nset\nc__builtin__\nobject\nNtR."
    with pytest.raises(UnsafePickleError, match="reconstruct"):
        ManoUnpickler(io.BytesIO(proto0)).load()
    # _codecs.encode only does latin-1
    rot13 = b"c_codecs\nencode\n(Vabc\nVrot13\ntR."
    with pytest.raises(UnsafePickleError, match="rot13"):
        ManoUnpickler(io.BytesIO(rot13)).load()


def test_bad_files(tmp_path, plain):
    with pytest.raises(FileNotFoundError, match="MANO"):
        ManoModel.load(tmp_path / "MANO_RIGHT.pkl")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="dict"):
        ManoModel.load(tmp_path / "list.pkl")
    (tmp_path / "partial.pkl").write_bytes(pickle.dumps({k: v for k, v in plain.items() if k != "weights"}))
    with pytest.raises(ValueError, match="missing weights"):
        ManoModel.load(tmp_path / "partial.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="not a readable MANO"):
        ManoModel.load(tmp_path / "junk.pkl")
    bad = {**plain, "posedirs": plain["posedirs"][:, :, :100]}
    (tmp_path / "shape.pkl").write_bytes(pickle.dumps(bad))
    with pytest.raises(ValueError, match="posedirs"):
        ManoModel.load(tmp_path / "shape.pkl")


# ------------------------------------------------------------------ skinning
def test_zero_pose_is_the_template_plus_shape(model, plain):
    betas = np.random.default_rng(1).normal(size=(2, S))
    out = model.forward(pose=np.zeros((2, 45)), betas=betas)
    expected = plain["v_template"] + np.einsum("vcs,bs->bvc", plain["shapedirs"], betas)
    np.testing.assert_allclose(out.vertices.numpy(), expected, atol=1e-12)
    assert out.vertices.shape == (2, V, 3) and out.joints.shape == (2, 21, 3)
    regressed = np.einsum("jv,bvc->bjc", plain["J_regressor"].toarray(), expected)
    np.testing.assert_allclose(out.joints[:, 0].numpy(), regressed[:, 0], atol=1e-12)
    np.testing.assert_allclose(out.joints[:, 4].numpy(), expected[:, TIPS["thumb"]], atol=1e-12)  # thumb tip
    np.testing.assert_allclose(out.joints[:, 1].numpy(), regressed[:, 13], atol=1e-12)  # thumb CMC = MANO thumb1


def test_global_rotation_rotates_everything_about_the_wrist(model):
    rng = np.random.default_rng(2)
    theta = rng.normal(0, 0.3, (1, 45))
    betas = rng.normal(size=(1, S))
    rotvec = np.array([[0.3, -1.1, 0.7]])
    t = np.array([[0.1, -0.2, 0.5]])
    base = model.forward(pose=theta, betas=betas)
    rot = model.forward(pose=theta, betas=betas, global_orient=rotvec, transl=t)
    R = Rotation.from_rotvec(rotvec[0]).as_matrix()
    wrist = base.joints[0, 0].numpy()
    for a, b in ((base.vertices, rot.vertices), (base.joints, rot.joints)):
        np.testing.assert_allclose(b[0].numpy(), (a[0].numpy() - wrist) @ R.T + wrist + t[0], atol=1e-12)


def test_single_joint_rotation_moves_only_its_subtree(model, plain):
    k = MANO_NAMES.index("index2")
    subtree = {k, MANO_NAMES.index("index3")}
    theta = np.zeros((1, 15, 3))
    theta[0, k - 1] = [0.0, 0.0, 0.9]
    rest, bent = model.forward(), model.forward(pose=theta)
    moved = np.linalg.norm((bent.vertices - rest.vertices)[0].numpy(), axis=-1) > 1e-12
    skinned = plain["weights"][:, sorted(subtree)].sum(1) > 0
    assert moved.any() and not (moved & ~skinned).any()
    assert moved[skinned].mean() > 0.95
    jmoved = np.linalg.norm((bent.joints - rest.joints)[0].numpy(), axis=-1) > 1e-12
    assert set(np.flatnonzero(jmoved)) == {7, 8}  # index DIP (MANO index3) and index tip


def test_lbs_matches_naive_per_vertex_loop(model, plain):
    rng = np.random.default_rng(3)
    theta = rng.normal(0, 0.4, (2, 16, 3))
    betas = rng.normal(size=(2, S))
    transl = rng.normal(0, 0.1, (2, 3))
    out = model.forward(pose=theta[:, 1:], betas=betas, global_orient=theta[:, 0], transl=transl)
    for b in range(2):
        verts, joints = naive_mano(plain, theta[b], betas[b], transl[b])
        np.testing.assert_allclose(out.vertices[b].numpy(), verts, atol=1e-10)
        np.testing.assert_allclose(out.joints[b].numpy(), joints, atol=1e-10)


def test_pca_and_hand_mean(model, plain):
    rng = np.random.default_rng(4)
    coeffs = rng.normal(0, 0.5, (3, 12))
    full = coeffs @ plain["hands_components"][:12]
    np.testing.assert_allclose(model.forward(pose=coeffs, pca=True).vertices.numpy(),
                               model.forward(pose=full).vertices.numpy(), atol=1e-12)
    np.testing.assert_allclose(model.forward(pose=full, flat_hand_mean=False).vertices.numpy(),
                               model.forward(pose=full + plain["hands_mean"]).vertices.numpy(), atol=1e-12)
    # (B, 15, 3) is the same as (B, 45)
    np.testing.assert_allclose(model.forward(pose=full.reshape(3, 15, 3)).joints.numpy(),
                               model.forward(pose=full).joints.numpy())


def test_float32_batch_and_gradients(model_file):
    m32 = ManoModel.load(model_file)
    pose = torch.zeros(4, 45, requires_grad=True)
    out = m32.forward(pose=pose)
    assert out.vertices.dtype == torch.float32
    out.vertices.square().sum().backward()
    assert torch.isfinite(pose.grad).all()
    sj = m32.sparse_joints(pose=torch.zeros(5, 45), fps=10.0)
    assert sj.positions.shape == (5, 42, 3) and sj.valid[:, 21:].all() and not sj.valid[:, :21].any()
    assert sj.embodiment == "mano_right" and sj.frame == "mano"


@pytest.mark.parametrize("kwargs, match", [
    ({"pose": np.zeros((2, 44))}, "pose"), ({"pose": np.zeros((2, 45)), "betas": np.zeros((3, 10))}, "betas"),
    ({"pose": np.zeros((1, 45)), "betas": np.zeros((1, 11))}, "betas"),
    ({"pose": np.zeros((1, 45)), "global_orient": np.full((1, 3), np.nan)}, "global_orient"),
    ({"pose": np.zeros((1, 45)), "transl": np.zeros((1, 2))}, "transl"),
    ({"pose": np.zeros((1, 46)), "pca": True}, "PCA")])
def test_bad_inputs(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        model.forward(**kwargs)
