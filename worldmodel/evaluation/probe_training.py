"""Training the keypoint probe on labelled MuJoCo renders, and its held-out accuracy on them.

:func:`train_probe` fits a :class:`~worldmodel.evaluation.probe.KeypointProbe` (or continues a saved one, ``init``)
with AdamW on a one-cycle schedule: an L1 loss on the soft-argmax coordinates, a cross-entropy towards a Gaussian
target (which speeds early training) and a visibility loss, masked to the joints that project into the image, on
photometrically augmented frames. :func:`evaluate_probe` scores it on held-out renders at several frame sizes,
:func:`save_probe` writes weights, config and ``accuracy.json`` so the accuracy travels with the weights, and
:func:`measure_probe` measures a saved probe again (other held-out renders, other test-time sizes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from embodiments import get
from embodiments.layout import HAND_JOINT_NAMES, NUM_HAND_JOINTS, side_offset
from worldmodel.evaluation.metrics import pck
from worldmodel.evaluation.probe import (
    ACCURACY_FILE,
    DEFAULT_WIDTHS,
    PCK_THRESHOLD_PX,
    KeypointProbe,
    check_test_time_sizes,
    eval_sizes_for,
    frames_to_tensor,
    soft_argmax,
)
from worldmodel.evaluation.probe_resume import (
    TRAIN_STATE_FILE,
    read_train_state,
    resume_mismatch,
    save_train_state,
    train_fingerprint,
)


@dataclasses.dataclass
class ProbeReport:
    """What :func:`train_probe` did: held-out accuracy per embodiment and size, losses, timings, where it saved."""

    embodiments: list[str]
    size: int
    num_renders: int
    steps: int
    seed: int
    heldout: dict  # {embodiment: {str(size): {"mean_px", "median_px", "pck@5px", "visibility_acc", "n"}}}
    loss_first: float
    loss_last: float
    render_seconds: float
    train_seconds: float
    num_parameters: int
    out_dir: str | None = None
    log: list[dict] = dataclasses.field(default_factory=list)
    model: KeypointProbe | None = dataclasses.field(default=None, repr=False, compare=False)  # the trained net

    def to_dict(self) -> dict:
        """Plain JSON-able fields (the model left out)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}


def _gaussian_ce(heat: torch.Tensor, uv: torch.Tensor, stride: int, sigma: float = 1.0) -> torch.Tensor:
    """Cross-entropy (B, J) of softmax(heat) (B, J, h, w) against a Gaussian (σ in cells) centred at uv (B, J, 2).

    The target is separable, gx(x)·gy(y), so the sum runs as two small contractions instead of an (h, w) map.
    """
    h, w = heat.shape[-2:]
    xs = torch.arange(w, dtype=uv.dtype, device=uv.device) + 0.5
    ys = torch.arange(h, dtype=uv.dtype, device=uv.device) + 0.5
    gx = (-((xs - uv[..., 0:1] / stride) ** 2) / (2 * sigma**2)).softmax(-1)  # (B, J, w)
    gy = (-((ys - uv[..., 1:2] / stride) ** 2) / (2 * sigma**2)).softmax(-1)  # (B, J, h)
    logp = heat.flatten(2).log_softmax(-1).view_as(heat)
    return -torch.einsum("bjy,bjyx,bjx->bj", gy, logp, gx)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Photometric augmentation of (B, 3, S, S) in [0, 1]; geometry is untouched so labels stay exact.

    Half the batch is blurred by a down-and-up resize (×1.5–3), as decoded video frames and small renders are
    softer than 128² MuJoCo renders; then brightness/contrast/colour jitter and pixel noise.
    """
    B, _, S, _ = x.shape
    r = torch.rand(B, 6, generator=gen)
    blur = r[:, 0] < 0.5
    if blur.any():
        f = 1.5 + 1.5 * float(r[0, 1])
        small = F.interpolate(x[blur], size=(int(S / f),) * 2, mode="bilinear", align_corners=False, antialias=True)
        x = x.clone()
        x[blur] = F.interpolate(small, size=(S, S), mode="bilinear", align_corners=False)
    gain = (0.75 + 0.5 * r[:, 2]).view(B, 1, 1, 1) * (0.9 + 0.2 * torch.rand(B, 3, 1, 1, generator=gen))
    mean = x.mean((1, 2, 3), keepdim=True)
    contrast = (0.75 + 0.5 * r[:, 3]).view(B, 1, 1, 1)
    x = (x - mean) * contrast + mean * gain
    noise = 0.03 * r[:, 4].view(B, 1, 1, 1) * torch.randn(x.shape, generator=gen)
    return (x + noise).clamp(0, 1)


def probe_loss(model: KeypointProbe, images: torch.Tensor, uv: torch.Tensor, valid: torch.Tensor,
               emb_index: torch.Tensor, present: torch.Tensor, hidden: torch.Tensor | None = None,
               hidden_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
    """Loss of a batch. images (B, 3, S, S); uv (B, 21, 2) working pixels; valid (B, 21); emb_index (B,);
    present (B, 21): the slot exists on that sample's hand (visibility is trained on those).

    ``hidden`` (B, 21) marks valid joints something hides from the camera; their coordinate terms count
    ``hidden_weight`` times (the mean over weights stays the loss), since hidden joints carry most of the error.
    """
    heat_all, vis_all = model(images)
    B = images.shape[0]
    J = NUM_HAND_JOINTS
    idx = emb_index.view(B, 1) * J + torch.arange(J)
    heat = heat_all.gather(1, idx[..., None, None].expand(B, J, *heat_all.shape[-2:]))
    vis = vis_all.gather(1, idx)
    s = model.stride
    pred = soft_argmax(heat, s)
    uv = torch.where(valid[..., None], uv, torch.zeros_like(uv))  # labels of invalid joints carry no meaning
    m = valid.float()
    n = m.sum().clamp_min(1.0)
    w = m if hidden is None else m * (1.0 + (hidden_weight - 1.0) * (hidden & valid).float())
    nw = w.sum().clamp_min(1e-6)
    l1 = ((pred - uv).abs().sum(-1) / s * w).sum() / nw
    ce = (_gaussian_ce(heat, uv, s) * w).sum() / nw
    pm = present.float()
    bce = (F.binary_cross_entropy_with_logits(vis, m, reduction="none") * pm).sum() / pm.sum().clamp_min(1.0)
    loss = l1 + 0.5 * ce + 0.2 * bce
    with torch.no_grad():
        px = ((pred - uv).norm(dim=-1) * m).sum() / n
        parts = {"loss": float(loss), "l1": float(l1), "ce": float(ce), "bce": float(bce), "px": float(px)}
    return loss, parts


def evaluate_probe(model: KeypointProbe, data, sizes: tuple[int, ...] | None = None,
                   threshold: float = PCK_THRESHOLD_PX, per_joint: bool = False, by_occluder: bool = False) -> dict:
    """Held-out accuracy on renders, at the working size and at other frame sizes (renders resized to each).

    Returns {str(size): {"mean_px", "median_px", "pck@5px", "visibility_acc", "n"}}; pixels are those of that size.
    When ``data.visible`` is given, also ``visible_mean_px`` / ``occluded_mean_px`` (joints the camera sees / that
    something hides; both stay in the headline figures) and ``occluded_fraction``. ``per_joint`` adds
    ``per_joint``: {joint name: {"n", "mean_px"[, "occluded_fraction", "visible_mean_px", "occluded_mean_px"]}} for
    each joint of the hand, which is where the mean comes from. ``by_occluder`` (renders with ``occluded_by``) adds
    ``by_occluder``: {code of what hides the joint (``sim_bridge.visibility``: 0 visible, 1 own palm, ...): {"n",
    "share", "mean_px", "adds_px"}}, ``adds_px`` being that group's part of the mean (share × its error).
    """
    emb = get(data.embodiment)
    o = side_offset(emb.side)
    present = emb.slot_mask[o:o + NUM_HAND_JOINTS]
    R = data.images.shape[1]  # size the held-out frames were rendered at
    out = {}
    for size in sizes or (int(model.config.size),):
        frames = data.images
        if size != R:
            x = F.interpolate(frames_to_tensor(frames), size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
            frames = (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        uv, vis = model.predict(frames, emb.name)
        pred = uv[:, o:o + NUM_HAND_JOINTS]
        target = data.uv.astype(np.float64) * (size / R)
        err = np.linalg.norm(pred - target, axis=-1)  # (N, 21), NaN where the hand lacks the slot
        vis_ok = ((vis[:, o:o + NUM_HAND_JOINTS] > 0.5) == data.valid)[:, present]
        seen = None if data.visible is None else np.asarray(data.visible, bool)
        out[str(size)] = {**_error_split(err, data.valid, seen),
                          "median_px": float(np.median(err[data.valid])),
                          f"pck@{threshold:g}px": pck(pred, target, threshold, data.valid),
                          "visibility_acc": float(vis_ok.mean())}
        if per_joint:
            out[str(size)]["per_joint"] = {
                name: _error_split(err[:, j], data.valid[:, j], None if seen is None else seen[:, j])
                for j, name in enumerate(HAND_JOINT_NAMES) if data.valid[:, j].any()}
        if by_occluder:
            out[str(size)]["by_occluder"] = _occluder_split(err, data.valid, data.occluded_by)
    return out


def _error_split(err: np.ndarray, valid: np.ndarray, seen: np.ndarray | None) -> dict:
    """Mean pixel error over ``valid`` and, with ``seen`` (same shape), over the seen / hidden joints among them."""
    e = err[valid]
    out = {"mean_px": float(e.mean()), "n": int(valid.sum())}
    if seen is not None:
        s = seen[valid]
        out.update(visible_mean_px=float(e[s].mean()) if s.any() else None,
                   occluded_mean_px=float(e[~s].mean()) if (~s).any() else None,
                   occluded_fraction=float((~s).mean()))
    return out


def _occluder_split(err: np.ndarray, valid: np.ndarray, occluded_by: np.ndarray | None) -> dict:
    """The error of the valid joints grouped by the code of what hides them (the renders' ``occluded_by``)."""
    if occluded_by is None:
        raise ValueError("by_occluder needs renders with occluded_by (render_probe_data(visibility=True))")
    n = int(valid.sum())
    out = {}
    for code in np.unique(occluded_by[valid]).tolist():
        sel = valid & (occluded_by == code)
        out[int(code)] = {"n": int(sel.sum()), "share": float(sel.sum() / n), "mean_px": float(err[sel].mean()),
                          "adds_px": float(err[sel].sum() / n)}
    return out


def draw_probabilities(counts: Sequence[int], weights: Sequence[float]) -> torch.Tensor:
    """Probability of drawing each render (N = sum(counts),) when embodiment i (``counts[i]`` renders) is drawn
    in proportion to ``weights[i]``, its renders alike."""
    total = float(sum(weights))
    return torch.cat([torch.full((n,), w / total / n, dtype=torch.float64)
                      for n, w in zip(counts, weights, strict=True)])


def init_mismatch(init: KeypointProbe, embodiments: Sequence[str], size: int) -> str | None:
    """Why ``init`` cannot be continued on renders of ``embodiments`` (registry names, in order) at ``size``,
    or None when it can."""
    if list(init.config.embodiments) == list(embodiments) and int(init.config.size) == size:
        return None
    return (f"probe covers {', '.join(init.config.embodiments)} at {init.config.size}², not "
            f"{', '.join(embodiments)} at {size}²")


def train_probe(train: Sequence, heldout: Sequence, size: int = 128, steps: int = 1500,
                out_dir: str | os.PathLike | None = None, seed: int = 0, batch_size: int = 32, lr: float = 3e-3,
                widths: tuple[int, ...] = DEFAULT_WIDTHS, progress: bool = True,
                eval_sizes: tuple[int, ...] | None = None, data_info: dict | None = None,
                head_stride: int = 4, init: KeypointProbe | None = None,
                heldout_two_hands: Sequence | None = None, hidden_weight: float = 1.0,
                sample_weights: Sequence[float] | None = None, save_every: int = 0,
                resume: bool = False, test_time_sizes: Sequence[int] | None = None) -> ProbeReport:
    """Train and evaluate a keypoint probe on labelled renders; save it to ``out_dir`` (weights, config, accuracy).

    Args:
        train, heldout: labelled renders, one entry per embodiment in the same order (each with ``embodiment``,
            ``images`` (N, S, S, 3) uint8, ``uv`` (N, 21, 2), ``valid`` (N, 21): ``sim_bridge.render_probe_data``
            makes them). Held-out renders should come from other scenes; they are rendered at the largest size.
        size: working size S (frames S × S); steps / batch_size / lr: AdamW with a one-cycle schedule.
        head_stride: heatmap stride, 4 or 2 (see :class:`KeypointProbe`).
        eval_sizes: frame sizes to report held-out accuracy at (default S, 64 and 128): held-out frames are
            resized (antialiased) to each, as generated frames of any size are.
        data_info: how the renders were made (seeds, timings), recorded with the accuracy.
        init: a trained probe to continue from (its weights, widths and head stride; it must cover the same
            embodiments at the same working size), so a longer schedule can be added to a saved probe.
        heldout_two_hands: optional held-out renders with each hand's mirror twin beside it
            (``sim_bridge.probe_renders.render_two_hand_heldout``); their accuracy at the working size is recorded
            as ``train_info["two_hand_heldout"]``.
        hidden_weight: weight of the coordinate loss on joints the camera does not see (1: every joint alike);
            other than 1 it needs training renders with ``visible`` flags (``render_probe_data(visibility=True)``).
        sample_weights: how often each embodiment's renders are drawn, relative, one per entry of ``train``
            (default: every render alike), e.g. to give a hand with fewer joints or a harder one more steps.
        save_every: with ``out_dir``, save the training state there every this many steps (0: never), so a killed
            run can continue (:mod:`~worldmodel.evaluation.probe_resume`); removed once the probe is saved.
        resume: continue the interrupted run whose state is in ``out_dir`` (same renders and settings; refused
            otherwise) instead of starting at step 0; the result is the probe the uninterrupted run would give.
        test_time_sizes: sizes the finished probe reads each frame at, positions averaged (see
            :class:`KeypointProbe`; default: the init probe's, else the working size alone); its held-out accuracy
            is measured so.
    """
    from tqdm.auto import tqdm

    embodiments = [get(d.embodiment).name for d in train]
    if not embodiments:
        raise ValueError("train_probe needs renders of at least one embodiment")
    if len(set(embodiments)) != len(embodiments):
        raise ValueError(f"embodiments must be distinct, got {embodiments}")
    if [get(d.embodiment).name for d in heldout] != embodiments:
        raise ValueError("heldout must hold renders of the same embodiments as train, in the same order")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    if not hidden_weight > 0:
        raise ValueError(f"hidden_weight must be > 0, got {hidden_weight}")
    if hidden_weight != 1.0 and any(d.visible is None for d in train):
        raise ValueError("hidden_weight needs training renders with visibility flags (render_probe_data("
                         "visibility=True))")
    if sample_weights is not None and (len(sample_weights) != len(train) or not all(w > 0 for w in sample_weights)):
        raise ValueError(f"sample_weights must hold one positive weight per embodiment ({len(train)}), "
                         f"got {list(sample_weights)}")
    check_test_time_sizes(test_time_sizes)
    eval_sizes = tuple(sorted(set(eval_sizes or eval_sizes_for(size))))
    held = heldout

    if init is not None:
        if (bad := init_mismatch(init, embodiments, size)) is not None:
            raise ValueError(f"init {bad}")
        widths, head_stride = tuple(init.config.widths), int(init.config.head_stride)
        if test_time_sizes is None:
            test_time_sizes = init.config.get("test_time_sizes")
    fingerprint = train_fingerprint(
        embodiments, size, len(train[0].images), steps, batch_size, lr, seed, hidden_weight, sample_weights,
        (data_info or {}).get("hand_style"), (data_info or {}).get("two_hand_renders", 0.0), widths=tuple(widths),
        head_stride=int(head_stride))
    state = None if out_dir is None else read_train_state(out_dir)
    if resume:
        if state is None:
            raise FileNotFoundError(f"resume: no {TRAIN_STATE_FILE} of an interrupted run in {out_dir}")
        if (bad := resume_mismatch(state, fingerprint)) is not None:
            raise ValueError(f"resume: {Path(out_dir) / TRAIN_STATE_FILE} is another run's: {bad}")
    elif state is not None:  # a fresh run would overwrite (or, when done, delete) another run's state
        raise ValueError(f"{Path(out_dir) / TRAIN_STATE_FILE}: out_dir holds an interrupted run (step "
                         f"{state['step']}); resume it, or choose another out_dir")
    torch.manual_seed(seed)
    model = KeypointProbe(embodiments=embodiments, size=size, widths=tuple(widths), head_stride=head_stride,
                          test_time_sizes=None if test_time_sizes is None else [int(s) for s in test_time_sizes])
    if init is not None:
        model.load_state_dict(init.state_dict())
    images = torch.from_numpy(np.concatenate([d.images for d in train]))  # (N, S, S, 3) uint8, kept compact
    uv = torch.from_numpy(np.concatenate([d.uv for d in train]))
    valid = torch.from_numpy(np.concatenate([d.valid for d in train]))
    emb_index = torch.cat([torch.full((len(d.images),), i) for i, d in enumerate(train)])
    hidden = None
    if hidden_weight != 1.0:
        hidden = torch.from_numpy(np.concatenate([d.valid & ~np.asarray(d.visible, bool) for d in train]))
    # None draws uniformly, as probes did before sample_weights (same stream, same batches)
    draw = None if sample_weights is None else draw_probabilities([len(d.images) for d in train], sample_weights)
    present_hand = torch.stack([torch.from_numpy(get(e).slot_mask[side_offset(get(e).side):][:NUM_HAND_JOINTS].copy())
                                for e in embodiments])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    log, losses, start, seconds_before = [], [], 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        log, losses, start = list(state["log"]), list(state["losses"]), int(state["step"])
        seconds_before = float(state["train_seconds"])
    t1 = time.perf_counter()
    model.train()
    bar = tqdm(range(start, steps), desc="train probe", unit="step", disable=not progress, initial=start,
               total=steps)
    for step in bar:
        if draw is None:
            idx = torch.randint(len(images), (batch_size,), generator=gen)
        else:
            idx = torch.multinomial(draw, batch_size, replacement=True, generator=gen)
        x = augment(images[idx].permute(0, 3, 1, 2).float() / 255.0, gen)
        loss, parts = probe_loss(model, x, uv[idx], valid[idx], emb_index[idx], present_hand[emb_index[idx]],
                                 None if hidden is None else hidden[idx], hidden_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(parts["loss"])
        if step % 50 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{parts['loss']:.3f}", px=f"{parts['px']:.2f}")
            log.append({"step": step, **{k: round(v, 4) for k, v in parts.items()}})
        if out_dir is not None and save_every > 0 and (step + 1) % save_every == 0 and step + 1 < steps:
            save_train_state(out_dir, {
                "fingerprint": fingerprint, "step": step + 1, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "generator": gen.get_state(),
                "losses": losses, "log": log, "train_seconds": seconds_before + time.perf_counter() - t1})
    bar.close()
    train_seconds = seconds_before + time.perf_counter() - t1
    model.eval()
    heldout = {d.embodiment: evaluate_probe(model, d, eval_sizes) for d in held}
    num_renders = len(train[0].images)
    info = {"num_renders": int(num_renders), "num_heldout": int(len(held[0].images)), "steps": int(steps),
            "batch_size": int(batch_size), "lr": float(lr), "seed": int(seed), **(data_info or {}),
            **({"hidden_weight": float(hidden_weight)} if hidden_weight != 1.0 else {}),
            **({"sample_weights": dict(zip(embodiments, map(float, sample_weights), strict=True))}
               if sample_weights else {}),
            **({"init": dict(init.config.train_info or {})} if init is not None else {}),
            **({"resumed_at_step": int(start)} if start else {}), "train_seconds": round(train_seconds, 1)}
    if heldout_two_hands:
        info["two_hand_heldout"] = {d.embodiment: evaluate_probe(model, d, (size,))[str(size)]
                                    for d in heldout_two_hands}
    render_seconds = float(info.get("render_seconds", 0.0))
    model.register_to_config(heldout=heldout, train_info=info)
    k = max(1, len(losses) // 20)
    report = ProbeReport(embodiments=embodiments, size=size, num_renders=num_renders, steps=steps, seed=seed,
                         heldout=heldout, loss_first=float(np.mean(losses[:k])), loss_last=float(np.mean(losses[-k:])),
                         render_seconds=render_seconds, train_seconds=train_seconds,
                         num_parameters=sum(p.numel() for p in model.parameters()), log=log, model=model)
    if out_dir is not None:
        report.out_dir = str(save_probe(model, out_dir, report))
        (Path(out_dir) / TRAIN_STATE_FILE).unlink(missing_ok=True)  # the finished probe supersedes it
    return report


def measure_probe(model: KeypointProbe, heldout: Sequence, record: dict,
                  test_time_sizes: Sequence[int] | None = None, heldout_two_hands: Sequence | None = None) -> dict:
    """Measure a trained probe again and store the figures in its config, in place of the ones it was saved with.

    The weights do not change; ``test_time_sizes`` (None: the working size alone) becomes part of the probe, so
    every later reading, and the recorded accuracy, uses it. Args: ``heldout``: renders of every embodiment the
    probe covers, in its order; ``record``: how they were made (seed, count, ...), stored with the timing as
    ``train_info["measured"]``; ``heldout_two_hands``: two-hand renders, needed when the probe recorded a two-hand
    figure (it is measured again too). Returns the new ``heldout`` table.
    """
    check_test_time_sizes(test_time_sizes)
    names = list(model.config.embodiments)
    if [get(d.embodiment).name for d in heldout] != names:
        raise ValueError(f"heldout must hold renders of the probe's embodiments in its order: {', '.join(names)}")
    info = dict(model.config.train_info or {})
    if "two_hand_heldout" in info and heldout_two_hands is None:
        raise ValueError("this probe recorded a two-hand accuracy; give heldout_two_hands to measure it again")
    t0 = time.perf_counter()
    model.register_to_config(test_time_sizes=None if test_time_sizes is None else [int(s) for s in test_time_sizes])
    model.eval()
    size = int(model.config.size)
    table = {d.embodiment: evaluate_probe(model, d, eval_sizes_for(size)) for d in heldout}
    if "two_hand_heldout" in info:
        info["two_hand_heldout"] = {d.embodiment: evaluate_probe(model, d, (size,))[str(size)]
                                    for d in heldout_two_hands}
    info["measured"] = {**record, "test_time_sizes": model.config.test_time_sizes,
                        "seconds": round(time.perf_counter() - t0, 1)}
    model.register_to_config(heldout=table, train_info=info)
    return table


def save_probe(model: KeypointProbe, out_dir: str | os.PathLike, report: ProbeReport | None = None,
               accuracy_extra: dict | None = None) -> Path:
    """Weights (safetensors) + ``config.json`` (with held-out accuracy) + ``accuracy.json`` into ``out_dir``.

    ``accuracy_extra``: more fields for ``accuracy.json`` (e.g. a measured-again probe's training log, kept).
    Everything is written into a hidden temporary folder inside ``out_dir`` first (nothing is written outside the
    folder given), then each file is renamed into place, so no file is ever left half-written; file-system errors
    are one ``OutputError`` naming ``out_dir``.
    """
    import shutil
    import tempfile

    from embodiments.io_utils import OutputError

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".probe-tmp-", dir=out_dir))
    except OSError as e:
        raise OutputError.of(out_dir, e) from None
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        acc = {"embodiments": list(model.config.embodiments), "size": int(model.config.size),
               "read_sizes": list(model.read_sizes),  # the sizes the held-out figures were read at
               "pck_threshold_px": PCK_THRESHOLD_PX, "heldout": model.config.heldout,
               "train_info": model.config.train_info}
        if report is not None:
            acc.update(loss_first=report.loss_first, loss_last=report.loss_last, num_parameters=report.num_parameters,
                       log=report.log)
        acc.update(accuracy_extra or {})
        (tmp / ACCURACY_FILE).write_text(json.dumps(acc, indent=2))
        umask = os.umask(0)
        os.umask(umask)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)  # some writers make 0600 temp files; give what a plain open() would
            os.replace(f, out_dir / f.name)
    except OSError as e:
        raise OutputError.of(out_dir, e) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
