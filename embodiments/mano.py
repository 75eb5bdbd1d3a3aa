"""Real MANO: load the licensed ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` safely and skin the mesh (batched torch).

The official files are Python-2 pickles holding numpy arrays, a scipy sparse joint regressor and chumpy ``Ch``
objects. Unpickling runs whatever the file names, so :class:`ManoUnpickler` resolves only an explicit allow-list:
numpy array/dtype/scalar reconstruction, scipy csc/csr matrices and chumpy's ``Ch`` — the last two through small
local stand-ins that hold the pickled state and are turned into numpy/scipy objects afterwards (chumpy itself is not
needed, nor imported). Anything else is refused with :class:`UnsafePickleError` before it can run.

``ManoModel.forward`` implements MANO's linear blend skinning: shape blend shapes, pose blend shapes, the kinematic
tree, skinning. Joints come out as 21 keypoints in the MANO/OpenPose order (16 regressed skeleton joints plus 5
fingertip vertices), ready for :class:`~embodiments.sparse.SparseJoints`. Everything is expressed in MANO's own
model frame (metres); it is *not* the skeleton's hand root frame of :mod:`embodiments.human`.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from .layout import SIDES

NUM_MANO_JOINTS = 16
# Commonly used fingertip vertices of the MANO mesh, thumb..pinky.
TIP_VERTEX_IDS = (745, 317, 444, 556, 673)
# MANO joints are ordered wrist, index(3), middle(3), pinky(3), ring(3), thumb(3); the fingertips appended after them
# are thumb, index, middle, ring, pinky (16..20). This picks the MANO/OpenPose order used by the slot layout.
MANO_TO_OPENPOSE = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)
REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle named a class or function outside the MANO loader's allow-list."""


# ------------------------------------------------------------------ restricted unpickling
class _ChumpyStandIn:
    """Stands in for ``chumpy.ch.Ch`` while unpickling: keeps the pickled state, runs nothing."""

    def __setstate__(self, state) -> None:
        self.state = state

    def to_numpy(self) -> np.ndarray:
        state = self.state if isinstance(self.state, dict) else {}
        if "x" not in state:
            raise ValueError("MANO file holds a chumpy expression without a stored value 'x'; only plain chumpy "
                             "arrays (chumpy.ch.Ch) are supported")
        return np.asarray(_to_plain(state["x"]))


class _SparseStandIn:
    """Stands in for a scipy csc/csr matrix while unpickling (old and new scipy module paths alike)."""

    fmt = "csc"

    def __setstate__(self, state) -> None:
        self.state = state

    def to_scipy(self):
        import scipy.sparse as sp

        s = self.state if isinstance(self.state, dict) else {}
        shape = s.get("_shape", s.get("shape"))
        if shape is None or not all(k in s for k in ("data", "indices", "indptr")):
            raise ValueError("MANO file holds a sparse matrix without data/indices/indptr/shape")
        cls = sp.csc_matrix if self.fmt == "csc" else sp.csr_matrix
        return cls((np.asarray(s["data"]), np.asarray(s["indices"]), np.asarray(s["indptr"])),
                   shape=tuple(int(n) for n in shape))


class _CscStandIn(_SparseStandIn):
    fmt = "csc"


class _CsrStandIn(_SparseStandIn):
    fmt = "csr"


_STANDINS = (_ChumpyStandIn, _CscStandIn, _CsrStandIn)


def _reconstructor(cls, base, state):
    """Safe replacement for ``copyreg._reconstructor`` (protocol 0/1 object creation): stand-ins only."""
    if cls not in _STANDINS or base is not object:
        raise UnsafePickleError(f"refusing to reconstruct {cls!r} from a MANO file")
    return object.__new__(cls)


def _encode_latin1(text, encoding="latin1"):
    """Safe replacement for ``_codecs.encode`` as Python 3 pickles use it for bytes: latin-1 only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], object]:
    from numpy._core import multiarray, numeric

    allowed: dict[tuple[str, str], object] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = multiarray._reconstruct
        allowed[(mod, "scalar")] = multiarray.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = numeric._frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    for mod in ("scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.compressed"):
        allowed[(mod, "csc_matrix")] = _CscStandIn
    for mod in ("scipy.sparse.csr", "scipy.sparse._csr", "scipy.sparse.compressed"):
        allowed[(mod, "csr_matrix")] = _CsrStandIn
    for mod in ("chumpy.ch", "chumpy"):
        allowed[(mod, "Ch")] = _ChumpyStandIn
    for mod in ("copy_reg", "copyreg"):
        allowed[(mod, "_reconstructor")] = _reconstructor
    allowed[("_codecs", "encode")] = _encode_latin1
    for mod in ("__builtin__", "builtins"):
        allowed.update({(mod, "object"): object, (mod, "set"): set, (mod, "frozenset"): frozenset})
    return allowed


class ManoUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the globals a MANO model file needs (see module docstring)."""

    def __init__(self, file, **kw):
        kw.setdefault("encoding", "latin1")  # the official files are Python-2 pickles of numpy buffers
        super().__init__(file, **kw)
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refusing to load '{module}.{name}': a MANO model file may only contain numpy "
                                    "arrays, scipy sparse matrices and chumpy arrays") from None

    def persistent_load(self, pid):
        raise UnsafePickleError("refusing a persistent id in a MANO model file")


def _to_plain(obj):
    """Replace stand-ins by numpy arrays / scipy matrices, recursively through dicts, lists and tuples."""
    if isinstance(obj, _ChumpyStandIn):
        return obj.to_numpy()
    if isinstance(obj, _SparseStandIn):
        return obj.to_scipy()
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_plain(v) for v in obj)
    return obj


def load_mano_pickle(path: str | os.PathLike) -> dict:
    """Read a MANO ``.pkl`` with :class:`ManoUnpickler`; returns a dict of numpy arrays / scipy matrices."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no MANO model file at {path} (MANO_RIGHT.pkl / MANO_LEFT.pkl from the MANO "
                                "website, which needs a licence)")
    with open(path, "rb") as f:
        try:
            raw = ManoUnpickler(f).load()
        except UnsafePickleError as e:
            raise UnsafePickleError(f"{path}: {e}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"{path} is not a readable MANO model pickle: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a MANO model file holds a dict, got {type(raw).__name__}")
    return _to_plain(raw)


# ------------------------------------------------------------------ the model
def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: axis-angle (..., 3) → rotation matrices (..., 3, 3).

    Written out (a few lines) because torch has no builtin; sin(θ)/θ and (1−cos θ)/θ² use their Taylor series near
    θ = 0 so values and gradients stay finite at the zero pose.
    """
    theta2 = (rotvec * rotvec).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    small = theta2 < 1e-8
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2_safe)
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(rotvec.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + a * K + b * (K @ K)


@dataclasses.dataclass
class ManoOutput:
    """Result of :meth:`ManoModel.forward`: vertices (B, 778, 3), joints (B, 21, 3) in MANO/OpenPose order, and the
    16 skeleton joints' world transforms (B, 16, 4, 4)."""

    vertices: torch.Tensor
    joints: torch.Tensor
    transforms: torch.Tensor


class ManoModel:
    """A MANO hand model (arrays as torch buffers) with a batched linear-blend-skinning ``forward``.

    Attributes (V vertices, J = 16 joints, S shape coefficients): ``v_template`` (V, 3), ``shapedirs`` (V, 3, S),
    ``posedirs`` (V, 3, 9·(J−1)), ``J_regressor`` (J, V), ``weights`` (V, J), ``parents`` (J,) with −1 at the
    root, ``faces`` (F, 3), ``hands_components`` (45, 45) PCA basis of the hand pose, ``hands_mean`` (45,).
    """

    def __init__(self, v_template, shapedirs, posedirs, J_regressor, weights, parents, faces, hands_components=None,
                 hands_mean=None, side: str = "right", dtype: torch.dtype = torch.float32,
                 tip_vertex_ids: tuple[int, ...] = TIP_VERTEX_IDS):
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=dtype)  # noqa: E731
        self.side, self.dtype = side, dtype
        self.v_template = t(v_template)
        V = self.v_template.shape[0]
        if self.v_template.shape != (V, 3):
            raise ValueError(f"MANO v_template must be (V, 3), got {tuple(self.v_template.shape)}")
        self.shapedirs = t(shapedirs)
        self.posedirs = t(posedirs)
        self.J_regressor = t(J_regressor)
        self.weights = t(weights)
        self.parents = np.asarray(parents, dtype=np.int64)
        J = len(self.parents)
        self.faces = np.asarray(faces, dtype=np.int64)
        checks = {"shapedirs": (self.shapedirs, (V, 3, None)), "posedirs": (self.posedirs, (V, 3, 9 * (J - 1))),
                  "J_regressor": (self.J_regressor, (J, V)), "weights": (self.weights, (V, J))}
        for field, (arr, shape) in checks.items():
            if arr.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, arr.shape, strict=True)):
                raise ValueError(f"MANO {field} must have shape {tuple('S' if s is None else s for s in shape)} "
                                 f"for V={V}, J={J}; got {tuple(arr.shape)}")
        if self.parents[0] != -1 or any(not (0 <= p < i) for i, p in enumerate(self.parents[1:], 1)):
            raise ValueError("MANO kinematic tree must list the root first and every parent before its children")
        if max(tip_vertex_ids) >= V:
            raise ValueError(f"fingertip vertex ids {tip_vertex_ids} need at least {max(tip_vertex_ids) + 1} vertices")
        self.tip_vertex_ids = tuple(tip_vertex_ids)
        ncomp = 3 * (J - 1)
        self.hands_components = t(np.eye(ncomp) if hands_components is None else hands_components)
        self.hands_mean = t(np.zeros(ncomp) if hands_mean is None else np.ravel(hands_mean))
        # Joints grouped by depth in the tree: each level's world transforms come from the previous level at once.
        depth = np.zeros(J, dtype=np.int64)
        for i in range(1, J):
            depth[i] = depth[self.parents[i]] + 1
        self._levels = [np.flatnonzero(depth == d) for d in range(1, depth.max() + 1)]

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def num_betas(self) -> int:
        return self.shapedirs.shape[-1]

    @classmethod
    def load(cls, path: str | os.PathLike, side: str | None = None, dtype: torch.dtype = torch.float32,
             **kw) -> ManoModel:
        """Load ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` (side from the file name unless given) safely."""
        data = load_mano_pickle(path)
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise ValueError(f"{path}: not a MANO model file, missing {', '.join(missing)}")
        if side is None:
            stem = Path(path).stem.lower()
            side = "left" if "left" in stem else "right"
        J_reg = data["J_regressor"]
        J_reg = J_reg.toarray() if hasattr(J_reg, "toarray") else np.asarray(J_reg)
        kintree = np.asarray(data["kintree_table"]).astype(np.int64)
        if kintree.ndim != 2 or kintree.shape[0] != 2:
            raise ValueError(f"{path}: kintree_table must be (2, J), got {kintree.shape}")
        # Row 0 holds parent ids (the root's is 2³²−1), row 1 the joint ids.
        col_of = {int(j): c for c, j in enumerate(kintree[1])}
        parents = np.array([-1 if c == 0 else col_of[int(kintree[0, c])] for c in range(kintree.shape[1])])
        return cls(v_template=data["v_template"], shapedirs=data["shapedirs"], posedirs=data["posedirs"],
                   J_regressor=J_reg, weights=data["weights"], parents=parents, faces=data["f"],
                   hands_components=data.get("hands_components"), hands_mean=data.get("hands_mean"), side=side,
                   dtype=dtype, **kw)

    # -------------------------------------------------------------- input checks
    def _batch(self, name: str, value, B: int | None, shape: tuple[int, ...]) -> torch.Tensor | None:
        if value is None:
            return None
        x = torch.as_tensor(value, dtype=self.dtype)
        if x.ndim == len(shape):
            x = x[None]
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape or (B is not None and x.shape[0] != B):
            want = ", ".join(str(s) for s in shape)
            raise ValueError(f"MANO {name} must have shape (B, {want}){'' if B is None else f' with B={B}'}, "
                             f"got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError(f"MANO {name} contains NaN or inf")
        return x

    def hand_pose(self, pose, pca: bool = False, flat_hand_mean: bool = True) -> torch.Tensor:
        """Per-joint axis-angle (B, 15, 3) of the 15 finger joints from θ (B, 45)/(B, 15, 3) or PCA coefficients."""
        ncomp = self.hands_components.shape[0]
        x = torch.as_tensor(pose, dtype=self.dtype)
        if pca:
            x = x[None] if x.ndim == 1 else x
            if x.ndim != 2 or not 0 < x.shape[1] <= ncomp:
                raise ValueError(f"MANO pose with pca=True must be (B, n) PCA coefficients, n ≤ {ncomp}; "
                                 f"got {tuple(x.shape)}")
            x = self._batch("pose", x, None, (x.shape[1],))
            theta = x @ self.hands_components[: x.shape[1]]
        else:
            x = x.reshape(x.shape[0], -1) if x.ndim == 3 and x.shape[1:] == (ncomp // 3, 3) else x
            theta = self._batch("pose", x, None, (ncomp,))
        if not flat_hand_mean:
            theta = theta + self.hands_mean
        return theta.reshape(theta.shape[0], -1, 3)

    # -------------------------------------------------------------- skinning
    def forward(self, pose=None, betas=None, global_orient=None, transl=None, pca: bool = False,
                flat_hand_mean: bool = True) -> ManoOutput:
        """Pose and shape the hand by linear blend skinning.

        Args:
            pose: θ, axis-angle of the 15 finger joints (B, 45) or (B, 15, 3); with ``pca=True``, (B, n) PCA
                coefficients of ``hands_components``. Default: zeros.
            betas: shape coefficients (B, ≤ S). Default: zeros (the template's shape).
            global_orient: axis-angle (B, 3) of the root (wrist), applied about the wrist joint.
            transl: translation (B, 3) added to everything.
            flat_hand_mean: True (default) means θ = 0 is the flat template hand; False adds MANO's mean pose
                ``hands_mean`` to θ, as MANO's own code does by default.
        Returns:
            :class:`ManoOutput` with vertices (B, V, 3) and joints (B, 21, 3) in MANO/OpenPose order.
        """
        dt = self.dtype
        if pose is None:
            given = [np.shape(v) for v in (global_orient, transl, betas) if v is not None]
            B = given[0][0] if given and len(given[0]) == 2 else 1
            pose = torch.zeros(B, self.hands_components.shape[0], dtype=dt)
            pca = False
        finger = self.hand_pose(pose, pca=pca, flat_hand_mean=flat_hand_mean)  # (B, 15, 3)
        B = finger.shape[0]
        orient = self._batch("global_orient", global_orient, B, (3,))
        orient = torch.zeros(B, 3, dtype=dt) if orient is None else orient
        if betas is not None:
            betas = torch.as_tensor(betas, dtype=dt)
            betas = betas[None] if betas.ndim == 1 else betas
            if betas.ndim != 2 or betas.shape[1] > self.num_betas:
                raise ValueError(f"MANO betas must have shape (B, n) with n ≤ {self.num_betas}, "
                                 f"got {tuple(betas.shape)}")
            betas = self._batch("betas", betas, B, (betas.shape[1],))
        transl = self._batch("transl", transl, B, (3,))

        # 1. shape blend shapes and the rest-pose joints they imply
        v_shaped = self.v_template.expand(B, -1, -1)
        if betas is not None:
            v_shaped = v_shaped + torch.einsum("vcs,bs->bvc", self.shapedirs[..., : betas.shape[1]], betas)
        J_rest = torch.einsum("jv,bvc->bjc", self.J_regressor, v_shaped)  # (B, J, 3)
        # 2. pose blend shapes from the finger joints' rotations
        rot = axis_angle_to_matrix(torch.cat([orient[:, None], finger], dim=1))  # (B, J, 3, 3)
        eye = torch.eye(3, dtype=dt)
        pose_feature = (rot[:, 1:] - eye).reshape(B, -1)
        v_posed = v_shaped + torch.einsum("vck,bk->bvc", self.posedirs, pose_feature)
        # 3. kinematic tree: world transform of each joint, level by level
        local_t = J_rest.clone()
        local_t[:, 1:] = J_rest[:, 1:] - J_rest[:, self.parents[1:]]
        A = torch.zeros(B, len(self.parents), 4, 4, dtype=dt)
        A[..., :3, :3] = rot
        A[..., :3, 3] = local_t
        A[..., 3, 3] = 1.0
        G = A.clone()
        for level in self._levels:
            G[:, level] = G[:, self.parents[level]] @ A[:, level]
        # 4. skinning: transforms relative to the rest pose, blended per vertex
        G_skin = G.clone()
        G_skin[..., :3, 3] = G[..., :3, 3] - (G[..., :3, :3] @ J_rest[..., None])[..., 0]
        T = torch.einsum("vj,bjrc->bvrc", self.weights, G_skin[..., :3, :])  # (B, V, 3, 4)
        verts = (T[..., :3] @ v_posed[..., None])[..., 0] + T[..., 3]
        joints16 = G[..., :3, 3]
        if transl is not None:
            verts = verts + transl[:, None]
            joints16 = joints16 + transl[:, None]
            G = G.clone()
            G[..., :3, 3] = joints16
        joints = torch.cat([joints16, verts[:, list(self.tip_vertex_ids)]], dim=1)[:, list(MANO_TO_OPENPOSE)]
        return ManoOutput(vertices=verts, joints=joints, transforms=G)

    __call__ = forward

    def sparse_joints(self, fps: float = 16.0, frame: str = "mano", **forward_kw):
        """``forward`` over a sequence (the batch is time) as :class:`SparseJoints` in this hand's slots."""
        from .sparse import SparseJoints

        joints = self.forward(**forward_kw).joints.detach().cpu().numpy()
        return SparseJoints.from_hand(joints, self.side, frame=frame, fps=fps, embodiment=f"mano_{self.side}")
