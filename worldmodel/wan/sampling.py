"""How a checkpoint expects to be sampled: :class:`SamplingDefaults`, the Euler sigma schedule and CLIP preprocessing.

A saved pipeline folder records its ``SamplingDefaults`` in ``model_index.json`` (key ``sampling``) and its sampler
as the ``scheduler/`` component; ``generate``, the demo, the editor and ``HandControlPipeline.__call__`` use them
unless told otherwise. A converted upstream checkpoint records the authors' (:data:`UPSTREAM_DEFAULTS`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

UNCOND_CONTROL = ("unedited", "joints")
FIRST_FRAME = ("generate", "reference")
CLIP_PREPROCESS = ("center_crop", "resize")
COLOR_MATCH = ("none", "reference")


@dataclasses.dataclass(frozen=True)
class SamplingDefaults:
    """Frame size and count, steps, guidance, flow shift, CFG branch content and CLIP preprocessing.

    ``uncond_control``: ``"unedited"`` — the unconditional CFG branch sees the plain I2V condition and no control
    volume; ``"joints"`` — it sees the same joint condition, so guidance acts on the prompt only (the authors').
    ``clip_preprocess``: ``"center_crop"`` — the folder's CLIP image processor (diffusers' default: shortest edge
    to the encoder's size, then a centre crop); ``"resize"`` — the whole frame, as the VAE sees it, resized bicubic
    to the encoder's square size without cropping, then CLIP normalisation (the authors').
    ``first_frame``: ``"generate"`` — latent frame 0 is denoised like the others (Wan 2.1); ``"reference"`` — it is
    the reference image's latent throughout, noised to each step's level on its own fixed noise and clean at the end
    (the first-frame conditioning of Wan 2.2 TI2V), so video frame 0 is the VAE's reconstruction of the reference
    and the later frames are denoised next to the true first frame. Either works with a model trained as Wan 2.1
    is: at every step the replaced frame is what training shows the model at that noise level.
    ``color_match``: ``"none"`` — frames as the VAE decodes them; ``"reference"`` — each decoded frame is shifted by
    the VAE's own mean colour error on the reference image, measured by encoding and decoding the reference as a
    still clip of 1 + 4 frames: its per-channel error on frame 0 (the causal VAE's one-frame path) is subtracted
    from frame 0, its error on frames 1–4 from every later frame. A small VAE whose latents do not carry a scene's
    absolute colour (the tiny-sim VAEs: ~20 levels of 255 on frame 0, docs/results.md) gets it back from the image
    it was given; for a VAE that reproduces colours the correction is ~0. It costs one VAE pass over 5 frames.
    """

    height: int
    width: int
    num_frames: int
    num_inference_steps: int = 50
    guidance_scale: float = 5.0
    shift: float = 5.0
    uncond_control: str = "unedited"
    clip_preprocess: str = "center_crop"
    first_frame: str = "generate"
    color_match: str = "none"

    def __post_init__(self):
        if self.uncond_control not in UNCOND_CONTROL:
            raise ValueError(f"uncond_control must be one of {UNCOND_CONTROL}, got {self.uncond_control!r}")
        if self.clip_preprocess not in CLIP_PREPROCESS:
            raise ValueError(f"clip_preprocess must be one of {CLIP_PREPROCESS}, got {self.clip_preprocess!r}")
        if self.first_frame not in FIRST_FRAME:
            raise ValueError(f"first_frame must be one of {FIRST_FRAME}, got {self.first_frame!r}")
        if self.color_match not in COLOR_MATCH:
            raise ValueError(f"color_match must be one of {COLOR_MATCH}, got {self.color_match!r}")

    @classmethod
    def from_dict(cls, d: dict, source: str = "sampling defaults") -> SamplingDefaults:
        """From a saved dict; a clear error naming ``source`` for unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{source}: unknown sampling setting(s) {unknown}; known: {sorted(names)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self, sampler: str | None = None) -> str:
        """One line for help texts and logs."""
        cfg = "off" if self.guidance_scale <= 1.0 else (
            f"{self.guidance_scale:g}, joints in " + ("both branches" if self.uncond_control == "joints" else
                                                      "the conditional branch only"))
        return (f"{self.num_inference_steps} steps{' ' + sampler if sampler else ''}, guidance {cfg}, "
                f"shift {self.shift:g}, {self.width}x{self.height}x{self.num_frames}, CLIP {self.clip_preprocess}"
                + (", first frame from the reference" if self.first_frame == "reference" else "")
                + (", colours matched to the reference" if self.color_match == "reference" else ""))


FULL_DEFAULTS = SamplingDefaults(height=480, width=832, num_frames=81)
# The authors' sampling (Wan 2.1 / DiffSynth): 50 Euler steps, CFG 5 on the prompt only, shift 5, uncropped CLIP.
UPSTREAM_DEFAULTS = SamplingDefaults(height=480, width=832, num_frames=81, num_inference_steps=50, guidance_scale=5.0,
                                     shift=5.0, uncond_control="joints", clip_preprocess="resize")


def upstream_scheduler(shift: float = 5.0):
    """The authors' sampler: flow-matching Euler (diffusers' ``FlowMatchEulerDiscreteScheduler``)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)


def sampler_label(scheduler) -> str:
    """The scheduler's class name, marked when it draws fresh noise at every step (flow-matching Euler with
    ``stochastic_sampling``: x0 is predicted and noised again to the next level instead of following the ODE)."""
    stochastic = getattr(getattr(scheduler, "config", None), "stochastic_sampling", False)
    return type(scheduler).__name__ + (" (stochastic)" if stochastic else "")


def set_timesteps(scheduler, steps: int, device=None) -> None:
    """``scheduler.set_timesteps`` with the sigma grid each sampler expects.

    Flow-matching Euler runs over sigmas = linspace(1, 0, steps + 1)[:-1] (the scheduler applies the shift
    s·σ / (1 + (s − 1)·σ) and appends σ = 0), as Wan's and DiffSynth's samplers do; other schedulers (UniPC with
    flow sigmas, the Wan default) use their own ``set_timesteps(steps)``.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler

    if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1].tolist(), device=device)
    else:
        scheduler.set_timesteps(steps, device=device)


def clip_resize(pixels: torch.Tensor, size: int, mean, std) -> torch.Tensor:
    """The authors' CLIP input: (B, 3, H, W) pixels in [−1, 1] → bicubic to size×size (no crop) → CLIP-normalised."""
    x = torch.nn.functional.interpolate(pixels.float(), size=(size, size), mode="bicubic", align_corners=False)
    x = x * 0.5 + 0.5
    mean = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std
