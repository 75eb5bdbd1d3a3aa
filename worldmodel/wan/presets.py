"""Model presets, one code path: ``tiny`` (built from configs, trains on CPU) and ``wan2.1-i2v-14b-480p``.

Both give a :class:`WanComponents` with diffusers' ``WanTransformer3DModel`` (base, 36 input channels),
``AutoencoderKLWan``, a CLIP vision encoder + image processor, a flow-matching scheduler and a text encoder.

``tiny`` choices (documented in docs/worldmodel.md):
- the transformer keeps Wan I2V's image cross-attention (``image_dim`` set), fed by a tiny ``CLIPVisionModel``
  built from a transformers config, so the tiny model runs the same code as the 14B one;
- the UMT5 text encoder is replaced by :class:`HashPromptEmbedder`: fixed, weight-free embeddings per word
  (seeded by a hash of the word), padded with zeros to 512 tokens as Wan pads T5 outputs (Wan's attention
  processor assumes 512 text tokens when image tokens are present);
- weights are random, from a fixed seed, so two builds are identical.

``wan2.1-i2v-14b-480p`` loads a local diffusers-format directory (``transformer/``, ``vae/``, ``image_encoder/``,
``image_processor/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``) with ``local_files_only=True``; it never
downloads. A directory written by :meth:`WanComponents.save` (e.g. a tiny base) loads through the same function.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from worldmodel.wan.prompt import HashPromptEmbedder
from worldmodel.wan.sampling import FULL_DEFAULTS, SamplingDefaults

PRESETS = ("tiny", "tiny-sim", "wan2.1-i2v-14b-480p")
TINY_PRESETS = ("tiny", "tiny-sim")  # built from configs (no pretrained weights); the run keeps its own base


TINY_DEFAULTS = SamplingDefaults(height=64, width=64, num_frames=5, num_inference_steps=8)
# tiny-sim is trained with whole-sample control dropout but without prompt dropout, and its unconditional
# "unedited" branch differs from the dropped-control input it saw; it samples without CFG (guidance 1).
TINY_SIM_DEFAULTS = SamplingDefaults(height=128, width=128, num_frames=17, num_inference_steps=10,
                                     guidance_scale=1.0)
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "checkpoints"

# TrainConfig values a preset starts from (a config file and CLI flags override them). tiny-sim has no pretrained
# base: stage 1 trains its VAE on the clips' frames, stage 2 trains the whole transformer (not only LoRA).
TRAIN_DEFAULTS: dict[str, dict] = {
    "tiny-sim": {"train_base": True, "lora_rank": 8, "lr_lora": 5e-4, "lr_control": 1e-3, "warmup_steps": 30,
                 "batch_size": 8, "steps": 3200, "control_dropout": 0.1, "joint_mask_prob": 0.05,
                 "checkpoint_every": 50, "keep_checkpoints": 2, "tiny": {"vae_base_dim": 16},
                 "vae": {"steps": 4000, "batch_size": 2, "num_frames": 5, "crop": 64, "lr": 1.5e-3,
                         "warmup_steps": 100, "kl_weight": 1e-6, "long_steps": 400, "long_num_frames": 17}},
}


@dataclasses.dataclass
class WanComponents:
    """Everything the pipeline and the trainer need besides the control module."""

    name: str
    transformer: torch.nn.Module
    vae: torch.nn.Module
    scheduler: object
    image_encoder: torch.nn.Module | None = None
    image_processor: object | None = None
    text_encoder: torch.nn.Module | None = None
    tokenizer: object | None = None
    prompt_embedder: HashPromptEmbedder | None = None
    source: str | None = None  # local directory the weights came from, if any
    defaults: SamplingDefaults = FULL_DEFAULTS

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the base components in diffusers' directory layout (atomically: temp dir, then rename)."""
        from embodiments.io_utils import atomic_dir

        directory = Path(directory)
        with atomic_dir(directory) as tmp:
            self.transformer.save_pretrained(tmp / "transformer")
            self.vae.save_pretrained(tmp / "vae")
            self.scheduler.save_pretrained(tmp / "scheduler")
            if self.image_encoder is not None:
                self.image_encoder.save_pretrained(tmp / "image_encoder")
                self.image_processor.save_pretrained(tmp / "image_processor")
            if self.text_encoder is not None:
                self.text_encoder.save_pretrained(tmp / "text_encoder")
                self.tokenizer.save_pretrained(tmp / "tokenizer")
            if self.prompt_embedder is not None:
                self.prompt_embedder.save_pretrained(tmp / "prompt_embedder")
            (tmp / "dexworld_preset.json").write_text(json.dumps({"name": self.name,
                                                                  "defaults": dataclasses.asdict(self.defaults)}))
        return directory

    def to(self, device=None, dtype: torch.dtype | None = None) -> WanComponents:
        for m in (self.transformer, self.vae, self.image_encoder, self.text_encoder):
            if m is not None:
                m.to(device=device, dtype=dtype)
        return self


@dataclasses.dataclass
class TinyConfig:
    """Sizes of the tiny preset (~2.8 M transformer parameters); tests shrink them further.

    Keep the inner width (heads × head_dim) well above 16 × 4 = 64, the per-token output of the frozen
    ``proj_out``: near that size the frozen output layer, not the LoRA, limits how well the model can fit.
    """

    num_layers: int = 4
    num_attention_heads: int = 4
    attention_head_dim: int = 48
    ffn_dim: int = 768
    text_dim: int = 64
    freq_dim: int = 64
    image_encoder: bool = True
    clip_hidden: int = 64
    clip_image_size: int = 32
    clip_patch: int = 8
    vae_base_dim: int = 8
    vae_dim_mult: tuple[int, ...] = (1, 2, 2, 2)  # channel multipliers (× vae_base_dim): 4 levels 8×, 3 levels 4×
    patch: tuple[int, int, int] = (1, 2, 2)  # the transformer's (t, h, w) patch on the latents
    seed: int = 0


# tiny-sim: the same architecture sized for 128×128×17 clips (16×16×5 latents → 8×8×5 tokens with 2×2 patches).
# It trains its whole transformer, yet the width still bounds what a token can output: keep heads × head_dim above
# z · patch volume (64 for 1×2×2; 256 for the 4× VAE's 1×4×4 patch, where 192 wide levelled off at twice the loss of
# 288 wide: docs/results.md, eighth attempt).
TINY_SIM_CONFIG = {"num_layers": 4, "num_attention_heads": 4, "attention_head_dim": 48, "ffn_dim": 768,
                   "vae_base_dim": 8}


def build_tiny(name: str = "tiny", **overrides) -> WanComponents:
    """The tiny presets: random weights from a fixed seed; every module from diffusers/transformers configs.

    ``name="tiny-sim"`` starts from :data:`TINY_SIM_CONFIG` and the 128×128×17 sampling defaults; its weights
    are random until ``dexworld train --preset tiny-sim`` trains them (the shipped result:
    ``HandControlPipeline.from_pretrained("tiny-sim")``).
    """
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel

    unknown = set(overrides) - {f.name for f in dataclasses.fields(TinyConfig)}
    if unknown:
        raise ValueError(f"unknown tiny preset options {sorted(unknown)}; valid: "
                         f"{[f.name for f in dataclasses.fields(TinyConfig)]}")
    if name not in TINY_PRESETS:
        raise ValueError(f"build_tiny builds {TINY_PRESETS}, got {name!r}")
    cfg = TinyConfig(**({**TINY_SIM_CONFIG, **overrides} if name == "tiny-sim" else overrides))
    if len(cfg.vae_dim_mult) not in (3, 4) or min(cfg.vae_dim_mult) < 1:  # 4 levels: 8× spatial, 3 levels: 4×
        raise ValueError(f"vae_dim_mult must be 3 or 4 positive multipliers, got {list(cfg.vae_dim_mult)}")
    if len(cfg.patch) != 3 or min(cfg.patch) < 1:
        raise ValueError(f"patch must be 3 positive sizes (t, h, w), got {list(cfg.patch)}")
    levels = len(cfg.vae_dim_mult)
    # Wan's VAE downsamples 4× in time in its last two levels; the config's scale factors are not derived from the
    # levels by diffusers, so they are set here to what the levels do.
    temporal = [False] * (levels - 3) + [True, True]
    inner = cfg.num_attention_heads * cfg.attention_head_dim
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        image_encoder = image_processor = None
        if cfg.image_encoder:
            from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

            clip_cfg = CLIPVisionConfig(hidden_size=cfg.clip_hidden, intermediate_size=2 * cfg.clip_hidden,
                                        num_hidden_layers=2, num_attention_heads=2, image_size=cfg.clip_image_size,
                                        patch_size=cfg.clip_patch, projection_dim=cfg.clip_hidden)
            image_encoder = CLIPVisionModel(clip_cfg).eval()
            size = cfg.clip_image_size
            image_processor = CLIPImageProcessor(size={"shortest_edge": size},
                                                 crop_size={"height": size, "width": size})
        transformer = WanTransformer3DModel(
            patch_size=tuple(cfg.patch), num_attention_heads=cfg.num_attention_heads,
            attention_head_dim=cfg.attention_head_dim, in_channels=36, out_channels=16, text_dim=cfg.text_dim,
            freq_dim=cfg.freq_dim, ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers, cross_attn_norm=True,
            image_dim=cfg.clip_hidden if cfg.image_encoder else None,
            added_kv_proj_dim=inner if cfg.image_encoder else None, rope_max_seq_len=256)
        vae = AutoencoderKLWan(base_dim=cfg.vae_base_dim, z_dim=16, dim_mult=list(cfg.vae_dim_mult),
                               num_res_blocks=1, attn_scales=[], temperal_downsample=temporal,
                               scale_factor_spatial=2 ** (levels - 1), scale_factor_temporal=4,
                               latents_mean=[0.0] * 16, latents_std=[1.0] * 16).eval()
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        num_train_timesteps=1000, flow_shift=5.0)
    return WanComponents(name=name, transformer=transformer, vae=vae, scheduler=scheduler,
                         image_encoder=image_encoder, image_processor=image_processor,
                         prompt_embedder=HashPromptEmbedder(cfg.text_dim),
                         defaults=TINY_SIM_DEFAULTS if name == "tiny-sim" else TINY_DEFAULTS)


def load_local(path: str | os.PathLike, torch_dtype: torch.dtype = torch.float32,
               load_text_encoder: bool = True) -> WanComponents:
    """Load a diffusers-format Wan I2V directory from disk only (``local_files_only=True``; never downloads).

    ``load_text_encoder=False`` skips UMT5 (for training on precomputed prompt embeddings).
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"no Wan checkpoint directory at {path}; pass the local path of a diffusers-format "
                                "Wan 2.1 I2V checkpoint (e.g. a download of Wan-AI/Wan2.1-I2V-14B-480P-Diffusers); "
                                "dexworld never downloads weights")
    missing = [s for s in ("transformer", "vae", "scheduler") if not (path / s).is_dir()]
    if missing:
        raise FileNotFoundError(f"{path} is not a diffusers-format Wan checkpoint: missing subfolder(s) "
                                f"{', '.join(missing)}")
    kw = {"local_files_only": True}
    transformer = WanTransformer3DModel.from_pretrained(path / "transformer", torch_dtype=torch_dtype, **kw)
    vae = AutoencoderKLWan.from_pretrained(path / "vae", torch_dtype=torch.float32, **kw).eval()
    scheduler = _load_scheduler(path / "scheduler")
    image_encoder = image_processor = text_encoder = tokenizer = prompt_embedder = None
    if (path / "image_encoder").is_dir():
        from transformers import CLIPImageProcessor, CLIPVisionModel

        image_encoder = CLIPVisionModel.from_pretrained(path / "image_encoder", dtype=torch.float32, **kw).eval()
        image_processor = CLIPImageProcessor.from_pretrained(path / "image_processor", **kw)
    elif transformer.config.image_dim is not None:
        raise FileNotFoundError(f"{path}: the transformer expects CLIP image embeddings but there is no "
                                "image_encoder/ subfolder")
    if (path / "prompt_embedder").is_dir():
        prompt_embedder = HashPromptEmbedder.from_pretrained(path / "prompt_embedder")
    elif load_text_encoder:
        if not (path / "text_encoder").is_dir():
            raise FileNotFoundError(f"{path}: no text_encoder/ subfolder; pass load_text_encoder=False and use "
                                    "precomputed prompt embeddings")
        from transformers import AutoTokenizer, UMT5EncoderModel

        text_encoder = UMT5EncoderModel.from_pretrained(path / "text_encoder", dtype=torch_dtype, **kw).eval()
        tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer", **kw)
    for m in (transformer, vae, image_encoder, text_encoder):
        _own_storage(m)
    meta_file = path / "dexworld_preset.json"
    name, defaults = "wan2.1-i2v-14b-480p", FULL_DEFAULTS
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
        name, defaults = meta.get("name", name), SamplingDefaults(**meta.get("defaults", {}))
    return WanComponents(name=name, transformer=transformer, vae=vae, scheduler=scheduler,
                         image_encoder=image_encoder, image_processor=image_processor, text_encoder=text_encoder,
                         tokenizer=tokenizer, prompt_embedder=prompt_embedder, source=str(path.resolve()),
                         defaults=defaults)


@torch.no_grad()
def _own_storage(module: torch.nn.Module | None) -> None:
    """Give every parameter/buffer its own freshly allocated storage, one tensor at a time.

    ``from_pretrained`` may leave tensors as views into the memory-mapped safetensors file at arbitrary byte
    offsets. CPU BLAS kernels round differently for differently aligned buffers, which breaks bitwise-exact
    resume (the same step computed from in-memory and from loaded weights differs in the last bits).
    """
    if module is None:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        t.data = t.data.clone(memory_format=torch.contiguous_format)


def _load_scheduler(directory: Path):
    """The scheduler class named in ``scheduler_config.json`` (Wan ships UniPC with flow sigmas)."""
    import diffusers

    cfg = diffusers.UniPCMultistepScheduler.load_config(directory, local_files_only=True)
    cls = getattr(diffusers, cfg.get("_class_name", ""), None)
    if cls is None or not issubclass(cls, diffusers.SchedulerMixin):
        raise ValueError(f"{directory}: unknown scheduler class {cfg.get('_class_name')!r}")
    return cls.from_config(cfg)


def load_preset(name: str, path: str | os.PathLike | None = None, **options) -> WanComponents:
    """``load_preset("tiny" | "tiny-sim", **TinyConfig fields)`` or ``load_preset("wan2.1-i2v-14b-480p", path=DIR)``."""
    if name in TINY_PRESETS:
        if path is not None:
            return load_local(path, **options)
        return build_tiny(name, **options)
    if name == "wan2.1-i2v-14b-480p":
        if path is None:
            raise ValueError("preset 'wan2.1-i2v-14b-480p' needs path= (a local diffusers-format checkpoint "
                             "directory); dexworld never downloads weights")
        return load_local(path, **options)
    raise ValueError(f"unknown preset {name!r}; choose one of {PRESETS}")


def shipped_path(name: str = "tiny-sim") -> Path:
    """Folder of a model shipped in the repository (``worldmodel/checkpoints/<name>/``); FileNotFoundError if absent."""
    path = SHIPPED_DIR / name
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(f"no shipped model {name!r} at {path} (expected model_index.json); train one with "
                                "`dexworld train --preset tiny-sim` and save it with "
                                "`HandControlPipeline.from_pretrained(CHECKPOINT).save_pretrained(DIR)`")
    return path
