"""Roll a hand joint trajectory plus a wrist path (or one per hand of a left/right pair) through a MuJoCo scene and
render it from a camera.

Two modes:

* ``"kinematic"``: replay. Each frame writes the hand root pose, the actuated joints and (from the coupling) the
  mimic joints into ``qpos``; objects stay where the scene put them. Exact and fast.
* ``"physics"``: the wrist is a mocap target welded to the hand, fingers are position servos tracking ``q``;
  both are interpolated linearly across the substeps of each frame. Contacts act and objects move. A state that
  blows up (NaN, huge accelerations) stops the rollout and marks it ``stable=False``.

The returned :class:`~embodiments.SparseJoints` come from the embodiment's own FK (pinocchio) of the rolled-out q,
composed with the hand's world pose and the camera extrinsics, so they agree with MuJoCo's bodies by construction
and by test; a pair fills both halves of the 42 slots. Joints occluded in the render stay valid; joints outside the
image (or behind the camera) do not.

A one-hand scene is the one-element case of the same code: every per-hand array is gathered over the scene's
hands, and per-hand inputs and outputs are plain arrays for one hand, dicts keyed by hand name for a pair.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping

import mujoco
import numpy as np

from embodiments import Embodiment, JointLimitWarning, SparseJoints
from embodiments.base import LIMIT_TOLERANCE
from embodiments.transforms import apply_transform, invert_transform, make_transform, project

from .camera import cv_from_mujoco_cam
from .hand_pose import join_names
from .render import FrameRenderer
from .scene import HandsLike, Scene, build_scene, scene_hands
from .visibility import rollout_occluders

MODES = ("kinematic", "physics")


@dataclasses.dataclass
class SimRollout:
    """What a rollout produced. T frames of size H × W; K (objects) objects.

    ``q``, ``q_target`` and ``T_world_hand`` are arrays for a one-hand scene and dicts hand name → array for a pair
    (``by_hand`` gives the dict form for both).

    Attributes:
        frames: (T, H, W, 3) uint8 RGB.
        joints: SparseJoints in the camera frame (OpenCV) with ``K``; invalid where the joint leaves the image.
            A pair fills both halves and its ``embodiment`` is ``"<left>+<right>"``.
        q: (T, dof) hand joints that were rendered (the commanded ones in kinematic mode, measured in physics).
        q_target: (T, dof) commanded joints after clipping to the limits.
        K: (3, 3) pixel intrinsics of the rendered size.
        T_world_cam: (T, 4, 4) camera poses (OpenCV axes).
        T_world_hand: (T, 4, 4) hand root poses that were rendered (measured in physics).
        object_names: names of the scene's objects; object_poses: (T, K, 4, 4) their world poses.
        qpos: (T, nq) the full MuJoCo state that was rendered (hand root, every hand joint, objects).
        depth: optional (T, H, W) float32 metres along the optical axis.
        segmentation: optional (T, H, W) int32 geom id per pixel, −1 for background; see ``geom_labels``.
        geom_labels: (ngeom,) int8 class of each geom (``scene.LABEL_*``: hand 1, object 2, environment 3).
        visible: optional (T, 42) bool, per joint and frame whether the camera sees it (computed when both depth
            and segmentation are rendered; :mod:`sim_bridge.visibility`). Valid but not visible = occluded.
        occluded_by: optional (T, 42) int8, what hides each joint (``visibility.OCCLUDER_NAMES``: -1 not in the
            image, 0 visible, 1 own palm, 2 own finger, 3 other hand, 4 object, 5 environment).
        stable: False if physics blew up; the arrays then stop at the last good frame.
        clipped_joints: names of joints whose commanded angles were outside the limits and were clipped
            (``"<hand>/<joint>"`` in a pair).
        issues: human-readable notes (clipping, instability).
        hands: the hands' embodiment names, left before right in a pair.
    """

    frames: np.ndarray
    joints: SparseJoints
    q: np.ndarray | dict[str, np.ndarray]
    q_target: np.ndarray | dict[str, np.ndarray]
    K: np.ndarray
    T_world_cam: np.ndarray
    T_world_hand: np.ndarray | dict[str, np.ndarray]
    object_names: list[str]
    object_poses: np.ndarray
    qpos: np.ndarray | None = None
    depth: np.ndarray | None = None
    segmentation: np.ndarray | None = None
    geom_labels: np.ndarray | None = None
    visible: np.ndarray | None = None
    occluded_by: np.ndarray | None = None
    mode: str = "kinematic"
    camera: str = "ego"
    fps: float = 16.0
    stable: bool = True
    clipped_joints: list[str] = dataclasses.field(default_factory=list)
    issues: list[str] = dataclasses.field(default_factory=list)
    hands: tuple[str, ...] = ()

    def __len__(self) -> int:
        return self.frames.shape[0]

    def by_hand(self, field: str) -> dict[str, np.ndarray]:
        """``q``, ``q_target`` or ``T_world_hand`` as hand name → array, for one hand or a pair."""
        if field not in ("q", "q_target", "T_world_hand"):
            raise ValueError(f"by_hand: field must be 'q', 'q_target' or 'T_world_hand', got {field!r}")
        value = getattr(self, field)
        return dict(value) if isinstance(value, Mapping) else {self.hands[0]: value}


# --------------------------------------------------------------------------- input checks
def check_wrist_path(wrist_path: np.ndarray, T: int | None = None, field: str = "wrist_path") -> np.ndarray:
    """Validate world poses (T, 4, 4) of the hand root: finite, rotations orthonormal and right-handed."""
    w = np.asarray(wrist_path, dtype=np.float64)
    if w.ndim != 3 or w.shape[1:] != (4, 4) or (T is not None and w.shape[0] != T):
        want = "(T, 4, 4)" if T is None else f"({T}, 4, 4) (one pose per frame of q)"
        raise ValueError(f"{field} must have shape {want}, got {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError(f"{field} contains NaN or inf")
    R = w[:, :3, :3]
    if np.abs(R @ np.swapaxes(R, 1, 2) - np.eye(3)).max() > 1e-4 or np.any(np.linalg.det(R) < 0):
        raise ValueError(f"{field} rotations must be orthonormal with determinant +1")
    return w


def _check_q(emb: Embodiment, q: np.ndarray, field: str = "q") -> tuple[np.ndarray, list[str]]:
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != emb.dof or q.shape[0] < 1:
        raise ValueError(f"{field} must have shape (T, {emb.dof}) for {emb.name} ({', '.join(emb.joint_names)}), "
                         f"got {q.shape}")
    if not np.isfinite(q).all():
        raise ValueError(f"{field} contains NaN or inf")
    out = ((q < emb.lower - LIMIT_TOLERANCE) | (q > emb.upper + LIMIT_TOLERANCE)).any(0)
    clipped = [n for n, o in zip(emb.joint_names, out, strict=True) if o]
    return np.clip(q, emb.lower, emb.upper), clipped


def per_hand(value, hands: tuple[Embodiment, ...], field: str) -> list:
    """One entry of ``value`` per hand, in ``hands`` order: a dict keyed by hand name or side (any number of
    hands), or the bare value for a one-hand scene."""
    if isinstance(value, Mapping):
        out: list = [None] * len(hands)
        for key, v in value.items():
            i = next((i for i, e in enumerate(hands) if key in (e.name, e.side)), None)
            if i is None:
                raise ValueError(f"{field}: no hand {key!r} in the scene; key by hand name "
                                 f"({', '.join(e.name for e in hands)}) or side ({', '.join(e.side for e in hands)})")
            if out[i] is not None:
                raise ValueError(f"{field}: hand {hands[i].name} is given twice (by name and by side)")
            out[i] = v
        missing = [e.name for e, v in zip(hands, out, strict=True) if v is None]
        if missing:
            raise ValueError(f"{field}: missing the hand(s) {', '.join(missing)}")
        return out
    if len(hands) == 1:
        return [value]
    example = ", ".join(f"{e.side!r}: ..." for e in hands)
    raise ValueError(f"{field}: a scene with hands {join_names([e.name for e in hands])} needs one entry per hand, "
                     f"as a dict keyed by hand name or side, e.g. {{{example}}}")


def _check_size(size) -> tuple[int, int]:
    try:
        H, W = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (H, W) integers, got {size!r}") from None
    if H <= 0 or W <= 0:
        raise ValueError(f"size must be positive (H, W), got {size!r}")
    return H, W


# --------------------------------------------------------------------------- geometry
def pose_to_qpos(T: np.ndarray) -> np.ndarray:
    """Free-joint qpos (..., 7) = position and wxyz quaternion of poses (..., 4, 4)."""
    T = np.asarray(T, dtype=np.float64)
    flat = T.reshape(-1, 4, 4)
    out = np.empty((flat.shape[0], 7))
    out[:, :3] = flat[:, :3, 3]
    for i, Ti in enumerate(flat):
        mujoco.mju_mat2Quat(out[i, 3:], Ti[:3, :3].reshape(-1))
    return out.reshape(T.shape[:-2] + (7,))


def body_poses(data: mujoco.MjData, bodies: np.ndarray) -> np.ndarray:
    """World poses (len(bodies), 4, 4) of bodies in the current state."""
    return make_transform(data.xmat[bodies].reshape(-1, 3, 3), data.xpos[bodies])


def camera_joints(emb: Embodiment, q: np.ndarray, T_world_hand: np.ndarray, T_world_cam: np.ndarray,
                  K: np.ndarray, size: tuple[int, int], fps: float) -> SparseJoints:
    """SparseJoints in the camera frame: FK of q (T, dof) → world by the hand poses → camera by the extrinsics.

    Validity: the hand's slots, minus joints behind the camera or projecting outside the H × W image.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JointLimitWarning)  # measured physics q may graze a limit
        root, mask = emb.sparse_joints(np.clip(q, emb.lower, emb.upper))
    T_cam_hand = invert_transform(T_world_cam) @ T_world_hand
    cam = apply_transform(T_cam_hand, root)  # (T, 42, 3)
    uvd, in_front = project(cam, K)
    H, W = size
    with np.errstate(invalid="ignore"):
        inside = in_front & (uvd[..., 0] >= 0) & (uvd[..., 0] < W) & (uvd[..., 1] >= 0) & (uvd[..., 1] < H)
    return SparseJoints(cam, valid=mask[None] & inside, frame="camera", fps=fps, embodiment=emb.name, K=K)


# --------------------------------------------------------------------------- rollout
def rollout(embodiment: HandsLike, q: np.ndarray | Mapping[str, np.ndarray],
            wrist_path: np.ndarray | Mapping[str, np.ndarray], camera: str = "ego", mode: str = "kinematic",
            size: tuple[int, int] = (128, 128), depth: bool = False, segmentation: bool = False,
            scene: Scene | None = None, seed: int = 0, fps: float = 16.0, camera_path: np.ndarray | None = None,
            max_qacc: float = 1e6, renderer: FrameRenderer | None = None) -> SimRollout:
    """Roll out joints ``q`` (T, dof) with hand root world poses ``wrist_path`` (T, 4, 4) and render them.

    Args:
        embodiment: one hand, or a left/right pair such as ``("dex3_left", "dex3_right")`` (see
            :func:`~sim_bridge.scene.scene_hands`); a pair takes ``q`` and ``wrist_path`` as dicts keyed by hand
            name or side, e.g. ``{"left": q_l, "right": q_r}``, with the same T for both hands.
        camera: a camera of the scene ("ego" head camera, "third").
        mode: "kinematic" (set qpos) or "physics" (servo targets, contacts, substeps).
        size: rendered (H, W).
        scene: a scene from :func:`build_scene` of the same hand(s) (built from ``seed`` if None). Physics changes
            its timestep and ``camera_path`` moves its camera, in place.
        camera_path: optional (T, 4, 4) OpenCV world poses of a moving world-fixed camera (head motion).
        max_qacc: physics is declared unstable above this joint acceleration.
        renderer: a :class:`FrameRenderer` of this scene's model to reuse (its size and depth/segmentation
            settings then win); by default one is made and closed here.
    Out-of-limit q is clipped, warned about (JointLimitWarning) and listed in ``clipped_joints``.
    """
    embs = scene_hands(embodiment)
    name = join_names([e.name for e in embs])
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps}")
    H, W = _check_size(size)
    pair = len(embs) > 1
    qs, clipped = [], []
    for e, qi in zip(embs, per_hand(q, embs, "q"), strict=True):
        qc, cl = _check_q(e, qi, f"q[{e.name!r}]" if pair else "q")
        if qs and len(qc) != len(qs[0]):
            raise ValueError(f"q[{e.name!r}] has {len(qc)} frames but q[{embs[0].name!r}] has {len(qs[0])}")
        qs.append(qc)
        clipped += [f"{e.name}/{n}" for n in cl] if pair else cl
    T = qs[0].shape[0]
    wrists = [check_wrist_path(w, T, f"wrist_path[{e.name!r}]" if pair else "wrist_path")
              for e, w in zip(embs, per_hand(wrist_path, embs, "wrist_path"), strict=True)]
    if scene is None:
        scene = build_scene(embs, seed=seed)
    elif scene.name != name:
        raise ValueError(f"scene was built for {scene.name!r}, not {name!r}")
    cam_id = scene.camera_id(camera)
    if camera_path is not None:
        camera_path = check_wrist_path(camera_path, T) if np.ndim(camera_path) == 3 else None
        if camera_path is None:
            raise ValueError(f"camera_path must have shape ({T}, 4, 4)")
    issues = []
    if clipped:
        msg = f"{name}: clipped joint angles outside limits for {', '.join(clipped)}"
        warnings.warn(msg, JointLimitWarning, stacklevel=2)
        issues.append(msg)

    # Gather every hand's addresses so one hand and a pair run the same vectorised code.
    hands = scene.hands
    n_hands, dofs = len(hands), [e.dof for e in embs]
    q_all = np.concatenate(qs, axis=1)  # (T, D) commanded, hands side by side
    qadr = np.concatenate([h.qadr for h in hands])
    actuators = np.concatenate([h.actuators for h in hands])
    free_qadr = np.concatenate([h.free_qadr + np.arange(7) for h in hands])
    mocap = np.array([h.mocap_id for h in hands])
    roots = np.array([h.root_body for h in hands])
    wrist_qpos = np.stack([pose_to_qpos(w) for w in wrists], axis=1)  # (T, n_hands, 7)

    model = scene.model
    data = mujoco.MjData(model)
    if renderer is not None:
        H, W, depth, segmentation = renderer.height, renderer.width, renderer.depth, renderer.segmentation
    fr = renderer or FrameRenderer(model, H, W, depth=depth, segmentation=segmentation)
    try:
        out = fr.allocate(T)
        K = scene.intrinsics(camera, (H, W))
        hand_T = np.empty((T, n_hands, 4, 4))
        cam_T = np.empty((T, 4, 4))
        obj_T = np.empty((T, len(scene.object_bodies), 4, 4))
        q_out = np.empty((T, q_all.shape[1]))
        qpos_out = np.empty((T, model.nq))
        seg_buf = np.empty((H, W, 2), np.int32) if segmentation else None

        def set_pose(t: int) -> None:
            data.qpos[free_qadr] = wrist_qpos[t].reshape(-1)
            data.qpos[qadr] = q_all[t]
            scene.apply_mimic(data.qpos)

        def record(t: int) -> None:
            if camera_path is not None:
                scene.set_camera_pose(camera, camera_path[t])
                mujoco.mj_camlight(model, data)
            fr.render_into(data, cam_id, out, t, seg_buf)
            hand_T[t] = body_poses(data, roots)
            cam_T[t] = cv_from_mujoco_cam(data.cam_xpos[cam_id], data.cam_xmat[cam_id])
            obj_T[t] = body_poses(data, scene.object_bodies)
            q_out[t] = data.qpos[qadr]
            qpos_out[t] = data.qpos

        done, stable = T, True
        if mode == "kinematic":
            for t in range(T):
                set_pose(t)
                mujoco.mj_kinematics(model, data)
                mujoco.mj_camlight(model, data)
                record(t)
        else:
            n_sub = max(1, math.ceil(1.0 / (fps * scene.config.timestep)))
            model.opt.timestep = 1.0 / (fps * n_sub)
            set_pose(0)
            data.mocap_pos[mocap] = wrist_qpos[0, :, :3]
            data.mocap_quat[mocap] = wrist_qpos[0, :, 3:]
            data.ctrl[actuators] = q_all[0]
            mujoco.mj_forward(model, data)
            record(0)
            for t in range(1, T):
                p0, p1 = wrist_qpos[t - 1, :, :3], wrist_qpos[t, :, :3]
                q0, q1 = wrist_qpos[t - 1, :, 3:], wrist_qpos[t, :, 3:]
                q1 = np.where((q0 * q1).sum(-1, keepdims=True) >= 0, q1, -q1)  # same hemisphere for interpolation
                for s in range(1, n_sub + 1):
                    a = s / n_sub
                    data.mocap_pos[mocap] = (1 - a) * p0 + a * p1
                    quat = (1 - a) * q0 + a * q1  # normalised lerp: frames are close, so this is slerp to 1e-4
                    data.mocap_quat[mocap] = quat / np.linalg.norm(quat, axis=-1, keepdims=True)
                    data.ctrl[actuators] = (1 - a) * q_all[t - 1] + a * q_all[t]
                    mujoco.mj_step(model, data)
                bad_warning = data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number > 0
                if bad_warning or not np.isfinite(data.qpos).all() or np.abs(data.qacc).max() > max_qacc:
                    done, stable = t, False
                    issues.append(f"physics became unstable at frame {t} (NaN or |qacc| > {max_qacc:g}); "
                                  "the rollout stops there")
                    break
                # mj_step leaves body poses at the start of its step; bring them level with qpos for the render.
                mujoco.mj_kinematics(model, data)
                mujoco.mj_camlight(model, data)
                record(t)
    finally:
        if renderer is None:
            fr.close()

    sl = slice(0, done)
    split = np.cumsum(dofs)[:-1]
    q_hands = np.split(q_out[sl], split, axis=1)
    # Each hand's SparseJoints hold only its own side's slots (the rest are invalid, zero), so the pair's joints
    # are their sum and union.
    parts = [camera_joints(e, qh, hand_T[sl, i], cam_T[sl], K, (H, W), fps)
             for i, (e, qh) in enumerate(zip(embs, q_hands, strict=True))]
    joints = SparseJoints(np.sum([p.positions for p in parts], axis=0), np.any([p.valid for p in parts], axis=0),
                          frame="camera", fps=fps, embodiment=name, K=K)

    occluded_by = None
    if depth and segmentation:
        occluded_by = rollout_occluders(scene, out["segmentation"][sl], out["depth"][sl], joints)

    def per_hand_out(arrays: list[np.ndarray]) -> np.ndarray | dict[str, np.ndarray]:
        return {e.name: a for e, a in zip(embs, arrays, strict=True)} if pair else arrays[0]

    return SimRollout(
        frames=out["rgb"][sl], joints=joints, q=per_hand_out(q_hands),
        q_target=per_hand_out(np.split(q_all[sl], split, axis=1)), K=K, T_world_cam=cam_T[sl],
        T_world_hand=per_hand_out(list(np.moveaxis(hand_T[sl], 1, 0))), object_names=list(scene.object_names),
        object_poses=obj_T[sl], qpos=qpos_out[sl], depth=out["depth"][sl] if depth else None,
        segmentation=out["segmentation"][sl] if segmentation else None, geom_labels=scene.geom_labels,
        visible=None if occluded_by is None else occluded_by == 0, occluded_by=occluded_by, mode=mode,
        camera=camera, fps=fps, stable=stable, clipped_joints=clipped, issues=issues,
        hands=tuple(e.name for e in embs),
    )
