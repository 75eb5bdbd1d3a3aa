"""Stage 1 for presets without pretrained weights (``tiny-sim``): train the small ``AutoencoderKLWan`` on clips.

A randomly initialised VAE cannot decode, so before the video model is trained the autoencoder learns to
reconstruct the clips' frames: loss = MSE + L1 (pixels in [−1, 1]) + a small KL towards N(0, 1), on short windows
of ``num_frames`` frames (5 = Wan's first frame + one 4-frame chunk, so both the image path and the causal temporal
path are trained), then for ``long_steps`` more on windows of ``long_num_frames`` (17 = four chunks): the encoder
and decoder carry a causal feature cache from chunk to chunk, and a VAE that only ever saw one chunk decodes the
later chunks of a 17-frame clip far worse than the first (measured: 24 dB on frames 1–4, 8–10 dB on frames 13–16).
Afterwards the per-channel latent mean/std over clip windows are written into the VAE config
(``latents_mean`` / ``latents_std``), which the pipeline uses to normalise latents to unit scale for flow matching.
With ``train_encoder=False`` only the decoder learns (``scripts/vae_finetune_decoder.py``): the latent space stays
fixed, so a video model already trained on this VAE keeps working and gets the sharper decoder for free.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from worldmodel.training.hand_loss import hand_pixel_masks


@dataclasses.dataclass
class VaeTrainConfig:
    """Stage-1 settings (``TrainConfig.vae`` holds overrides of these fields)."""

    steps: int = 300
    batch_size: int = 2
    num_frames: int = 5  # 4k+1 frames per window
    crop: int | None = 64  # train on random crop×crop patches (the VAE is convolutional): ~(H/crop)² cheaper steps
    lr: float = 1e-3
    warmup_steps: int = 20
    kl_weight: float = 1e-6
    # Decode the posterior mean (False) or a sample (True). At init the encoder's means are ~0.1 while the posterior
    # std is 1, so sampled latents are mostly noise and a short run never learns to reconstruct; with the mean the
    # stage is a deterministic autoencoder whose latent scale the small KL term (μ² part) keeps bounded.
    sample_posterior: bool = False
    l1_weight: float = 1.0
    max_grad_norm: float = 1.0
    stats_batches: int = 8  # windows (× batch_size) that set latents_mean / latents_std
    seed: int = 0
    progress: bool = True
    # second phase: long windows (several chunks, so the causal cache between chunks is trained), own warm-up + cosine
    long_steps: int = 0
    long_num_frames: int = 17
    long_lr: float | None = None  # default: lr / 3
    long_warmup_steps: int = 20
    # False: fine-tune the decoder only. The encoder (and so the latent space and ``latents_mean``/``latents_std``)
    # stays as it is, so a video model trained on this VAE's latents keeps working with the sharper decoder.
    train_encoder: bool = True
    # The hand is a few percent of a frame, so a plain pixel loss spends the capacity on the background (measured:
    # a PSNR-trained decoder improved the scene and left the hand worse for the keypoint probe). ``hand_weight``
    # adds that many times the pixel loss inside the hand region (pixels within ``hand_radius_px`` of the clip's
    # projected skeleton, as ``evaluate`` scores it); ``hand_crop`` is the share of training crops centred on the
    # hand instead of drawn uniformly.
    hand_weight: float = 0.0
    hand_radius_px: float = 6.0
    hand_crop: float = 0.0
    # The 4x VAE with its narrow decoder washes a scene's colour out: a flat blue (96, 70, 180) comes back near grey,
    # on training clips as on held-out ones (docs/results.md, "Fifteenth" and "Sixteenth attempt"). ``color_weight``
    # adds the pixel loss again on the error average-pooled over ``color_pool``² pixel cells — its low-frequency part,
    # the part a colour cast lives in — so that part is not left to the same few percent of the loss as fine detail.
    color_weight: float = 0.0
    color_pool: int = 8
    # Frame 0 is the reference image of every clip the model generates, and the causal VAE encodes and decodes it
    # alone, through only the current-time taps of each causal convolution. In 5-frame windows it is a fifth of the
    # loss, and the shipped decoders keep a colour cast on it that later frames do not have (a flat blue clip: frame
    # 0 decodes grey-blue, frames 1-4 blue). ``first_frame_weight`` adds frame 0's pixel (and colour) loss again that
    # many times. Measured: 700 decoder steps at weight 4 left frame 0's cast where it was, as did the same run at 0
    # (docs/results.md, "Seventeenth attempt"): frame 0's path through the causal encoder, not its share of the loss,
    # keeps the cast (a flat blue's frame-0 latent lies close to flat grey's; "Eighteenth attempt"), and an encoder
    # trained with the later latents anchored (``anchor_weight``) removes most of it.
    first_frame_weight: float = 0.0
    # A whole-VAE fine-tune moves the latent space that the video model was trained on. ``anchor_weight`` adds that
    # many times the mean squared distance, in units of ``latents_std``, between the encoder's latents of frames
    # 1…T−1 (latent frames 1 on) and those of the VAE the run started from, and leaves latent frame 0 (the reference
    # image alone, whose colour the narrow causal encoder loses) free to move; ``latents_mean``/``latents_std`` stay
    # the starting VAE's, so a video model trained on them reads the moved frame 0 on the scale it knows. Needs
    # ``train_encoder``. Measured: 1900 steps at weight 10 with ``first_frame_weight`` 4 took frame 0's cast from 17.3
    # to 4.9 levels (22.66 → 26.84 dB held-out) while latent frames 1 on moved 0.045 ``latents_std`` (RMS);
    # docs/results.md, "Twenty-second attempt". A second run from that VAE, ``first_frame_weight`` 8, took the cast to
    # 1.2 levels (28.67 dB) and every other reconstruction figure up a little ("Twenty-third attempt"); a third, the
    # same way, to 0.9 levels (29.09 dB), all frames 24.58 → 24.81 dB ("Twenty-fourth attempt"); a fourth to 29.38
    # dB, all frames 25.06 dB ("Twenty-fifth attempt"; the VAE of the model shipped in the twenty-sixth).
    anchor_weight: float = 0.0

    def __post_init__(self) -> None:
        for name in ("batch_size", "stats_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"VaeTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.steps < 0 or self.long_steps < 0 or self.steps + self.long_steps < 1:
            raise ValueError(f"VaeTrainConfig needs steps, long_steps >= 0 and at least one step in all, got "
                             f"{self.steps}, {self.long_steps}")
        for name in ("num_frames", "long_num_frames"):
            n = getattr(self, name)
            if n < 1 or (n - 1) % 4:
                raise ValueError(f"VaeTrainConfig.{name} must be 4k+1, got {n}")
        if self.crop is not None and (self.crop < 16 or self.crop % 16):
            raise ValueError(f"VaeTrainConfig.crop must be None or a multiple of 16 (>= 16), got {self.crop}")
        if self.lr <= 0 or self.kl_weight < 0 or self.l1_weight < 0:
            raise ValueError("VaeTrainConfig needs lr > 0, kl_weight >= 0 and l1_weight >= 0")
        if self.hand_weight < 0 or self.hand_radius_px <= 0 or not 0 <= self.hand_crop <= 1:
            raise ValueError(f"VaeTrainConfig needs hand_weight >= 0, hand_radius_px > 0 and hand_crop in [0, 1], "
                             f"got {self.hand_weight}, {self.hand_radius_px}, {self.hand_crop}")
        if self.color_weight < 0 or self.color_pool < 1:
            raise ValueError(f"VaeTrainConfig needs color_weight >= 0 and color_pool >= 1, got {self.color_weight}, "
                             f"{self.color_pool}")
        if self.first_frame_weight < 0:
            raise ValueError(f"VaeTrainConfig needs first_frame_weight >= 0, got {self.first_frame_weight}")
        if self.anchor_weight < 0 or (self.anchor_weight and not self.train_encoder):
            raise ValueError(f"VaeTrainConfig.anchor_weight must be >= 0 and needs train_encoder (a frozen encoder's "
                             f"latents do not move), got {self.anchor_weight}")

    @classmethod
    def from_dict(cls, d: dict) -> VaeTrainConfig:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown VAE stage options {sorted(unknown)}; valid: "
                             f"{[f.name for f in dataclasses.fields(cls)]}")
        return cls(**d)


def vae_loss(vae: torch.nn.Module, video: torch.Tensor, generator: torch.Generator | None, cfg: VaeTrainConfig,
             hand: torch.Tensor | None = None, anchor: torch.nn.Module | None = None):
    """(loss, reconstruction MSE) for a batch of videos (B, 3, T, H, W) in [−1, 1].

    ``hand`` (B, T, H, W) bool marks the hand region; with ``cfg.hand_weight`` its pixels' loss is added again,
    ``hand_weight`` times, averaged over the region (zero when no pixel of the batch is in it). With
    ``cfg.color_weight`` the loss of the error average-pooled over ``color_pool``² cells is added that many times;
    with ``cfg.first_frame_weight`` frame 0's pixel and colour loss is added that many times. ``anchor`` (frozen,
    the VAE the run started from) with ``cfg.anchor_weight`` adds the latent anchor on latent frames 1 on.
    """
    with torch.set_grad_enabled(cfg.train_encoder and torch.is_grad_enabled()):
        posterior = vae.encode(video).latent_dist
    z = posterior.sample(generator=generator) if cfg.sample_posterior else posterior.mode()
    recon = vae.decode(z).sample
    err = recon - video
    mse = err.square().mean()
    # KL(N(μ, σ²) ‖ N(0, 1)) per latent element, averaged (diffusers' .kl() sums over a fixed set of dims).
    kl = 0.5 * (posterior.mean.square() + posterior.var - 1.0 - posterior.logvar).mean()
    loss = _pixel_loss(err, cfg) + cfg.kl_weight * kl
    if cfg.hand_weight and hand is not None and hand.any():
        e = err[hand[:, None].expand_as(err)]
        loss = loss + cfg.hand_weight * _mse_l1(e, cfg)
    if cfg.first_frame_weight:
        loss = loss + cfg.first_frame_weight * _pixel_loss(err[:, :, :1], cfg)
    if cfg.anchor_weight and anchor is not None and z.shape[2] > 1:
        with torch.no_grad():
            ref = anchor.encode(video).latent_dist.mode()
        std = torch.tensor(anchor.config.latents_std, dtype=z.dtype).view(1, -1, 1, 1, 1)
        loss = loss + cfg.anchor_weight * ((posterior.mode()[:, :, 1:] - ref[:, :, 1:]) / std).square().mean()
    return loss, mse


def _mse_l1(err: torch.Tensor, cfg: VaeTrainConfig) -> torch.Tensor:
    return err.square().mean() + cfg.l1_weight * err.abs().mean()


def _pixel_loss(err: torch.Tensor, cfg: VaeTrainConfig) -> torch.Tensor:
    """MSE + ``l1_weight`` · L1 of the error, plus ``color_weight`` times the same of its ``color_pool``² cell means."""
    loss = _mse_l1(err, cfg)
    if cfg.color_weight:
        p = min(cfg.color_pool, *err.shape[-2:])
        loss = loss + cfg.color_weight * _mse_l1(torch.nn.functional.avg_pool3d(err, (1, p, p), ceil_mode=True), cfg)
    return loss


def _hand_centre(mask: torch.Tensor) -> tuple[float, float] | None:
    """Mean (row, col) of the hand pixels of a (B, T, H, W) mask, or None when there are none."""
    where = mask.nonzero()
    return None if not len(where) else (float(where[:, 2].float().mean()), float(where[:, 3].float().mean()))


def _batch(dataset, step: int, cfg: VaeTrainConfig, crop: bool = True, phase: int = 0,
           hand: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Clip windows (B, 3, T, h, w) for ``step`` and, with ``hand``, their hand regions (B, T, h, w).

    Indices, window starts and crops are a function of (seed, step, phase); phase 0 keys on (seed, step) alone, so
    short-window runs draw what they drew before phases existed (and before hand crops: their draw comes last).
    """
    n = len(dataset)
    rng = np.random.default_rng([cfg.seed, step] + ([phase] if phase else []))
    idx = rng.choice(n, size=min(cfg.batch_size, n), replace=False)
    dataset.set_epoch(step if not phase else 10_000_000 * phase + step)
    items = [dataset[int(i)] for i in idx]
    video = torch.stack([it["video"] for it in items])
    H, W = video.shape[-2:]
    mask = hand_pixel_masks(*(torch.stack([it[k] for it in items]) for k in ("joints", "valid", "K")), (H, W),
                            cfg.hand_radius_px) if hand else None
    if crop and cfg.crop is not None and cfg.crop < min(H, W):
        # crops on the 16-pixel grid, so crop latents line up with full-frame latents
        i, j = (int(rng.integers(0, (S - cfg.crop) // 16 + 1)) * 16 for S in (H, W))
        centre = _hand_centre(mask) if mask is not None and cfg.hand_crop else None
        if centre is not None and rng.random() < cfg.hand_crop:
            i, j = (int(np.clip(round((c - cfg.crop / 2) / 16), 0, (S - cfg.crop) // 16)) * 16
                    for c, S in zip(centre, (H, W), strict=True))
        video = video[..., i:i + cfg.crop, j:j + cfg.crop]
        if mask is not None:
            mask = mask[..., i:i + cfg.crop, j:j + cfg.crop]
    return video, mask


@torch.no_grad()
def latent_statistics(vae: torch.nn.Module, dataset, cfg: VaeTrainConfig) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior means over ``stats_batches`` batches of clip windows."""
    vae.eval()
    s1 = s2 = None
    count = 0
    for b in range(cfg.stats_batches):
        z = vae.encode(_batch(dataset, 1_000_000 + b, cfg, crop=False)[0]).latent_dist.mode().double()
        z = z.transpose(0, 1).flatten(1)  # (C, N)
        s1 = z.sum(1) if s1 is None else s1 + z.sum(1)
        s2 = z.square().sum(1) if s2 is None else s2 + z.square().sum(1)
        count += z.shape[1]
    mean = s1 / count
    std = (s2 / count - mean.square()).clamp_min(1e-8).sqrt()
    return mean.float().tolist(), std.float().tolist()


def train_vae(vae: torch.nn.Module, data, height: int, width: int, cfg: VaeTrainConfig | None = None,
              log: str | Path | None = None, on_save: Callable[[int], None] | None = None,
              save_every: int = 0) -> list[float]:
    """Train ``vae`` (in place, float32) on windows of the clips under ``data`` resized to (height, width).

    Phase 0: ``steps`` on ``num_frames`` windows; phase 1: ``long_steps`` on ``long_num_frames`` windows (either
    may be 0, e.g. ``steps=0`` to continue a trained VAE on long windows only). Writes one JSON line per step to
    ``log`` (phase, loss, reconstruction PSNR, seconds), then sets the VAE config's ``latents_mean`` /
    ``latents_std`` from the trained encoder (over windows of the last phase's length; not with ``anchor_weight``).
    Returns the losses.
    """
    from worldmodel.training.data import ClipDataset

    cfg = cfg or VaeTrainConfig()
    dataset = ClipDataset(data, cfg.num_frames, height, width, seed=cfg.seed)
    vae.float().train().requires_grad_(True)
    if not cfg.train_encoder:
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    # the VAE as it starts, frozen: the latents the anchor keeps
    anchor = copy.deepcopy(vae).requires_grad_(False).eval() if cfg.anchor_weight else None
    losses: list[float] = []
    log_file = open(log, "a") if log is not None else None  # noqa: SIM115 — closed in finally
    phases = [(0, dataset, cfg.steps, cfg.lr, cfg.warmup_steps)]
    if cfg.long_steps:
        dataset = ClipDataset(data, cfg.long_num_frames, height, width, seed=cfg.seed)  # also sets the statistics
        phases.append((1, dataset, cfg.long_steps, cfg.long_lr or cfg.lr / 3, cfg.long_warmup_steps))
    try:
        for phase, data_i, steps, lr, warmup in phases:
            if steps:
                _train_phase(vae, data_i, phase, steps, lr, warmup, cfg, losses, log_file, offset=len(losses),
                             on_save=on_save, save_every=save_every, anchor=anchor)
    finally:
        if log_file is not None:
            log_file.close()
    if cfg.train_encoder and not cfg.anchor_weight:  # anchored: the video model keeps the statistics it knows
        mean, std = latent_statistics(vae, dataset, cfg)
        vae.register_to_config(latents_mean=mean, latents_std=std)
    vae.requires_grad_(False).eval()
    return losses


def with_new_decoder(vae: torch.nn.Module, decoder_base_dim: int) -> torch.nn.Module:
    """A copy of the ``AutoencoderKLWan`` ``vae`` with a freshly initialised decoder of width ``decoder_base_dim``.

    The encoder, ``quant_conv``/``post_quant_conv`` and ``latents_mean``/``latents_std`` are ``vae``'s, so the latent
    space — and any video model trained on it — stays as it is; only the decoder (its capacity) is new. Train it with
    ``train_encoder=False``.
    """
    from diffusers import AutoencoderKLWan

    config = {k: v for k, v in vae.config.items() if not k.startswith("_")}
    wide = AutoencoderKLWan.from_config({**config, "decoder_base_dim": decoder_base_dim})
    kept = {k: v for k, v in vae.state_dict().items() if not k.startswith("decoder.")}
    missing, unexpected = wide.load_state_dict(kept, strict=False)
    assert not unexpected and all(k.startswith("decoder.") for k in missing), (missing, unexpected)
    return wide


def continue_vae(src: str | Path, dst: str | Path, data, log: str | Path | None = None, save_every: int = 0,
                 decoder_base_dim: int | None = None, **overrides) -> torch.nn.Module:
    """Train the ``AutoencoderKLWan`` saved at ``src`` further on the clips under ``data`` and write it to ``dst``.

    Settings: the tiny-sim stage-1 recipe (``TRAIN_DEFAULTS["tiny-sim"]["vae"]``) with ``overrides`` (any
    :class:`VaeTrainConfig` field), at the tiny-sim frame size. ``decoder_base_dim`` first replaces the decoder with
    a new one of that width (:func:`with_new_decoder`; needs ``train_encoder=False``). ``dst`` is replaced atomically
    every ``save_every`` steps and at the end, so a killed run leaves the last complete VAE; ``dst`` may be ``src``
    (continue in place). Returns the trained VAE.
    """
    from diffusers import AutoencoderKLWan

    from embodiments.io_utils import atomic_dir
    from worldmodel.wan.presets import TINY_SIM_DEFAULTS, TRAIN_DEFAULTS

    vae = AutoencoderKLWan.from_pretrained(src)
    cfg = VaeTrainConfig.from_dict({**TRAIN_DEFAULTS["tiny-sim"]["vae"], **overrides})
    if decoder_base_dim is not None:
        if cfg.train_encoder:
            raise ValueError("a new decoder is trained under the frozen encoder: pass train_encoder=False")
        vae = with_new_decoder(vae, decoder_base_dim)

    def save(step: int) -> None:
        with atomic_dir(dst) as tmp:
            vae.save_pretrained(tmp)

    d = TINY_SIM_DEFAULTS
    train_vae(vae, data, d.height, d.width, cfg, log=log, on_save=save, save_every=save_every)
    save(cfg.steps + cfg.long_steps)  # after the latent statistics are set
    return vae


def _train_phase(vae, dataset, phase: int, steps: int, lr: float, warmup: int, cfg: VaeTrainConfig,
                 losses: list[float], log_file, offset: int, on_save: Callable[[int], None] | None = None,
                 save_every: int = 0, anchor: torch.nn.Module | None = None) -> None:
    """One phase of stage 1: AdamW with warm-up + cosine on ``dataset``'s windows; appends to ``losses``/the log."""
    import diffusers.optimization as opt
    from tqdm.auto import tqdm

    params = [p for p in vae.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    schedule = opt.get_cosine_schedule_with_warmup(optimizer, warmup, steps)
    desc = "vae" if phase == 0 else f"vae, {dataset.num_frames}-frame windows"
    for step in tqdm(range(steps), desc=desc, disable=not cfg.progress, dynamic_ncols=True):
        t0 = time.perf_counter()
        video, hand = _batch(dataset, step, cfg, phase=phase, hand=bool(cfg.hand_weight or cfg.hand_crop))
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step + 7_919 * phase)
        loss, mse = vae_loss(vae, video, gen, cfg, hand, anchor)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if log_file is not None:
            psnr = float(10 * torch.log10(4.0 / mse.detach().clamp_min(1e-12)))  # range [−1, 1] → peak² = 4
            log_file.write(json.dumps({"step": offset + step + 1, "phase": phase, "frames": int(video.shape[2]),
                                       "loss": losses[-1], "psnr": round(psnr, 3),
                                       "lr": schedule.get_last_lr()[0],
                                       "seconds": round(time.perf_counter() - t0, 4)}) + "\n")
            log_file.flush()
        if on_save is not None and save_every and (offset + step + 1) % save_every == 0:
            on_save(offset + step + 1)
