"""Keypoint probe for robot hands: a small CNN that finds each joint of a given embodiment in an RGB frame.

No public 2D keypoint estimator exists for robot hands, so dexworld trains its own on MuJoCo renders of the
hands (randomised camera, lighting, textures, objects, poses) and uses it to measure whether generated videos put
the hand where the commanded joints say. The probe's own held-out accuracy is stored with its weights
(``config.json`` → ``heldout`` and ``accuracy.json``) and reported next to every use.

Network (:class:`KeypointProbe`): a four-level conv encoder (strides 2–16) with a top-down path back to stride 4
(or 2, ``head_stride=2``: heatmap cells of 2 px, for finger-level accuracy at 128²),
one 21-channel heatmap block per embodiment (hand-local MANO/OpenPose order) and a visibility logit per joint.
Positions come from a soft-argmax over each heatmap (integral regression); training lives in
:mod:`worldmodel.evaluation.probe_training`. Frames of any size are resized to the working size and the coordinates
scaled back; a probe with ``test_time_sizes`` reads each frame at several sizes and averages the positions (test-time
augmentation: the shipped probe reads at 128, 144 and 160, docs/evaluation.md). :func:`keypoint_error` scores a
video against the joints it was commanded with.

A probe trained on one side's hand also reads the other side's mirror twin (``inspire_left`` for a probe trained on
``inspire_right``): the frames are flipped left-right, read with the twin's block and the positions flipped back
(:meth:`KeypointProbe.block_for`). The built-in left hands are exact mirror images of the right ones, so the
mirrored reading is as accurate as the direct one (``docs/evaluation.md``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from embodiments import get, mirror_twin
from embodiments.layout import NUM_HAND_JOINTS, NUM_SLOTS, side_offset
from embodiments.sparse import SparseJoints
from worldmodel.evaluation.metrics import pck

DEFAULT_PROBE_DIR = Path(__file__).resolve().parents[1] / "checkpoints" / "probe"
PCK_THRESHOLD_PX = 5.0
DEFAULT_WIDTHS = (16, 32, 64, 96)  # channels at strides 2, 4, 8, 16
ACCURACY_FILE = "accuracy.json"


def eval_sizes_for(size: int) -> tuple[int, ...]:
    """Frame sizes the held-out accuracy is reported at: the working size, 64 and 128."""
    return tuple(sorted({size, 64, 128}))


# =============================================================================================== network
def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class KeypointProbe(ModelMixin, ConfigMixin):
    """RGB frames (B, 3, S, S) in [0, 1] → per-embodiment heatmaps (B, 21, S/s, S/s) and visibility logits (B, 21).

    Args:
        embodiments: registry names the probe was trained for; each gets its own 21-channel heatmap block.
        size: working size S (frames are resized to S × S); a multiple of 16.
        widths: channels at strides 2, 4, 8, 16.
        head_stride: stride s of the heatmaps, 4 or 2 (one more top-down level, onto the stem's features).
        heldout: held-out accuracy per embodiment and evaluation size; train_info: how the probe was trained
            (renders, steps, seed, seconds). ``probe_training.train_probe`` fills in both.
        test_time_sizes: sizes (multiples of 16) :meth:`predict` reads each frame at, averaging the positions it
            finds (default: the working size alone). The network is convolutional, so one set of weights reads
            any size; reading a frame slightly smaller and larger evens out errors that depend on where a joint
            falls on the heatmap grid, at the cost of one pass per size.
    """

    @register_to_config
    def __init__(self, embodiments: tuple[str, ...] | list[str] = ("inspire_right",), size: int = 128,
                 widths: tuple[int, ...] | list[int] = DEFAULT_WIDTHS, heldout: dict | None = None,
                 train_info: dict | None = None, head_stride: int = 4,
                 test_time_sizes: tuple[int, ...] | list[int] | None = None):
        super().__init__()
        if not embodiments:
            raise ValueError("KeypointProbe needs at least one embodiment name")
        if size % 16 or size < 32:
            raise ValueError(f"KeypointProbe size must be a multiple of 16 and >= 32, got {size}")
        if len(widths) != 4:
            raise ValueError(f"KeypointProbe widths must give 4 channel counts (strides 2, 4, 8, 16), got {widths}")
        if head_stride not in (2, 4):
            raise ValueError(f"KeypointProbe head_stride must be 2 or 4, got {head_stride}")
        check_test_time_sizes(test_time_sizes)
        w1, w2, w3, w4 = (int(w) for w in widths)
        n_out = NUM_HAND_JOINTS * len(embodiments)
        self.stem = _conv(3, w1, 2)
        self.down2 = nn.Sequential(_conv(w1, w2, 2), _conv(w2, w2))
        self.down3 = nn.Sequential(_conv(w2, w3, 2), _conv(w3, w3))
        self.down4 = nn.Sequential(_conv(w3, w4, 2), _conv(w4, w4))
        # top-down path: 1×1 projections of the coarser level, upsampled and added, then one 3×3 conv per level
        self.top4 = nn.Conv2d(w4, w3, 1)
        self.fuse3 = _conv(w3, w3)
        self.top3 = nn.Conv2d(w3, w2, 1)
        self.fuse2 = _conv(w2, w2)
        if head_stride == 2:
            self.top2 = nn.Conv2d(w2, w1, 1)
            self.fuse1 = _conv(w1, w1)
        self.heatmap = nn.Conv2d(w1 if head_stride == 2 else w2, n_out, 1)
        self.visibility = nn.Linear(w4, n_out)
        # soft-argmax sharpness: logits are scaled by exp(log_beta) before the softmax
        self.log_beta = nn.Parameter(torch.tensor(0.0))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    @property
    def stride(self) -> int:
        return int(self.config.head_stride)

    @property
    def read_sizes(self) -> tuple[int, ...]:
        """The sizes :meth:`predict` reads each frame at: ``test_time_sizes``, or the working size alone."""
        return tuple(int(s) for s in (self.config.get("test_time_sizes") or (self.config.size,)))

    def embodiment_index(self, embodiment: str) -> int:
        """Index of ``embodiment``'s heatmap block; it must be one the probe was trained for."""
        trained = list(self.config.embodiments)
        if embodiment not in trained:
            raise self._unknown(embodiment)
        return trained.index(embodiment)

    def _unknown(self, embodiment: str) -> ValueError:
        return ValueError(f"this probe was trained for {', '.join(self.config.embodiments)} (and reads their mirror "
                          f"twins), not {embodiment!r}; train one with `dexworld train-probe --embodiment "
                          f"{embodiment}`")

    def block_for(self, embodiment: str) -> tuple[str, bool]:
        """(trained embodiment whose block reads ``embodiment``, whether the frames are mirrored first).

        A hand the probe was trained for reads itself. Otherwise its mirror twin (``_left`` ↔ ``_right``, the other
        side, the same joints) is used on left-right flipped frames. Raises ValueError naming what the probe knows.
        """
        name = get(embodiment).name
        if name in self.config.embodiments:
            return name, False
        twin = mirror_twin(name)
        if twin is not None and twin in self.config.embodiments:
            return twin, True
        raise self._unknown(name)

    @property
    def reads_two_hands(self) -> bool:
        """Whether the probe was trained on frames showing two hands. One trained on one-hand frames confuses the
        hands of a pair: the shipped probe reads 14–23 px per hand on two-hand renders, 6–8× its one-hand held-out
        error (``benchmarks/probe_two_hands.py``), so a pair's joint error is not reported with it."""
        return bool((self.config.train_info or {}).get("two_hand_renders", False))

    def knows(self, embodiment: str) -> bool:
        """Whether the probe reads ``embodiment`` (directly or through its mirror twin); for a pair ``"a+b"`` in one
        frame, both hands and :attr:`reads_two_hands`."""
        hands = embodiment.split("+")
        if len(hands) > 1 and not self.reads_two_hands:
            return False
        try:
            for hand in hands:
                self.block_for(hand)
        except (KeyError, ValueError):
            return False
        return True

    def forward(self, images: torch.Tensor, embodiment: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, S, S) float in [0, 1] → heatmap logits (B, 21·E, S/s, S/s), visibility logits (B, 21·E).

        With ``embodiment`` only that embodiment's block: (B, 21, S/4, S/4) and (B, 21).
        """
        x = (images - self.mean) / self.std
        f1 = self.stem(x)
        f2 = self.down2(f1)
        f3 = self.down3(f2)
        f4 = self.down4(f3)
        up = dict(mode="bilinear", align_corners=False)
        p3 = self.fuse3(f3 + F.interpolate(self.top4(f4), size=f3.shape[-2:], **up))
        p = self.fuse2(f2 + F.interpolate(self.top3(p3), size=f2.shape[-2:], **up))
        if self.stride == 2:
            p = self.fuse1(f1 + F.interpolate(self.top2(p), size=f1.shape[-2:], **up))
        heat = self.heatmap(p) * self.log_beta.exp()
        vis = self.visibility(f4.mean((-2, -1)))
        if embodiment is not None:
            e = self.embodiment_index(embodiment)
            sl = slice(e * NUM_HAND_JOINTS, (e + 1) * NUM_HAND_JOINTS)
            heat, vis = heat[:, sl], vis[:, sl]
        return heat, vis

    # ------------------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, frames: np.ndarray | torch.Tensor, embodiment: str, batch_size: int = 64
                ) -> tuple[np.ndarray, np.ndarray]:
        """Joint positions in the frames' own pixels and visibility probabilities for one embodiment.

        Args:
            frames: (T, H, W, 3) uint8 (or float in [0, 1]) of any size; resized to the working size (to each of
                :attr:`read_sizes`, the positions averaged).
        Returns:
            uv (T, 42, 2) pixels (pixel (i, j) covers [j, j+1) × [i, i+1)), NaN in slots the embodiment lacks;
            visibility (T, 42) probabilities, 0 in slots it lacks.
        """
        emb = get(embodiment)
        block, mirrored = self.block_for(emb.name)
        e = self.embodiment_index(block)
        x = frames_to_tensor(frames, "frames")
        if mirrored:
            x = x.flip(-1)
        T, _, H, W = x.shape
        was_training = self.training
        self.eval()
        dev = next(self.parameters()).device
        sl = slice(e * NUM_HAND_JOINTS, (e + 1) * NUM_HAND_JOINTS)
        uv_hand, vis_hand = [], []
        for i in range(0, T, batch_size):
            uv_sum = vis_sum = 0.0
            for S in self.read_sizes:  # positions in the frames' pixels, averaged over the read sizes
                heat, vis = self(resize_frames(x[i:i + batch_size], S).to(dev))
                scale = torch.tensor([W / S, H / S], dtype=torch.float64)
                uv_sum = uv_sum + soft_argmax(heat[:, sl], self.stride).cpu().double() * scale
                vis_sum = vis_sum + torch.sigmoid(vis[:, sl]).cpu()
            uv_hand.append(uv_sum / len(self.read_sizes))
            vis_hand.append(vis_sum / len(self.read_sizes))
        self.train(was_training)
        uv = torch.cat(uv_hand).numpy()
        if mirrored:
            uv[..., 0] = W - uv[..., 0]  # pixel u of the flipped frame covers [W-1-u, W-u) of the original
        o = side_offset(emb.side)
        mask = emb.slot_mask[o:o + NUM_HAND_JOINTS]
        uv_out = np.full((T, NUM_SLOTS, 2), np.nan)
        vis_out = np.zeros((T, NUM_SLOTS))
        uv_out[:, o:o + NUM_HAND_JOINTS][:, mask] = uv[:, mask]
        vis_out[:, o:o + NUM_HAND_JOINTS][:, mask] = torch.cat(vis_hand).double().numpy()[:, mask]
        return uv_out, vis_out

    def heldout_for(self, embodiment: str, size: tuple[int, int] | int | None = None, two_hands: bool = False
                    ) -> dict | None:
        """The recorded held-out accuracy for ``embodiment`` at the evaluated size nearest to ``size`` (H, W);
        for a hand read through its mirror twin, the twin's, marked ``mirrored_from``. ``two_hands``: the figure on
        two-hand renders (``train_info["two_hand_heldout"]``, at the working size), marked ``two_hands``."""
        heldout = self.config.heldout or {}
        if two_hands:
            pairs = (self.config.train_info or {}).get("two_hand_heldout") or {}
            heldout = {e: {str(self.config.size): {**m, "two_hands": True}} for e, m in pairs.items()}
        table, extra = heldout.get(embodiment), {}
        if not table and self.knows(embodiment):
            block, mirrored = self.block_for(embodiment)
            table, extra = heldout.get(block), ({"mirrored_from": block} if mirrored else {})
        if not table:
            return None
        if size is None:
            key = str(self.config.size)
        else:
            side = float(np.mean(size)) if np.ndim(size) else float(size)
            key = min(table, key=lambda k: abs(math.log(int(k) / side)))
        return {"size": int(key), **table[key], **extra}


def check_test_time_sizes(sizes) -> None:
    """Raise ValueError unless ``sizes`` is None or a non-empty list of distinct multiples of 16, each >= 32."""
    if sizes is None:
        return
    sizes = list(sizes)
    if not sizes or len(set(sizes)) != len(sizes) or any(int(s) != s or s % 16 or s < 32 for s in sizes):
        raise ValueError(f"KeypointProbe test_time_sizes must be distinct multiples of 16, each >= 32, got {sizes}")


def describe_heldout(held: dict | None) -> str:
    """One line for a report: the probe's own held-out accuracy (a :meth:`KeypointProbe.heldout_for` record)."""
    if not held:
        return "the probe has no recorded held-out accuracy"
    line = f"the probe on held-out renders at {held['size']}²: {held['mean_px']:.2f} px, PCK@5px {held['pck@5px']:.3f}"
    if held.get("two_hands"):
        line = line.replace("held-out renders", "two-hand held-out renders")
    if held.get("mirrored_from"):
        line += f" ({held['mirrored_from']}'s; this hand read mirrored)"
    return line


def frames_to_tensor(frames: np.ndarray | torch.Tensor, name: str = "frames") -> torch.Tensor:
    """(T, H, W, 3) uint8 or float in [0, 1] → float32 (T, 3, H, W) in [0, 1], with a clear error otherwise."""
    x = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(frames))
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (T, H, W, 3) RGB, got {tuple(x.shape)}")
    if x.shape[1] < 8 or x.shape[2] < 8:
        raise ValueError(f"{name} must be at least 8 × 8 pixels, got {tuple(x.shape[1:3])}")
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    return x.permute(0, 3, 1, 2).contiguous()


def resize_frames(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) → (B, 3, size, size), antialiased when shrinking; a no-op at the working size."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def soft_argmax(heat: torch.Tensor, stride: int) -> torch.Tensor:
    """Heatmap logits (B, J, h, w) → expected (u, v) (B, J, 2) in input pixels (cell b covers [b·s, (b+1)·s))."""
    B, J, h, w = heat.shape
    p = heat.flatten(2).softmax(-1).view(B, J, h, w)
    xs = (torch.arange(w, device=heat.device, dtype=heat.dtype) + 0.5) * stride
    ys = (torch.arange(h, device=heat.device, dtype=heat.dtype) + 0.5) * stride
    return torch.stack([(p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)], -1)


def load_probe(path: str | os.PathLike | None = None) -> KeypointProbe:
    """The probe saved in ``path`` (default: the shipped one, ``worldmodel/checkpoints/probe``), in eval mode."""
    path = Path(path) if path is not None else DEFAULT_PROBE_DIR
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"no keypoint probe at {path} (config.json missing); train one with "
                                "`dexworld train-probe`")
    return KeypointProbe.from_pretrained(str(path), use_safetensors=True).eval()


# =============================================================================================== scoring videos
def keypoint_error(probe: KeypointProbe, frames: np.ndarray, joints: SparseJoints,
                   threshold: float = PCK_THRESHOLD_PX, embodiment: str | None = None,
                   visible: np.ndarray | None = None, frames_scored: slice | None = None) -> dict:
    """2D joint error of the probe's detections in ``frames`` against the projections of ``joints``.

    Args:
        frames: (T, H, W, 3) uint8, e.g. generated frames.
        joints: camera-frame SparseJoints with K in the pixels of ``frames`` (the commanded joints).
        embodiment: the robot hand to look for (default ``joints.embodiment``); a pair ``"X_left+X_right"`` scores
            both hands, each read in its own half of the slots, and adds ``hands``: each hand's own figures.
        visible: optional (T, 42) bool, per joint and frame whether the reference render shows it (a clip's
            ``visible`` extra); adds ``occluded``: the same figures over the joints it hides.
        frames_scored: which frames count (default all), e.g. ``slice(1, None)`` to leave out the given frame 0.
    Returns mean/median error in pixels, PCK@threshold, the number of joints compared and the probe's recorded
    held-out accuracy at the nearest frame size (``probe_heldout``; for a pair, the less accurate hand's).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3), got {frames.shape}")
    if not isinstance(joints, SparseJoints):
        raise ValueError(f"joints must be a SparseJoints, got {type(joints).__name__}")
    if joints.K is None:
        raise ValueError("joints must carry the pixel intrinsics K of the frames (SparseJoints(..., K=...))")
    if joints.frame != "camera":
        raise ValueError(f"joints must be in the camera frame, got frame={joints.frame!r}")
    if len(joints) != frames.shape[0]:
        raise ValueError(f"frames has {frames.shape[0]} frames but joints have {len(joints)}; they must match")
    embs = [get(h) for h in (embodiment or joints.embodiment).split("+")]
    for emb in embs:
        probe.block_for(emb.name)  # a clear error now if the probe cannot read this hand
    if len(embs) > 1 and not probe.reads_two_hands:
        raise ValueError("this probe was trained on one-hand frames and confuses the hands of a pair; train one on "
                         "two-hand renders to score both hands in one frame")
    uvd, ok = joints.project()
    H, W = frames.shape[1:3]
    with np.errstate(invalid="ignore"):
        inside = (uvd[..., 0] >= 0) & (uvd[..., 0] < W) & (uvd[..., 1] >= 0) & (uvd[..., 1] < H)
    valid = ok & inside & np.logical_or.reduce([emb.slot_mask for emb in embs])[None]
    if frames_scored is not None:
        keep = np.zeros(len(valid), bool)
        keep[frames_scored] = True
        valid &= keep[:, None]
    uv_pred = np.full((len(frames), NUM_SLOTS, 2), np.nan)
    vis = np.zeros((len(frames), NUM_SLOTS))
    for emb in embs:  # each hand's reading fills its own half of the slots
        u, v = probe.predict(frames, emb.name)
        half = slice(side_offset(emb.side), side_offset(emb.side) + NUM_HAND_JOINTS)
        uv_pred[:, half], vis[:, half] = u[:, half], v[:, half]
    held = [probe.heldout_for(emb.name, (H, W), two_hands=len(embs) > 1) for emb in embs]
    out = {"embodiment": "+".join(emb.name for emb in embs), "frame_size": [int(H), int(W)],
           "n_joints": int(valid.sum()),
           "probe_heldout": None if None in held else max(held, key=lambda h: h["mean_px"])}
    out.update(_errors(uv_pred, uvd[..., :2], valid, threshold))
    if len(embs) > 1:
        out["hands"] = {}
        for emb in embs:
            mine = valid & emb.slot_mask[None]
            out["hands"][emb.name] = {"n_joints": int(mine.sum()), **_errors(uv_pred, uvd[..., :2], mine, threshold)}
    if valid.any():
        out["visibility_mean"] = float(vis[valid].mean())
    if visible is not None:
        visible = np.asarray(visible, bool)
        if visible.shape != valid.shape:
            raise ValueError(f"visible must have shape {valid.shape} (frames, 42 slots), got {visible.shape}")
        hidden = valid & ~visible
        out["occluded"] = {"n_joints": int(hidden.sum()), **_errors(uv_pred, uvd[..., :2], hidden, threshold)}
    return out


def _errors(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, threshold: float) -> dict:
    """Mean/median pixel error and PCK of ``pred`` vs ``target`` (T, 42, 2) over ``mask``; NaN when it is empty."""
    key = f"pck@{threshold:g}px"
    if not mask.any():
        return {"mean_px": float("nan"), "median_px": float("nan"), key: float("nan")}
    err = np.linalg.norm(pred - target, axis=-1)[mask]
    return {"mean_px": float(err.mean()), "median_px": float(np.median(err)), key: pck(pred, target, threshold, mask)}
