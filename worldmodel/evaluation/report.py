"""Evaluation that measures control: a generated video against its simulated reference, and control sensitivity.

* :func:`evaluate`: PSNR and SSIM against the simulated frames (``metrics``, torchmetrics inside) and, with a
  keypoint probe (:mod:`worldmodel.evaluation.probe`), the 2D joint error in pixels and PCK@5 px of the hand the probe
  finds in the generated frames against the projections of the commanded joints — reported next to the probe's own
  held-out accuracy, so a reader can tell model error from probe error.
* :func:`control_sensitivity`: perturb the joints (shift the hand, move the fingertips), regenerate with the same
  seed and compare how much the output changes where the hand is (either version) with how much it changes
  elsewhere. A model that follows the joints changes mostly inside the hand region (ratio ≫ 1); one that ignores
  them changes nothing (ratio 1).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from embodiments.layout import FINGERTIPS, NUM_HAND_JOINTS, WRIST, skeleton_edges
from embodiments.sparse import SparseJoints
from embodiments.transforms import scale_intrinsics
from worldmodel.evaluation.metrics import psnr, ssim
from worldmodel.evaluation.probe import PCK_THRESHOLD_PX, describe_heldout, keypoint_error

RATIO_EPS = 1e-4  # added to both mean changes (in [0, 1] units) so "no change anywhere" gives a ratio of 1


# =============================================================================================== helpers
def _as_float_video(frames, name: str) -> np.ndarray:
    """(T, H, W, 3) uint8 or float in [0, 1] → float32 in [0, 1], with a clear error for anything else."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    a = np.asarray(frames)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"{name} must be a video of shape (T, H, W, 3), got {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype.kind != "f":
        raise ValueError(f"{name} must be uint8 (0–255) or float in [0, 1], got dtype {a.dtype}")
    return np.clip(a, 0.0, 1.0).astype(np.float32)


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _resize(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Float video (T, H, W, 3) → (T, h, w, 3), antialiased bilinear."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def _check_joints(joints, name: str = "joints") -> SparseJoints:
    if not isinstance(joints, SparseJoints):
        raise ValueError(f"{name} must be a SparseJoints, got {type(joints).__name__}")
    if joints.frame != "camera":
        raise ValueError(f"{name} must be in the camera frame (frame == 'camera'), got {joints.frame!r}")
    if joints.K is None:
        raise ValueError(f"{name} must carry pixel intrinsics K (SparseJoints(..., K=...)) to be projected")
    return joints


def _finite_or_none(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite_or_none(v) for v in x]
    return x


# =============================================================================================== evaluate
HAND_RADIUS_PX = 6.0  # the hand region of EvalReport.hand_psnr: pixels this close to the commanded skeleton
@dataclasses.dataclass
class EvalReport:
    """Metrics of one generated video against its reference. ``to_dict()`` is what goes into metrics.json.

    psnr/ssim compare with the reference frames (resized to the video's size if they differ); ``keypoints`` holds
    the probe's mean/median 2D joint error (pixels of the video), PCK@5 px, the number of joints compared and the
    probe's own held-out accuracy at the nearest frame size (``probe_heldout``); None without a probe.
    ``frame0_psnr`` compares frame 0 with the reference's (in image-to-video: how faithfully the given image comes
    back); ``hand_psnr`` is the PSNR inside the hand region (pixels within ``HAND_RADIUS_PX`` of the commanded
    skeleton) over the scored frames, None where no joint projects into them.
    """

    num_frames: int
    frame_size: tuple[int, int]
    psnr: float
    ssim: float
    embodiment: str
    frame0_psnr: float | None = None
    hand_psnr: float | None = None
    keypoints: dict | None = None
    exclude_first: bool = False
    reference_resized: bool = False
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready: non-finite numbers (PSNR of identical videos is ∞) become None."""
        d = dataclasses.asdict(self)
        d["frame_size"] = list(self.frame_size)
        return _finite_or_none(d)

    def table(self, title: str = "evaluation"):
        """A rich Table of the metrics."""
        from rich.table import Table

        t = Table(title=title)
        t.add_column("metric")
        t.add_column("value", justify="right")
        t.add_column("note")
        frames = f"{self.num_frames} frames {self.frame_size[0]}×{self.frame_size[1]}"
        t.add_row("PSNR (dB)", f"{self.psnr:.2f}", frames + (", first frame excluded" if self.exclude_first else ""))
        t.add_row("SSIM", f"{self.ssim:.4f}", "reference resized to the video" if self.reference_resized else "")
        t.add_row("frame 0 PSNR (dB)", f"{self.frame0_psnr:.2f}", "the given image, as it comes back")
        if self.hand_psnr is not None:
            t.add_row("hand-region PSNR (dB)", f"{self.hand_psnr:.2f}",
                      f"pixels within {HAND_RADIUS_PX:g} px of the commanded skeleton")
        k = self.keypoints
        if k is not None:
            t.add_row("joint error (px)", f"{k['mean_px']:.2f}", describe_heldout(k.get("probe_heldout")))
            t.add_row("joint error median (px)", f"{k['median_px']:.2f}", f"{k['n_joints']} joints")
            t.add_row(f"PCK@{PCK_THRESHOLD_PX:g}px", f"{k[f'pck@{PCK_THRESHOLD_PX:g}px']:.3f}", self.embodiment)
            occ = k.get("occluded")
            if occ is not None:
                t.add_row("joint error, occluded joints (px)", f"{occ['mean_px']:.2f}",
                          f"{occ['n_joints']} joints hidden in the reference render")
        for n in self.notes:
            t.add_row("note", "", n)
        return t


def evaluate(video, reference, probe=None, exclude_first: bool = False,
             pck_threshold: float = PCK_THRESHOLD_PX) -> EvalReport:
    """Score a generated ``video`` (T, H, W, 3) uint8 (or float in [0, 1]) against a simulated ``reference``.

    Args:
        reference: anything with ``frames`` (T, H0, W0, 3) and ``joints`` (camera-frame SparseJoints with K in
            the pixels of those frames): a ``sim_bridge.SimRollout`` or a ``embodiments.clip.Clip``.
        probe: a :class:`worldmodel.evaluation.probe.KeypointProbe` trained for the reference's embodiment, or None.
        exclude_first: drop frame 0 from PSNR/SSIM and the joint error (in image-to-video it is the given image).
    If the reference carries per-joint visibility (a clip's ``visible`` extra, from ``dexworld synth
    --visibility``/``--occlusion``), the joint error is also reported over the occluded joints alone
    (``keypoints["occluded"]``). If the video's size differs from the reference's, the reference frames are
    resized to it and K scaled.
    """
    frames_ref = getattr(reference, "frames", None)
    joints = getattr(reference, "joints", None)
    if frames_ref is None or joints is None:
        raise ValueError("reference must have .frames (T, H, W, 3) and .joints (SparseJoints with K), e.g. a "
                         f"SimRollout or a Clip; got {type(reference).__name__}")
    vid = _as_float_video(video, "video")
    ref = _as_float_video(frames_ref, "reference.frames")
    joints = _check_joints(joints, "reference.joints")
    T, H, W = vid.shape[:3]
    if ref.shape[0] != T:
        raise ValueError(f"video has {T} frames but the reference has {ref.shape[0]}; they must match")
    if len(joints) != ref.shape[0]:
        raise ValueError(f"reference.joints have {len(joints)} frames but reference.frames has {ref.shape[0]}")
    notes = []
    resized = ref.shape[1:3] != (H, W)
    if resized:
        h0, w0 = ref.shape[1:3]
        ref = _resize(ref, (H, W))
        joints = joints.replace(K=scale_intrinsics(joints.K, W / w0, H / h0))
        notes.append(f"reference {h0}×{w0} resized to the video's {H}×{W}; K scaled to match")
    sl = slice(1, None) if exclude_first and T > 1 else slice(None)
    hand = hand_region(joints, (H, W), HAND_RADIUS_PX)[sl]
    hand_mse = float(((vid[sl] - ref[sl]) ** 2).mean(-1)[hand].mean()) if hand.any() else None
    report = EvalReport(num_frames=T, frame_size=(H, W), psnr=psnr(vid[sl], ref[sl]), ssim=ssim(vid[sl], ref[sl]),
                        embodiment=joints.embodiment, frame0_psnr=psnr(vid[:1], ref[:1]),
                        hand_psnr=None if hand_mse is None else _psnr_of_mse(hand_mse),
                        exclude_first=exclude_first and T > 1, reference_resized=resized, notes=notes)
    if probe is not None and "+" in joints.embodiment and not probe.knows(joints.embodiment):
        report.notes.append(f"no joint error: the probe does not read {joints.embodiment} in one frame (it was "
                            "trained on one-hand frames)")
    elif probe is not None:
        visible = (getattr(reference, "extra", None) or {}).get("visible")
        report.keypoints = keypoint_error(probe, _to_uint8(vid), joints, threshold=pck_threshold,
                                          visible=None if visible is None else np.asarray(visible, bool),
                                          frames_scored=sl)
        if report.keypoints["n_joints"] == 0:
            report.notes.append("no commanded joint of the hand projects into the frames: no joint error")
    return report


def _psnr_of_mse(mse: float) -> float:
    """PSNR (dB, data range 1) of a mean squared error; ∞ for identical pixels, as ``metrics.psnr`` gives."""
    return math.inf if mse <= 0 else float(10 * math.log10(1.0 / mse))


# =============================================================================================== perturbations
def shift_hand(joints: SparseJoints, offset) -> SparseJoints:
    """Translate every valid joint by ``offset`` (3,) metres (or per frame (T, 3)) in the joints' frame."""
    off = np.asarray(offset, np.float64)
    if off.shape not in ((3,), (len(joints), 3)):
        raise ValueError(f"offset must have shape (3,) or ({len(joints)}, 3) metres, got {off.shape}")
    pos = joints.positions + np.where(joints.valid[..., None], off[..., None, :] if off.ndim == 2 else off, 0.0)
    return joints.replace(positions=pos, valid=joints.valid)


def move_fingertips(joints: SparseJoints, distance: float) -> SparseJoints:
    """Move each valid fingertip ``distance`` metres towards its hand's wrist (a partial curl of the tips only)."""
    pos = joints.positions.astype(np.float64).copy()
    for o in (0, NUM_HAND_JOINTS):
        w = o + WRIST
        for tip in (o + f for f in FINGERTIPS):
            ok = joints.valid[:, tip] & joints.valid[:, w]
            d = pos[:, w] - pos[:, tip]
            n = np.linalg.norm(d, axis=-1, keepdims=True)
            step = np.where(n > 1e-9, d / np.maximum(n, 1e-9) * np.minimum(distance, n), 0.0)
            pos[:, tip] += np.where(ok[:, None], step, 0.0)
    return joints.replace(positions=pos, valid=joints.valid)


def default_perturbations(joints: SparseJoints) -> dict[str, SparseJoints]:
    """Shift the hand 3 cm to the image's right; pull the fingertips 2 cm towards the wrist."""
    return {"shift_3cm": shift_hand(joints, [0.03, 0.0, 0.0]), "fingertips_2cm": move_fingertips(joints, 0.02)}


def hand_region(joints: SparseJoints, size: tuple[int, int], radius: float, bones: bool = True) -> np.ndarray:
    """(T, H, W) bool: pixel centres within ``radius`` px of a projected valid joint (and, with ``bones``, of a bone
    between two valid joints). K must be in the pixels of ``size`` = (H, W)."""
    H, W = size
    uvd, ok = _check_joints(joints).project()
    uv = uvd[..., :2]
    edges = np.array([(a, b) for a, b in skeleton_edges()] + [(j, j) for j in range(uv.shape[1])])
    out = np.zeros((len(joints), H, W), bool)
    for t in range(len(joints)):
        e = edges[ok[t, edges[:, 0]] & ok[t, edges[:, 1]]]
        if not bones:
            e = e[e[:, 0] == e[:, 1]]
        if not len(e):
            continue
        A, B = uv[t, e[:, 0]], uv[t, e[:, 1]]  # (E, 2)
        # only pixels in the skeleton's bounding box grown by the radius can be near a segment (evaluate() calls
        # this on every video, of any size)
        ends = np.concatenate([A, B])
        x0, y0 = np.maximum(np.floor(ends.min(0) - radius - 0.5), 0).astype(int)
        x1, y1 = np.minimum(np.ceil(ends.max(0) + radius + 0.5), [W, H]).astype(int)
        if x0 >= x1 or y0 >= y1:
            continue
        ys, xs = np.mgrid[y0:y1, x0:x1]
        P = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], -1)  # (n, 2) pixel centres of the box
        AB = B - A
        L2 = (AB**2).sum(-1)
        s = np.clip(((P[:, None] - A) * AB).sum(-1) / np.where(L2 > 0, L2, 1.0), 0.0, 1.0)  # (n, E)
        d2 = ((P[:, None] - (A + s[..., None] * AB)) ** 2).sum(-1)
        out[t, y0:y1, x0:x1] = (d2 <= radius * radius).any(-1).reshape(y1 - y0, x1 - x0)
    return out


# =============================================================================================== sensitivity
@dataclasses.dataclass
class Sensitivity:
    """Mean absolute output change (per pixel, mean over RGB, [0, 1] units) inside/outside the hand region.

    ``ratio = (inside + ε) / (outside + ε)`` with ε = 1e-4: ≫ 1 when the change follows the joints, 1 when the
    output does not change or changes uniformly.
    """

    name: str
    inside: float
    outside: float
    ratio: float
    region_fraction: float  # share of pixels in the hand region
    radius: float

    def to_dict(self) -> dict:
        return _finite_or_none(dataclasses.asdict(self))


def control_sensitivity(pipeline_fn: Callable[[SparseJoints], object], joints: SparseJoints,
                        perturbations: Mapping[str, SparseJoints] | None = None, radius: float | None = None,
                        bones: bool = True, k_size: tuple[int, int] | None = None,
                        base_frames=None) -> dict[str, Sensitivity]:
    """How much the generated output changes where the hand is vs elsewhere when the joints are perturbed.

    Args:
        pipeline_fn: ``joints -> frames`` (T, H, W, 3) uint8 or float in [0, 1]; it must fix its own seed (and
            reference image, prompt) so that only the joints differ between calls.
        joints: camera-frame SparseJoints with K.
        perturbations: name → perturbed joints (default :func:`default_perturbations`: a 3 cm hand shift and a
            2 cm fingertip curl).
        radius: hand-region radius in output pixels (default 6 % of the smaller side, ≥ 2 px).
        bones: also count pixels near the bones between valid joints.
        k_size: (H, W) the joints' K refers to, if not the output's; K is scaled to the output.
        base_frames: the output for the unperturbed joints, if already generated.
    Returns name → :class:`Sensitivity`. The region is the union of the base and perturbed hand regions.
    """
    joints = _check_joints(joints)
    base = _as_float_video(pipeline_fn(joints) if base_frames is None else base_frames, "pipeline_fn output")
    T, H, W = base.shape[:3]
    if len(joints) != T:
        raise ValueError(f"pipeline_fn returned {T} frames for {len(joints)} joint frames; they must match")
    r = float(radius) if radius is not None else max(2.0, 0.06 * min(H, W))
    if r <= 0:
        raise ValueError(f"radius must be positive pixels, got {radius}")
    perturbations = default_perturbations(joints) if perturbations is None else dict(perturbations)
    if not perturbations:
        raise ValueError("perturbations must name at least one perturbed SparseJoints")

    def to_output_pixels(j: SparseJoints) -> SparseJoints:
        if k_size is None or tuple(k_size) == (H, W):
            return j
        h0, w0 = k_size
        return j.replace(K=scale_intrinsics(j.K, W / w0, H / h0))

    region_base = hand_region(to_output_pixels(joints), (H, W), r, bones)
    out = {}
    for name, pj in perturbations.items():
        pj = _check_joints(pj, f"perturbations[{name!r}]")
        if len(pj) != T:
            raise ValueError(f"perturbations[{name!r}] has {len(pj)} frames, the joints {T}")
        frames = _as_float_video(pipeline_fn(pj), "pipeline_fn output")
        if frames.shape != base.shape:
            raise ValueError(f"pipeline_fn returned {frames.shape} for perturbation {name!r} but {base.shape} for "
                             "the original joints")
        region = region_base | hand_region(to_output_pixels(pj), (H, W), r, bones)
        if not region.any():
            raise ValueError("no joint projects into the output frames: the hand region is empty")
        change = np.abs(frames - base).mean(-1)  # (T, H, W)
        inside = float(change[region].mean())
        outside = float(change[~region].mean()) if (~region).any() else float("nan")
        ratio = (inside + RATIO_EPS) / (outside + RATIO_EPS)
        out[name] = Sensitivity(name=name, inside=inside, outside=outside, ratio=ratio,
                                region_fraction=float(region.mean()), radius=r)
    return out
