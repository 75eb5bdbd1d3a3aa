"""``HandControlPipeline``: Wan 2.1 I2V sampling steered by sparse 3D hand joints.

Built on diffusers' ``WanImageToVideoPipeline``: prompt and image encoding, the I2V condition (``prepare_latents``),
the scheduler and VAE decoding are the parent's; this class adds the control module, the 52-channel transformer
input, the choice of what the classifier-free-guidance unconditional branch sees, and the sampling defaults a saved
folder records. ``from_pretrained`` / ``save_pretrained`` read and write diffusers pipeline folders
(``worldmodel.wan.pretrained``).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import warnings

import numpy as np
import PIL.Image
import torch
from diffusers import WanImageToVideoPipeline
from diffusers.pipelines.wan.pipeline_wan_i2v import retrieve_latents
from diffusers.utils.torch_utils import get_module_execution_device, randn_tensor

from embodiments.sparse import SparseJoints
from embodiments.transforms import scale_intrinsics
from embodiments.view_check import check_view
from worldmodel.wan import pretrained
from worldmodel.wan.adapter import HandControlledWan, ensure_widened
from worldmodel.wan.presets import WanComponents, shipped_path
from worldmodel.wan.prompt import pad_prompt_embeds
from worldmodel.wan.sampling import (
    FULL_DEFAULTS,
    SamplingDefaults,
    clip_resize,
    set_timesteps,
)


@dataclasses.dataclass
class HandControlOutput:
    """``frames``: (T, H, W, 3) float in [0, 1] (output_type "np"), list of PIL images ("pil") or latents.

    ``control`` (1, 16, T', h, w) and ``condition`` (1, 20, T', h, w, motion features applied) when requested.
    """

    frames: object
    control: torch.Tensor | None = None
    condition: torch.Tensor | None = None


def _as_image(image) -> tuple[PIL.Image.Image, int, int]:
    """PIL image, (H, W, 3) uint8 array, or (3, H, W) tensor in [−1, 1] → pipeline input and its (H, W)."""
    if isinstance(image, PIL.Image.Image):
        return image.convert("RGB"), image.height, image.width
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image array must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        return PIL.Image.fromarray(image), image.shape[0], image.shape[1]
    if isinstance(image, torch.Tensor):
        if image.ndim == 4 and image.shape[0] == 1:
            image = image[0]
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image tensor must be (3, H, W) or (1, 3, H, W) in [-1, 1], got {tuple(image.shape)}")
        # One representation for both encoders: CLIP's processor expects 0–255 images.
        arr = ((image.detach().float().cpu().permute(1, 2, 0) + 1.0) * 127.5).round().clamp(0, 255)
        return PIL.Image.fromarray(arr.to(torch.uint8).numpy()), image.shape[-2], image.shape[-1]
    raise ValueError(f"image must be a PIL image, an (H, W, 3) uint8 array or a tensor, got {type(image).__name__}")


def check_control_matches_vae(control, vae) -> None:
    """The control module must place joints on the VAE's latent grid: same spatial and temporal compression."""
    if control is None or vae is None:
        return
    for ours, theirs in (("downsample", "scale_factor_spatial"), ("temporal_stride", "scale_factor_temporal")):
        a, b = getattr(control.config, ours, None), getattr(vae.config, theirs, None)
        if a is not None and b is not None and a != b:
            raise ValueError(f"the control module's {ours} is {a} but the VAE's {theirs} is {b}: the joints would "
                             f"land on the wrong latent cells; build the control module with {ours}={b}")


class HandControlPipeline(WanImageToVideoPipeline):
    """Reference image + SparseJoints (camera frame, with K) + prompt → video.

    ``transformer`` must be the widened (52-channel) model, usually with the trained LoRA; ``control`` is the
    ``HandControlModule``. Without a text encoder, pass ``prompt_embedder`` (tiny preset) or ``prompt_embeds``.
    ``sampling``: the :class:`SamplingDefaults` as a dict (kept in ``model_index.json``); ``base_model``: the folder
    that components absent from a saved folder come from.
    """

    _optional_components = [*WanImageToVideoPipeline._optional_components, "tokenizer", "text_encoder", "control",
                            "prompt_embedder"]

    def __init__(self, tokenizer, text_encoder, vae, scheduler, image_processor=None, image_encoder=None,
                 transformer=None, control=None, prompt_embedder=None, transformer_2=None, boundary_ratio=None,
                 expand_timesteps: bool = False, sampling: dict | None = None, base_model: str | None = None):
        super().__init__(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                         image_processor=image_processor, image_encoder=image_encoder, transformer=transformer,
                         transformer_2=transformer_2, boundary_ratio=boundary_ratio,
                         expand_timesteps=expand_timesteps)
        if transformer is not None:
            ensure_widened(transformer)
        self.register_modules(control=control, prompt_embedder=prompt_embedder)
        check_control_matches_vae(control, vae)
        if sampling is not None:
            SamplingDefaults.from_dict(sampling, "sampling")  # validate early
        self.register_to_config(sampling=sampling, base_model=base_model)
        self._base_components: frozenset[str] = frozenset()  # components save_pretrained leaves to base_model

    @property
    def defaults(self) -> SamplingDefaults:
        """How this model expects to be sampled (frame size and count, steps, guidance, shift, CFG, CLIP)."""
        sampling = self.config.get("sampling")
        return FULL_DEFAULTS if sampling is None else SamplingDefaults.from_dict(sampling, "sampling")

    @defaults.setter
    def defaults(self, value: SamplingDefaults) -> None:
        self.register_to_config(sampling=value.to_dict())

    @classmethod
    def from_components(cls, components: WanComponents, control: torch.nn.Module) -> HandControlPipeline:
        return cls(tokenizer=components.tokenizer, text_encoder=components.text_encoder, vae=components.vae,
                   scheduler=components.scheduler, image_processor=components.image_processor,
                   image_encoder=components.image_encoder, transformer=components.transformer, control=control,
                   prompt_embedder=components.prompt_embedder, sampling=components.defaults.to_dict())

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, torch_dtype: torch.dtype = torch.float32,
                        base: str | os.PathLike | None = None, dtype: torch.dtype | None = None,
                        local_files_only: bool = True, **kwargs) -> HandControlPipeline:
        """Load a folder written by :meth:`save_pretrained`, an older dexworld checkpoint folder, or a shipped model.

        ``torch_dtype`` (or diffusers' newer spelling ``dtype``): transformer and text encoder (VAE, CLIP and control
        module stay float32). ``base``: the local Wan 2.1 I2V folder for components the folder leaves out (default:
        the one it names). Local files only: nothing is ever downloaded.
        """
        torch_dtype = dtype or torch_dtype
        if not local_files_only:
            raise ValueError("HandControlPipeline.from_pretrained reads local folders only (local_files_only=True)")
        if kwargs:
            raise TypeError(f"HandControlPipeline.from_pretrained: unsupported option(s) {sorted(kwargs)}")
        return pretrained.load(cls, pretrained_model_name_or_path, torch_dtype=torch_dtype, base=base)

    def save_pretrained(self, save_directory: str | os.PathLike, lora: str = "adapter",
                        base: str | os.PathLike | None = None, self_contained: bool = False, **kwargs) -> None:
        """Write a diffusers pipeline folder: ``model_index.json`` + one subfolder per component.

        ``lora="adapter"`` keeps the LoRA as a peft adapter beside the transformer, ``"fused"`` merges it in. With
        ``base`` (or when loaded from a folder naming one) the base model's weights are referenced, not copied.
        """
        if kwargs:
            raise TypeError(f"HandControlPipeline.save_pretrained: unsupported option(s) {sorted(kwargs)}")
        pretrained.save(self, save_directory, lora=lora, base=base, self_contained=self_contained)

    # ------------------------------------------------------------------ helpers shared with training
    def embed_prompts(self, prompts: list[str], device, dtype) -> torch.Tensor:
        """(B, 512, D) prompt embeddings from the text encoder, or the tiny preset's prompt embedder."""
        if self.text_encoder is not None:
            return self._get_t5_prompt_embeds(prompts, max_sequence_length=512, device=device, dtype=dtype)
        if self.prompt_embedder is not None:
            return self.prompt_embedder(prompts, device=device, dtype=dtype)
        raise ValueError("this pipeline has no text encoder and no prompt embedder: pass prompt_embeds= "
                         "(and negative_prompt_embeds= for guidance)")

    def image_embeddings(self, images, device, pixels: torch.Tensor | None = None) -> torch.Tensor | None:
        """CLIP penultimate hidden states (B, L, D) when the transformer uses image cross-attention, else None (a
        pipeline holding only encoders, as the encoding cache builds, embeds whenever it has an image encoder).

        Preprocessing as the checkpoint records (``defaults.clip_preprocess``): ``"center_crop"`` runs the image
        processor on ``images``; ``"resize"`` resizes ``pixels`` — (B, 3, H, W) in [−1, 1], the frames as the VAE sees
        them (default: ``images`` as they are) — bicubic to the encoder's square size without cropping.
        """
        if self.transformer is None:
            if self.image_encoder is None:
                return None
        elif self.transformer.config.image_dim is None:
            return None
        elif self.image_encoder is None:
            raise ValueError("the transformer expects CLIP image embeddings but the pipeline has no image_encoder")
        if self.defaults.clip_preprocess == "center_crop":
            return self.encode_image(images, device)
        if pixels is None:
            arrays = images if isinstance(images, list | tuple) else [images]
            pixels = torch.stack([torch.from_numpy(np.asarray(a, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1.0
                                  for a in arrays])
        proc = self.image_processor
        x = clip_resize(pixels.to(device), self.image_encoder.config.image_size, proc.image_mean, proc.image_std)
        out = self.image_encoder(pixel_values=x.to(self.image_encoder.dtype), output_hidden_states=True)
        return out.hidden_states[-2]

    def _latent_stats(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The VAE's per-channel latent mean and std, shaped (1, C, 1, 1, 1) like ``z``."""
        return tuple(torch.tensor(v, device=z.device, dtype=z.dtype).view(1, -1, 1, 1, 1)
                     for v in (self.vae.config.latents_mean, self.vae.config.latents_std))

    def normalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._latent_stats(z)
        return (z - mean) / std

    def denormalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._latent_stats(z)
        return z * std + mean

    def scheduler_with_shift(self, shift: float):
        cfg = self.scheduler.config
        key = "flow_shift" if "flow_shift" in cfg else "shift" if "shift" in cfg else None
        if key is None:
            raise ValueError(f"scheduler {type(self.scheduler).__name__} has no flow shift setting")
        return type(self.scheduler).from_config(cfg, **{key: float(shift)})

    # ------------------------------------------------------------------ sampling
    def _settings(self, uncond_control, height, width, num_inference_steps, guidance_scale, shift,
                  first_frame=None, color_match=None) -> tuple:
        """Sampling settings: each one left as None takes the value the checkpoint records (:attr:`defaults`); the
        choices are checked by :class:`SamplingDefaults` itself, the sizes and step count here."""
        d = self.defaults
        s = dataclasses.replace(
            d, uncond_control=uncond_control or d.uncond_control, first_frame=first_frame or d.first_frame,
            color_match=color_match or d.color_match, height=height or d.height, width=width or d.width,
            num_inference_steps=num_inference_steps or d.num_inference_steps,
            guidance_scale=d.guidance_scale if guidance_scale is None else guidance_scale,
            shift=d.shift if shift is None else shift)
        if s.height % 16 or s.width % 16 or s.height <= 0 or s.width <= 0:
            raise ValueError(f"height and width must be positive multiples of 16, got {s.height}x{s.width}")
        if s.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {s.num_inference_steps}")
        return (s.uncond_control, s.height, s.width, s.num_inference_steps, s.guidance_scale, s.shift, s.first_frame,
                s.color_match)

    def check_joints(self, joints: SparseJoints, K, height: int, width: int, image_hw: tuple[int, int]):
        """Validate joints/K and return tensors (1, T, 42, 3), (1, T, 3, 3) for (height, width) pixels, (1, T, 42)."""
        if not isinstance(joints, SparseJoints):
            raise ValueError(f"joints must be a SparseJoints, got {type(joints).__name__}")
        if joints.frame != "camera":
            raise ValueError(f"joints must be in the camera frame (joints.frame == 'camera'), got {joints.frame!r}; "
                             "use SparseJoints.transform first")
        T = len(joints)
        if (T - 1) % 4:
            raise ValueError(f"the number of frames must be 4k+1 (e.g. 5, 9, …, 81), joints have {T}")
        K = joints.K if K is None else np.asarray(K, np.float64)
        if K is None:
            raise ValueError("pass K= (3, 3) or (T, 3, 3) pixel intrinsics, or joints that carry K")
        if K.shape not in ((3, 3), (T, 3, 3)):
            raise ValueError(f"K must have shape (3, 3) or (T, 3, 3) with T={T} (the joints' frame count), "
                             f"got {K.shape}")
        if not np.isfinite(K).all() or np.any(np.abs(np.linalg.det(K)) < 1e-12):
            raise ValueError("K must be a finite, invertible pixel intrinsics matrix")
        if not joints.valid.any():
            if getattr(self.control.config, "occlusion", None) == "upstream":  # the authors' zero-joint encoding
                warnings.warn("all joints are marked invalid: in upstream mode they are encoded as the authors' "
                              "data pipeline does (zero joints at cell (0, 0)), which still conditions the video",
                              stacklevel=3)
            else:
                warnings.warn("all joints are marked invalid: the video is generated without hand control",
                              stacklevel=3)
        h0, w0 = image_hw
        check_view((h0, w0), joints, K, name="the reference image")
        if (h0, w0) != (height, width):  # K refers to the reference image's pixels; follow its resize
            K = scale_intrinsics(K, width / w0, height / h0)
        K = np.broadcast_to(K, (T, 3, 3))
        dev = self._execution_device
        return (torch.from_numpy(joints.positions)[None].to(dev), torch.tensor(K, dtype=torch.float32)[None].to(dev),
                torch.from_numpy(joints.valid)[None].to(dev))

    @torch.no_grad()
    def __call__(self, image, joints: SparseJoints, prompt: str | None = None, negative_prompt: str | None = None,
                 prompt_embeds: torch.Tensor | None = None, negative_prompt_embeds: torch.Tensor | None = None,
                 K: np.ndarray | None = None, height: int | None = None, width: int | None = None,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 shift: float | None = None, uncond_control: str | None = None, seed: int | None = None,
                 generator: torch.Generator | None = None, latents: torch.Tensor | None = None,
                 output_type: str = "np", return_control: bool = False, progress: bool = True,
                 first_frame: str | None = None, color_match: str | None = None) -> HandControlOutput:
        """Generate ``len(joints)`` frames (must be 4k+1) following the joints from the reference ``image``.

        ``K`` (default ``joints.K``) is in the pixels of ``image``; it is rescaled when ``height``/``width``
        differ. ``uncond_control``: ``"unedited"`` — the unconditional branch sees the plain I2V condition and no
        control volume (as Wan-Move does); ``"joints"`` — it sees the same joint condition as the conditional branch,
        so guidance acts on the prompt only (as the paper's authors do). ``first_frame``: ``"generate"`` or
        ``"reference"``; ``color_match``: ``"none"`` or ``"reference"`` (:class:`SamplingDefaults`). Every setting
        left as None takes the value the checkpoint records (:attr:`defaults`).
        """
        uncond_control, height, width, steps, guidance_scale, shift, first_frame, color_match = self._settings(
            uncond_control, height, width, num_inference_steps, guidance_scale, shift, first_frame, color_match)
        if prompt is None and prompt_embeds is None:
            prompt = ""
        if prompt is not None and prompt_embeds is not None:
            raise ValueError("pass either prompt or prompt_embeds, not both")
        image, h0, w0 = _as_image(image)
        jt, Kt, vt = self.check_joints(joints, K, height, width, (h0, w0))
        num_frames = jt.shape[1]
        device = self._execution_device
        dtype = self.transformer.dtype
        do_cfg = guidance_scale > 1.0

        if prompt_embeds is None:
            prompt_embeds = self.embed_prompts([prompt], device, dtype)
        if do_cfg and negative_prompt_embeds is None:
            negative_prompt_embeds = self.embed_prompts([negative_prompt or ""], device, dtype)
        prompt_embeds = pad_prompt_embeds(prompt_embeds.to(device, dtype))
        if prompt_embeds.ndim == 2:
            prompt_embeds = prompt_embeds[None]
        pixels = self.video_processor.preprocess(image, height=height, width=width).to(device, torch.float32)
        image_embeds = self.image_embeddings(image, device, pixels=pixels)
        if image_embeds is not None:
            image_embeds = image_embeds.to(dtype)

        if generator is None and seed is not None:
            generator = torch.Generator("cpu").manual_seed(int(seed))
        scheduler = self.scheduler_with_shift(shift)
        set_timesteps(scheduler, steps, device=device)
        latents, condition = self.prepare_latents(pixels, 1, self.vae.config.z_dim, height, width, num_frames,
                                                  torch.float32, device, generator, latents)
        model = HandControlledWan(self.transformer, self.control)
        control, cond_joint = model.control_maps(jt, Kt, condition, vt)
        if uncond_control == "joints":
            cond_u, control_u = cond_joint, control
        else:
            cond_u, control_u = condition, torch.zeros_like(control)
        if do_cfg:
            neg = pad_prompt_embeds(negative_prompt_embeds.to(device, dtype))
            neg = neg[None] if neg.ndim == 2 else neg
            cond_in, control_in = torch.cat([cond_joint, cond_u]), torch.cat([control, control_u])
            text_in = torch.cat([prompt_embeds, neg])
            img_in = None if image_embeds is None else torch.cat([image_embeds, image_embeds])
        else:
            cond_in, control_in, text_in, img_in = cond_joint, control, prompt_embeds, image_embeds

        first = condition[:, -latents.shape[1]:, :1] if first_frame == "reference" else None
        latents = self._denoise(model, scheduler, latents, (cond_in, control_in, text_in, img_in), guidance_scale,
                                do_cfg, progress, first, generator)
        reference = pixels if color_match == "reference" else None
        frames = latents if output_type == "latent" else self._decode(latents, output_type, reference)[0]
        return HandControlOutput(frames=frames, control=control if return_control else None,
                                 condition=cond_joint if return_control else None)

    def _denoise(self, model: HandControlledWan, scheduler, latents: torch.Tensor, inputs: tuple, guidance_scale: float,
                 do_cfg: bool, progress: bool, first: torch.Tensor | None = None,
                 generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
        """The sampling loop: ``inputs`` = (condition, control, text, image embeddings), CFG halves stacked.

        ``first`` (B, z, 1, h, w): the reference's normalised latent, which replaces latent frame 0 before every step
        as flow matching noises a clean latent, (1 − σ)·first + σ·noise (the frame's own initial noise), and at the
        end (``first_frame="reference"``). ``generator`` (one, or one per item) goes to every scheduler whose
        ``step`` takes one, as diffusers' pipelines pass it (``prepare_extra_step_kwargs``): it draws the fresh noise
        of a stochastic sampler (``FlowMatchEulerDiscreteScheduler(stochastic_sampling=True)``) after the initial
        noise, so a seed gives one video.
        """
        cond_in, control_in, text_in, img_in = inputs
        noise0 = None if first is None else latents[:, :, :1].clone()
        takes_generator = "generator" in inspect.signature(scheduler.step).parameters
        step_kwargs = {"generator": generator} if takes_generator else {}
        timesteps = scheduler.timesteps
        for i, t in enumerate(self.progress_bar(timesteps) if progress else timesteps):
            if first is not None:
                sigma = scheduler.sigmas[i].to(latents)
                latents = torch.cat([(1.0 - sigma) * first + sigma * noise0, latents[:, :, 1:]], dim=2)
            x = torch.cat([latents, latents]) if do_cfg else latents
            pred = model(x, t.expand(x.shape[0]), cond_in, control_in, text_in, img_in).float()
            if do_cfg:
                pred_c, pred_u = pred.chunk(2)
                pred = pred_u + guidance_scale * (pred_c - pred_u)
            latents = scheduler.step(pred, t, latents, return_dict=False, **step_kwargs)[0]
        if first is not None:
            latents = torch.cat([first.to(latents), latents[:, :, 1:]], dim=2)
        return latents

    def _decode(self, latents: torch.Tensor, output_type: str, reference: torch.Tensor | None = None):
        """Latents (B, C, T', h, w) → B videos in ``output_type``; with the B ``reference`` images (B, 3, H, W) in
        [−1, 1], their colours matched (``color_match="reference"``, :meth:`reference_color_error`)."""
        z = self.denormalize_latents(latents.to(self.vae.dtype))
        video = self.vae.decode(z, return_dict=False)[0]
        if reference is not None:
            first, later = self.reference_color_error(reference)
            video = video.float()
            video = torch.cat([video[:, :, :1] - first[..., None, None].to(video),
                               video[:, :, 1:] - later[..., None, None].to(video)], dim=2).clamp(-1.0, 1.0)
        return self.video_processor.postprocess_video(video, output_type=output_type)

    @torch.no_grad()
    def reference_color_error(self, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The VAE's mean colour error (B, 3, 1) on B reference images (B, 3, H, W) in [−1, 1]: on frame 0 and on
        the later frames of the reference encoded and decoded as a still clip of 1 + ``vae_scale_factor_temporal``
        frames (the causal VAE encodes frame 0 alone, so its error differs from the later frames')."""
        still = reference.unsqueeze(2).expand(-1, -1, 1 + self.vae_scale_factor_temporal, -1, -1)
        device = get_module_execution_device(self.vae)
        z = retrieve_latents(self.vae.encode(still.to(device, self.vae.dtype)), sample_mode="argmax")
        rec = self.vae.decode(z, return_dict=False)[0].float().clamp(-1.0, 1.0).to(reference.device)
        err = (rec - still.float()).mean((-2, -1))  # (B, 3, 1 + t)
        return err[:, :, :1], err[:, :, 1:].mean(2, keepdim=True)

    def batch_condition(self, pixels: torch.Tensor, num_frames: int, height: int, width: int, device) -> torch.Tensor:
        """Wan's I2V condition (B, 4 + z, T', h, w) of B reference images (B, 3, H, W) in [−1, 1], one VAE encode
        for the batch: the same mask and normalised latents ``prepare_latents`` builds one image at a time."""
        B, t = pixels.shape[0], self.vae_scale_factor_temporal
        video = torch.cat([pixels.unsqueeze(2), pixels.new_zeros(B, 3, num_frames - 1, height, width)], dim=2)
        video = video.to(device=get_module_execution_device(self.vae), dtype=self.vae.dtype)
        z = retrieve_latents(self.vae.encode(video), sample_mode="argmax").to(device, torch.float32)
        mean, std = self._latent_stats(z)
        z = (z - mean) * (1.0 / std)  # as prepare_latents: times the reciprocal
        h, w = z.shape[-2:]
        mask = torch.zeros(B, 1, num_frames, h, w)
        mask[:, :, 0] = 1  # the first frame is given; its latent frame stands for t video frames
        mask = torch.cat([mask[:, :, :1].repeat_interleave(t, dim=2), mask[:, :, 1:]], dim=2)
        mask = mask.view(B, -1, t, h, w).transpose(1, 2).to(device)
        return torch.cat([mask, z], dim=1)

    @torch.no_grad()
    def sample_batch(self, images: list, joints: list[SparseJoints], seeds: list[int] | None = None,
                     generators: list[torch.Generator] | None = None, prompts: list[str] | str | None = None,
                     negative_prompt: str | None = None, K: list | None = None, height: int | None = None,
                     width: int | None = None, num_inference_steps: int | None = None,
                     guidance_scale: float | None = None, shift: float | None = None,
                     uncond_control: str | None = None, output_type: str = "np", progress: bool = False,
                     first_frame: str | None = None, color_match: str | None = None) -> list[HandControlOutput]:
        """Sample B independent items in one batch: item i is ``images[i]``, ``joints[i]``, ``seeds[i]``.

        Each item gets the initial noise a single call with its seed draws, so item i matches
        ``self(images[i], joints[i], seed=seeds[i], ...)`` up to float round-off of the batched kernels. All items
        share the frame count, size, steps and guidance; the CFG branches of every item run in the same forward.
        """
        B = len(images)
        if B == 0 or len(joints) != B:
            raise ValueError(f"images and joints must be non-empty lists of one length, got {B} and {len(joints)}")
        if generators is None:
            if seeds is None or len(seeds) != B:
                raise ValueError(f"pass one seed (or generator) per item: {B} items")
            generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        if len(generators) != B:
            raise ValueError(f"pass one generator per item: {B} items, {len(generators)} generators")
        Ks = [None] * B if K is None else list(K)
        prompts = [prompts or ""] * B if prompts is None or isinstance(prompts, str) else list(prompts)
        if len(Ks) != B or len(prompts) != B:
            raise ValueError(f"K and prompts must give one entry per item ({B})")
        uncond_control, height, width, steps, guidance_scale, shift, first_frame, color_match = self._settings(
            uncond_control, height, width, num_inference_steps, guidance_scale, shift, first_frame, color_match)
        if len({len(j) for j in joints}) != 1:
            raise ValueError(f"every item must have the same frame count, got {sorted({len(j) for j in joints})}")
        device, dtype = self._execution_device, self.transformer.dtype
        do_cfg = guidance_scale > 1.0
        pil, pixels, jts, Kts, vts = [], [], [], [], []
        for image, jo, k in zip(images, joints, Ks, strict=True):
            img, h0, w0 = _as_image(image)
            jt, Kt, vt = self.check_joints(jo, k, height, width, (h0, w0))
            pixels.append(self.video_processor.preprocess(img, height=height, width=width).to(device, torch.float32))
            pil.append(img)
            jts.append(jt)
            Kts.append(Kt)
            vts.append(vt)
        num_frames = jts[0].shape[1]
        pixels = torch.cat(pixels)
        condition = self.batch_condition(pixels, num_frames, height, width, device)
        # each item's noise as prepare_latents draws it for a single call with that item's generator
        shape = (1, self.vae.config.z_dim, condition.shape[2], *condition.shape[-2:])
        latents = torch.cat([randn_tensor(shape, generator=g, device=device, dtype=torch.float32) for g in generators])
        text = pad_prompt_embeds(self.embed_prompts(prompts, device, dtype).to(device, dtype))
        image_embeds = self.image_embeddings(pil, device, pixels=pixels)
        image_embeds = None if image_embeds is None else image_embeds.to(dtype)
        scheduler = self.scheduler_with_shift(shift)
        set_timesteps(scheduler, steps, device=device)
        model = HandControlledWan(self.transformer, self.control)
        control, cond_joint = model.control_maps(torch.cat(jts), torch.cat(Kts), condition, torch.cat(vts))
        if do_cfg:
            if uncond_control == "joints":
                cond_u, control_u = cond_joint, control
            else:
                cond_u, control_u = condition, torch.zeros_like(control)
            neg = pad_prompt_embeds(self.embed_prompts([negative_prompt or ""] * B, device, dtype).to(device, dtype))
            inputs = (torch.cat([cond_joint, cond_u]), torch.cat([control, control_u]), torch.cat([text, neg]),
                      None if image_embeds is None else torch.cat([image_embeds, image_embeds]))
        else:
            inputs = (cond_joint, control, text, image_embeds)
        first = condition[:, -latents.shape[1]:, :1] if first_frame == "reference" else None
        latents = self._denoise(model, scheduler, latents, inputs, guidance_scale, do_cfg, progress, first, generators)
        reference = pixels if color_match == "reference" else None
        frames = latents.split(1) if output_type == "latent" else self._decode(latents, output_type, reference)
        return [HandControlOutput(frames=f) for f in frames]


@torch.no_grad()
def i2v_condition(pipe, video: torch.Tensor, latent_frames: int, height: int, width: int, device) -> torch.Tensor:
    """Wan's I2V condition (B, 20, T', h, w) for training: mask + reference latent of each video's first frame.

    It is the condition of a one-frame video, padded with zeros for the later latent frames: the parent pipeline's
    mask is 0 there, and their image-latent channels (its VAE encoding of black frames) are always overwritten by
    the motion features (``wan.apply_motion_features``), so the model input equals the full-length condition's
    while the VAE encodes 1 frame instead of all of them.
    """
    return torch.cat([torch.nn.functional.pad(
        pipe.prepare_latents(v[:, 0][None], 1, 16, height, width, 1, torch.float32, device, None,
                             torch.zeros(1))[1], (0, 0, 0, 0, 0, latent_frames - 1)) for v in video])


def load_for_inference(checkpoint: str | os.PathLike, base_path: str | os.PathLike | None = None,
                       torch_dtype: torch.dtype = torch.float32) -> HandControlPipeline:
    """Alias of :meth:`HandControlPipeline.from_pretrained` (kept for callers of the earlier loader)."""
    return HandControlPipeline.from_pretrained(checkpoint, torch_dtype=torch_dtype, base=base_path)


def load_shipped(name: str = "tiny-sim", torch_dtype: torch.dtype = torch.float32) -> HandControlPipeline:
    """The trained model shipped in the repository (``worldmodel/checkpoints/<name>``) as a ready pipeline."""
    return HandControlPipeline.from_pretrained(shipped_path(name), torch_dtype=torch_dtype)


def export_for_inference(checkpoint: str | os.PathLike, out: str | os.PathLike,
                         base_path: str | os.PathLike | None = None, lora: str = "adapter",
                         self_contained: bool = True) -> os.PathLike:
    """A training checkpoint → a pipeline folder for inference (no optimiser state): load, then save_pretrained."""
    pipe = HandControlPipeline.from_pretrained(checkpoint, base=base_path)
    pipe.save_pretrained(out, lora=lora, self_contained=self_contained)
    return out
