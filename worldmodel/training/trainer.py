"""Flow-matching LoRA training of the hand-controlled Wan I2V model, with exact resume.

One step: encode the clip with the VAE (x0) and the Wan I2V condition from its first frame; draw σ (uniform or
logit-normal, then shifted; or the authors' recipe, ``timestep_sampling="upstream"``: one of the 1000 shifted steps
of Wan's schedule, uniformly), noise ε, x_σ = (1 − σ)·x0 + σ·ε; the control module turns the (randomly masked)
joints into a control volume and motion features; the transformer predicts the velocity ε − x0; loss = MSE
(weighted per sample by the authors' bell curve over the timestep in the upstream recipe).

Trainable: LoRA (blocks' q, k, v, o, FFN), the widened patch embedding (AdamW, constant 1e-4) and the control module
(AdamW, 2e-4, linear warm-up then cosine to zero). Everything else is frozen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from embodiments.io_utils import OutputError, atomic_dir
from worldmodel.training.distributed import (
    average_gradients,
    clip_grad_norm,
    gather_optimizer_state,
    gather_state_dict,
    global_mean,
    load_optimizer_state,
    make_accelerator,
    micro_batches,
    no_sync_unless_last,
    offload_encoders,
    sample_generator,
    shard_transformer,
)
from worldmodel.training.encoding import encode_windows
from worldmodel.training.hand_loss import hand_pixel_masks, hand_term, latent_hand_mask
from worldmodel.training.run_folder import clean_killed_save, clear_run
from worldmodel.wan.adapter import (
    HandControlledWan,
    add_lora,
    base_state_dict,
    ensure_widened,
    load_base_state_dict,
    load_lora,
    load_patch_embedding_state,
    patch_embedding_state,
    save_lora,
    set_trainable,
)
from worldmodel.wan.checkpoint import (
    CHECKPOINT_KIND,
    CHECKPOINT_VERSION,
    TRANSFORMER_WEIGHTS,
    checkpoint_base_dir,
    read_checkpoint_meta,
)

TIMESTEP_SAMPLING = ("uniform", "logit_normal", "upstream")
UPSTREAM_TRAIN_STEPS = 1000  # the authors' training schedule: 1000 steps of Wan's flow-matching schedule


@dataclasses.dataclass
class TrainConfig:
    """Everything a run needs; stored in every checkpoint so a run can be resumed or sampled from."""

    data: str = ""
    out: str = "runs/hand_control"
    preset: str = "tiny"
    base_path: str | None = None  # local diffusers-format Wan directory (required for the 14B preset)
    init: str | None = None  # a saved HandControlPipeline folder to start from (weights only; step 0, fresh optimiser)
    # with init: a VAE folder that replaces the init pipeline's (carry a trained model onto a new latent space, e.g.
    # a 4× VAE); the control module is re-gridded to its compression, its weights kept
    init_vae: str | None = None
    # with init: keep its video model but learn the control anew: a fresh control module built from ``control`` and
    # ``seed``, and the transformer's control-channel inputs zeroed (so it reads no control volume, as a freshly
    # widened Wan base; the warm start of benchmarks/ablation.py --prior)
    fresh_control: bool = False
    tiny: dict = dataclasses.field(default_factory=dict)  # TinyConfig overrides
    control: dict = dataclasses.field(default_factory=dict)  # HandControlModule config overrides
    num_frames: int | None = None  # default: the preset's
    height: int | None = None
    width: int | None = None
    batch_size: int = 1
    steps: int = 1600
    lora_rank: int = 64
    lora_alpha: float | None = None
    lr_lora: float = 1e-4  # LoRA + patch embedding (+ base with train_base)
    lr_lora_schedule: str = "constant"  # "cosine": the same warm-up + cosine as the control LR (fine-tunes from init)
    lr_control: float = 2e-4
    warmup_steps: int = 100
    cosine_steps: int | None = None  # control LR reaches zero here; default: steps
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    joint_mask_prob: float = 0.05
    timestep_sampling: str = "logit_normal"  # "upstream": the authors' discrete steps + bell-curve loss weight
    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: float = 5.0
    fixed_noise: bool = False  # reuse step 0's noise, σ and mask every step (measuring overfitting)
    train_base: bool = False  # train the whole transformer too (presets without pretrained weights: tiny-sim)
    control_dropout: float = 0.0  # probability that a sample's joints are all dropped (trains the control-off mode)
    # > 0: add this many times the squared error on the latent cells that see the hand (pixels within
    # hand_radius_px of the projected skeleton), averaged over them (worldmodel/training/hand_loss.py)
    hand_weight: float = 0.0
    hand_radius_px: float = 6.0
    vae: dict = dataclasses.field(default_factory=dict)  # stage 1 (VaeTrainConfig fields; steps > 0: train the VAE)
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16" (accelerate autocast)
    base_dtype: str = "float32"  # frozen weights in "bfloat16" halve their memory; needs mixed_precision="bf16"
    gradient_checkpointing: bool = False
    fsdp: bool = False  # shard the transformer over the processes (FSDP2); default: DDP, a full copy per process
    fsdp_cpu_offload: bool = False  # with fsdp: shards, gradients and their optimiser step in CPU memory (CUDA)
    gradient_accumulation_steps: int = 1  # micro-batches per optimiser step (global batch = this × batch × processes)
    offload_encoders: bool = False  # frozen VAE/CLIP/text encoder weights stay in CPU memory (accelerate hooks)
    cache: str | None = None  # folder written by `dexworld cache`: train from precomputed encodings
    text_encoder: bool = True  # False: skip loading UMT5 (every clip must carry prompt_embeds)
    cache_latents: bool | None = None  # cache VAE/CLIP/prompt encodings per clip window; default: tiny preset only
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    sample_every: int = 0  # 0: no periodic sample video
    sample_steps: int | None = None
    num_workers: int = 0
    progress: bool = True

    def validate(self) -> None:
        if self.timestep_sampling not in TIMESTEP_SAMPLING:
            raise ValueError(f"timestep_sampling must be one of {TIMESTEP_SAMPLING}, got {self.timestep_sampling!r}")
        if self.lr_lora_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_lora_schedule must be 'constant' or 'cosine', got {self.lr_lora_schedule!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}")
        if self.base_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"base_dtype must be 'float32' or 'bfloat16', got {self.base_dtype!r}")
        if self.base_dtype == "bfloat16" and self.mixed_precision != "bf16":
            raise ValueError("base_dtype='bfloat16' needs mixed_precision='bf16'")
        if self.init_vae is not None and self.init is None:
            raise ValueError("init_vae replaces the VAE of the init pipeline; give init as well")
        if self.fresh_control and self.init is None:
            raise ValueError("fresh_control starts a new control module on the init pipeline's video model; give "
                             "init as well")
        if self.fsdp and self.mixed_precision == "fp16":
            raise ValueError("fsdp=True supports mixed_precision 'no' or 'bf16', not 'fp16' (its loss scaler does not "
                             "handle sharded gradients); use bf16")
        if self.fsdp_cpu_offload and not self.fsdp:
            raise ValueError("fsdp_cpu_offload=True needs fsdp=True")
        if not 0.0 <= self.joint_mask_prob < 1.0:
            raise ValueError(f"joint_mask_prob must be in [0, 1), got {self.joint_mask_prob}")
        if not 0.0 <= self.control_dropout < 1.0:
            raise ValueError(f"control_dropout must be in [0, 1), got {self.control_dropout}")
        if self.hand_weight < 0 or self.hand_radius_px <= 0:
            raise ValueError(f"hand_weight must be >= 0 and hand_radius_px > 0, got {self.hand_weight}, "
                             f"{self.hand_radius_px}")
        if self.vae:
            from worldmodel.training.vae import VaeTrainConfig

            VaeTrainConfig.from_dict(self.vae)
        if self.shift <= 0:
            raise ValueError(f"shift must be positive, got {self.shift}")
        for name in ("batch_size", "steps", "lora_rank", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.cache is not None and self.sample_every and not self.data:
            raise ValueError("sample_every needs the raw clips (data=) when training from a cache; set data or "
                             "sample_every=0")

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
        return cls(**d)


# ---------------------------------------------------------------------------------------------- pure pieces
def sample_sigmas(n: int, generator: torch.Generator, sampling: str = "logit_normal", shift: float = 1.0,
                  logit_mean: float = 0.0, logit_std: float = 1.0) -> torch.Tensor:
    """(n,) noise levels σ ∈ (0, 1]: u ~ U(0, 1) or sigmoid(N(m, s)), then σ = shift·u / (1 + (shift − 1)·u);
    ``"upstream"``: one of the steps of :func:`upstream_schedule` (already shifted), uniformly.

    The training default (``TrainConfig.shift``, 5) is the one Wan's flow-matching schedulers apply at inference; a
    trained model may sample best at another (the shipped tiny-sim: trained at 5, its last two cycles at 10, sampled
    at 20; docs/results.md, twentieth and twenty-first attempts).
    """
    if sampling == "upstream":
        sched, _ = upstream_schedule(shift)
        return sched[torch.randint(len(sched), (n,), generator=generator)]
    if sampling == "uniform":
        u = torch.rand(n, generator=generator)
    elif sampling == "logit_normal":
        u = torch.sigmoid(torch.randn(n, generator=generator) * logit_std + logit_mean)
    else:
        raise ValueError(f"timestep sampling must be one of {TIMESTEP_SAMPLING}, got {sampling!r}")
    return shift * u / (1.0 + (shift - 1.0) * u)


def upstream_schedule(shift: float = 5.0, steps: int = UPSTREAM_TRAIN_STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' training schedule: σ (steps,) and loss weights (steps,).

    σ_i = linspace(1, 0, steps + 1)[i] shifted by s·σ/(1 + (s − 1)·σ) (Wan's schedule, shift 5); the weight at
    timestep t_i = 1000·σ_i is exp(−2((t_i − 500)/1000)²) minus its minimum over the schedule, normalised to mean 1.
    """
    sigma = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)[:-1]
    sigma = shift * sigma / (1.0 + (shift - 1.0) * sigma)
    t = sigma * 1000.0
    bell = torch.exp(-2.0 * ((t - 500.0) / 1000.0) ** 2)
    bell = bell - bell.min()
    return sigma.float(), (bell / bell.mean()).float()


def loss_weights(sigma: torch.Tensor, sampling: str, shift: float = 5.0) -> torch.Tensor:
    """Per-sample MSE weights (n,) for noise levels σ (n,): the bell curve of the step nearest σ for
    ``"upstream"``, 1 for the other recipes."""
    if sampling != "upstream":
        return torch.ones_like(sigma)
    sched, weights = upstream_schedule(shift)
    return weights[(sched[None, :] - sigma[:, None].to(sched)).abs().argmin(1)].to(sigma)


def mask_joints(valid: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """Drop each (frame, joint) with probability ``prob`` by clearing its validity; coordinates are untouched."""
    if prob <= 0:
        return valid
    keep = torch.rand(valid.shape, generator=generator) >= prob
    return valid & keep.to(valid.device)


def flow_matching_pair(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor):
    """Rectified flow: x_σ = (1 − σ)·x0 + σ·ε and the velocity target ε − x0."""
    s = sigma.view(-1, *([1] * (x0.ndim - 1))).to(x0)
    return (1.0 - s) * x0 + s * noise, noise - x0


def lr_schedule_fns(warmup_steps: int, cosine_steps: int, lora_cosine: bool = False):
    """Multipliers per optimiser group: [LoRA + patch embedding, control]: the control LR warms up and follows a
    cosine to zero; the LoRA LR is constant, or (``lora_cosine``) follows the same curve."""
    import diffusers.optimization as opt

    dummy = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cosine = opt.get_cosine_schedule_with_warmup(dummy, warmup_steps, cosine_steps).lr_lambdas[0]

    def held(step: int) -> float:  # diffusers' cosine rises again past its end; hold it at zero instead
        return cosine(min(step, cosine_steps))

    return [held if lora_cosine else (lambda step: 1.0), held]


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {"python": random.getstate(), "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), *n[2:]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------- trainer
@contextlib.contextmanager
def _writer_errors_as_output_errors(path: Path):
    """``torch.save`` and safetensors report a failed write (a full disk) as their own errors, not ``OSError``:
    make them the one-line :class:`OutputError` naming the checkpoint (``atomic_dir`` has already removed the
    temporary folder, and the previous checkpoint is untouched)."""
    from safetensors import SafetensorError

    try:
        yield
    except (RuntimeError, SafetensorError) as e:
        text = str(e)
        if "writ" not in text.lower():  # not a write failure: a bug, keep its traceback
            raise
        raise OutputError.of(path, text.splitlines()[-1] or type(e).__name__) from None


def start_from_pipeline(cfg: TrainConfig):
    """Components, control module and LoRA folder of the pipeline ``cfg.init`` (``save_pretrained`` layout).

    Fine-tuning starts from trained weights (the shipped ``tiny-sim``, a converted release of the authors' weights),
    not from a resumable run: step, optimiser and schedule start fresh. The transformer comes back without its LoRA
    (``unload_lora``) so that a tiny preset's run base is written LoRA-free; the trainer then loads the LoRA
    from the folder's ``transformer_lora/``. ``cfg`` is updated in place: its LoRA rank/alpha become the folder's,
    and its ``base_path`` the base the folder references (none for a self-contained tiny folder: the run writes
    its own ``base/``; the folder itself for a self-contained full-size one). With ``fresh_control`` the control
    module comes back as None and the transformer no longer reads its control channels.
    """
    from peft import LoraConfig

    from worldmodel.wan.adapter import zero_control_inputs
    from worldmodel.wan.pipeline import HandControlPipeline
    from worldmodel.wan.presets import TINY_PRESETS, WanComponents
    from worldmodel.wan.pretrained import LORA_DIR

    init = Path(cfg.init).expanduser().resolve()
    if not (init / "model_index.json").is_file():
        raise FileNotFoundError(f"init {init}: not a saved hand-control pipeline (no model_index.json); pass a "
                                "folder written by HandControlPipeline.save_pretrained (to continue a training "
                                "run, use resume instead)")
    pipe = HandControlPipeline.from_pretrained(init, base=cfg.base_path)
    if not pipe._base_components and cfg.base_path is not None:
        raise ValueError(f"init {init} carries its own base model; drop base_path ({cfg.base_path})")
    transformer = pipe.transformer
    lora_dir = init / LORA_DIR if (init / LORA_DIR).is_dir() else None
    if lora_dir is not None:
        lora = LoraConfig.from_pretrained(lora_dir)
        cfg.lora_rank, cfg.lora_alpha = int(lora.r), float(lora.lora_alpha)
        transformer.unload_lora()
    if pipe._base_components:  # the folder references a base model (a full-size LoRA release)
        cfg.base_path = str(Path(pipe.config.base_model).resolve())
    elif cfg.preset in TINY_PRESETS:
        cfg.base_path = None  # the trainer writes the run's own base/ from these weights
    else:
        cfg.base_path = str(init)
    vae, control = pipe.vae, pipe.control
    if cfg.fresh_control:
        control = None  # the Trainer builds one from cfg.control and cfg.seed
        zero_control_inputs(transformer)
    if cfg.init_vae is not None:
        vae, control = swap_vae(control, cfg.init_vae)
        if vae.config.z_dim != pipe.vae.config.z_dim:
            raise ValueError(f"init_vae {cfg.init_vae}: its latents have {vae.config.z_dim} channels, the transformer "
                             f"of init {init} takes {pipe.vae.config.z_dim}")
    components = WanComponents(
        name=cfg.preset, transformer=transformer, vae=vae, scheduler=pipe.scheduler,
        image_encoder=pipe.image_encoder, image_processor=pipe.image_processor, text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer, prompt_embedder=pipe.prompt_embedder, source=str(init), defaults=pipe.defaults)
    return components, (control.train() if control is not None else None), lora_dir


def swap_vae(control: torch.nn.Module, vae_dir: str):
    """The ``AutoencoderKLWan`` in ``vae_dir`` and ``control`` re-gridded to it (same weights, its compression).

    The control module's weights do not depend on the latent grid (it projects joints with K scaled by
    ``downsample`` and groups frames by ``temporal_stride``), so a trained module carries over to a VAE with another
    spatial compression (the caller checks that the latent channels, ``z_dim``, match the transformer's).
    """
    from diffusers import AutoencoderKLWan

    path = Path(vae_dir).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"init_vae {vae_dir}: not a saved AutoencoderKLWan folder (no config.json)")
    vae = AutoencoderKLWan.from_pretrained(path, torch_dtype=torch.float32).eval()
    if control is None:
        return vae, None
    grid = {"downsample": vae.config.scale_factor_spatial, "temporal_stride": vae.config.scale_factor_temporal}
    regridded = type(control).from_config({**control.config, **grid})
    regridded.load_state_dict(control.state_dict())
    return vae, regridded


class Trainer:
    """Builds models, optimiser, schedule and data from a :class:`TrainConfig`; ``train()`` runs the loop.

    ``components``/``control`` can be passed in (tests, notebooks); otherwise they come from the preset. With
    ``resume`` (a checkpoint directory or ``"latest"``) the run continues exactly where that checkpoint stopped;
    ``overwrite`` first deletes an earlier run's files from ``cfg.out`` (``run_folder.clear_run``).
    """

    def __init__(self, cfg: TrainConfig, components=None, control: torch.nn.Module | None = None,
                 resume: str | os.PathLike | None = None, accelerator=None, overwrite: bool = False):
        from embodiments.clip import find_clips
        from worldmodel.training.data import ClipDataset, collate_clips
        from worldmodel.wan.pipeline import HandControlPipeline
        from worldmodel.wan.presets import load_preset

        cfg.validate()
        cfg = dataclasses.replace(cfg)  # the caller's config stays untouched (base_path is filled in below)
        if resume is not None and cfg.base_path is None:
            ckpt = self._resolve(Path(cfg.out), resume)
            meta = read_checkpoint_meta(ckpt)
            if meta.get("base_path"):  # a relative one is relative to the checkpoint folder (checkpoint_base_dir)
                cfg.base_path = str(checkpoint_base_dir(ckpt, meta))
        elif cfg.base_path is not None:
            # Checkpoints record the base; a relative path would later be read against the checkpoint folder.
            cfg.base_path = str(Path(cfg.base_path).resolve())
        self.cfg = cfg
        self.out = Path(cfg.out)
        if cfg.cache is None:
            find_clips(cfg.data)  # fail on a bad --data before any model is built or written
        init_lora = None
        if cfg.init is not None and resume is None and components is None:
            components, control, init_lora = start_from_pipeline(cfg)
        self.accelerator = accelerator or make_accelerator(cfg)
        acc = self.accelerator
        if acc.is_main_process:  # before anything reads the run folder
            if resume is not None:
                clean_killed_save(self.out)  # temporaries of a save that was killed
            elif overwrite:
                clear_run(self.out)  # the previous run's own files, nothing else
        acc.wait_for_everyone()

        from worldmodel.wan.presets import TINY_PRESETS

        if components is None and cfg.base_path is None and (self.out / "base" / "dexworld_preset.json").exists():
            cfg.base_path = str((self.out / "base").resolve())  # an earlier start of this run wrote its base
        if components is None:
            if cfg.base_path is None and cfg.preset not in TINY_PRESETS:
                raise ValueError(f"preset {cfg.preset!r} needs base_path (a local diffusers-format directory)")
            if cfg.base_path:
                dtype = torch.bfloat16 if cfg.base_dtype == "bfloat16" else torch.float32
                components = load_preset(cfg.preset, path=cfg.base_path, torch_dtype=dtype,
                                         load_text_encoder=cfg.text_encoder)
            else:
                components = load_preset(cfg.preset, **cfg.tiny)
        d = components.defaults
        self.num_frames = cfg.num_frames or d.num_frames
        self.height, self.width = cfg.height or d.height, cfg.width or d.width
        if cfg.base_path is None:
            # Tiny weights are built here: keep them beside the run so sampling and resume see the very same base.
            # Stage 1 (cfg.vae steps > 0) first trains the VAE on the clips: a random VAE cannot decode.
            base = self.out / "base"
            if base.exists() and not (base / "dexworld_preset.json").is_file():  # not a run's base: never ours to use
                raise ValueError(f"{base} exists but is not a dexworld run base (no dexworld_preset.json); move it "
                                 "or choose another out folder")
            stage1 = bool(cfg.vae.get("steps", 0)) and cfg.cache is None and cfg.init is None
            # A run started from init always writes its base: one left by an earlier, failed start may hold other
            # weights than the init folder's.
            if acc.is_main_process and (not base.exists() or cfg.init is not None):
                if stage1:
                    from worldmodel.training.vae import VaeTrainConfig, train_vae

                    self.out.mkdir(parents=True, exist_ok=True)
                    vcfg = VaeTrainConfig.from_dict({"seed": cfg.seed, "progress": cfg.progress, **cfg.vae})
                    train_vae(components.vae, cfg.data, self.height, self.width, vcfg, log=self.out / "vae_loss.jsonl")
                components.save(base)
            acc.wait_for_everyone()
            cfg.base_path = str(base.resolve())
            if stage1 and not acc.is_main_process:
                components = load_preset(cfg.preset, path=base)
        self.components = components
        self.cache_latents = cfg.cache_latents if cfg.cache_latents is not None else components.name in TINY_PRESETS

        if control is None:
            from worldmodel.control.module import HandControlModule

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                grid = components.vae.config  # the joints' latent grid is the VAE's unless the config says otherwise
                control = HandControlModule(**{"downsample": grid.scale_factor_spatial,
                                               "temporal_stride": grid.scale_factor_temporal, **cfg.control})
        transformer = components.transformer
        ensure_widened(transformer)
        if init_lora is not None:
            load_lora(transformer, init_lora)  # after the base was written: the base folder stays LoRA-free
        elif not getattr(transformer, "peft_config", None):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed + 1)
                add_lora(transformer, rank=cfg.lora_rank, alpha=cfg.lora_alpha)
        set_trainable(transformer, control, train_base=cfg.train_base)
        for m in (components.vae, components.image_encoder, components.text_encoder):
            if m is not None:
                m.requires_grad_(False).eval()
        if cfg.base_dtype == "bfloat16":
            from diffusers.training_utils import cast_training_params

            # Frozen weights to bf16, except the modules diffusers keeps in float32 (norms, time embedding, RoPE);
            # trainable LoRA / patch-embedding weights stay float32.
            keep = tuple(transformer._keep_in_fp32_modules or ())
            for name, module in transformer.named_modules():
                if not any(module.children()) and not any(k in name.split(".") for k in keep):
                    module.to(torch.bfloat16)
            cast_training_params(transformer, dtype=torch.float32)
        if cfg.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        self.model = HandControlledWan(transformer, control)
        self.pipe = HandControlPipeline.from_components(components, control)
        self.pipe.set_progress_bar_config(disable=True)
        checkpoint = self.resolve_checkpoint(resume) if resume is not None else None
        if checkpoint is not None:  # weights go into the whole modules, before any sharding
            self._load_weights(checkpoint)
        self.sharded = cfg.fsdp and acc.num_processes > 1
        if cfg.fsdp and not self.sharded:
            warnings.warn("fsdp=True with a single process: nothing to shard, training unsharded", stacklevel=2)
        if self.sharded:
            shard_transformer(transformer, acc.device, cpu_offload=cfg.fsdp_cpu_offload)
            control.to(acc.device)

        lora_pe = [p for p in transformer.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            [{"params": lora_pe, "lr": cfg.lr_lora, "name": "lora_patch_embedding"},
             {"params": list(control.parameters()), "lr": cfg.lr_control, "name": "control"}],
            weight_decay=cfg.weight_decay)
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_schedule_fns(cfg.warmup_steps, cfg.cosine_steps or cfg.steps,
                                            lora_cosine=cfg.lr_lora_schedule == "cosine"))

        if cfg.cache is not None:
            from worldmodel.training.cache import CachedClipDataset, collate_cached

            self.dataset = CachedClipDataset(cfg.cache, components, self.num_frames, self.height, self.width,
                                             seed=cfg.seed)
            collate = collate_cached
        else:
            self.dataset = ClipDataset(cfg.data, self.num_frames, self.height, self.width, seed=cfg.seed)
            collate = collate_clips
        self.sampler = _EpochPermutation(len(self.dataset), cfg.seed)
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=cfg.batch_size, sampler=self.sampler,
                                             collate_fn=collate, drop_last=True, num_workers=cfg.num_workers)
        if len(loader) == 0:
            raise ValueError(f"batch_size={cfg.batch_size} is larger than the {len(self.dataset)} clips in "
                             f"{cfg.data}")
        if self.sharded:  # already sharded: accelerate must not wrap it in DDP too
            self.optimizer, self.loader = acc.prepare(self.optimizer, loader)
        else:
            self.model, self.optimizer, self.loader = acc.prepare(self.model, self.optimizer, loader)
        encoders = (components.vae, components.image_encoder, components.text_encoder)
        if cfg.offload_encoders:
            offload_encoders(encoders, acc.device)
        else:
            for m in encoders:
                if m is not None:
                    m.to(acc.device)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self._cache: dict = {}
        self._hand_cells: dict = {}  # (index, start, radius) → (T', h, w) hand cells (a window's joints are fixed)
        if checkpoint is not None:
            self._load_training_state(checkpoint)

    # ------------------------------------------------------------------ data → model inputs
    @property
    def _unwrapped(self) -> HandControlledWan:
        return self.accelerator.unwrap_model(self.model)

    @property
    def _torch_optimizer(self) -> torch.optim.Optimizer:
        """The AdamW under accelerate's wrapper: torch's state-dict functions need the optimizer itself."""
        return self.optimizer.optimizer

    @torch.no_grad()
    def encode_batch(self, batch: dict) -> dict:
        """VAE latents x0 (B, 16, T', h, w), I2V condition (B, 20, T', h, w), prompt and image embeddings."""
        if "x0" in batch:  # from a `dexworld cache` folder
            dev = self.accelerator.device
            return {k: (None if batch[k] is None else batch[k].to(dev).float())
                    for k in ("x0", "condition", "prompt_embeds", "image_embeds")}
        if not self.cache_latents:
            return self._encode(batch["video"], batch["prompt_embeds"], batch["prompt"])
        # Encode only the windows not cached yet: a run resumed mid-epoch (empty cache) mixes new and cached
        # windows in one batch for a whole epoch, and re-encoding the batch for one new window cost it ~1.5× the step.
        keys = list(zip(batch["index"].tolist(), batch["start"].tolist(), strict=True))
        new = [i for i, k in enumerate(keys) if k not in self._cache]
        if new:
            pe = batch["prompt_embeds"]
            out = self._encode(batch["video"][new], None if pe is None else pe[new], [batch["prompt"][i] for i in new])
            for j, i in enumerate(new):
                self._cache[keys[i]] = {n: (None if v is None else v[j:j + 1]) for n, v in out.items()}
        items = [self._cache[k] for k in keys]
        return {name: (None if items[0][name] is None else torch.cat([it[name] for it in items])) for name in items[0]}

    def _encode(self, video: torch.Tensor, prompt_embeds: torch.Tensor | None, prompts: list[str]) -> dict:
        """Encode windows (B, 3, T, H, W): VAE latents, I2V condition, prompt and CLIP embeddings."""
        return encode_windows(self.pipe, video, prompt_embeds, prompts, self.height, self.width,
                              self.accelerator.device)

    def sample_generators(self, index: torch.Tensor) -> list[torch.Generator]:
        """Per-sample randomness (noise, σ, joint mask) as a pure function of (seed, step, dataset index).

        Independent of the process count and the batch split, so P processes × batch b reproduce 1 process ×
        batch P·b (see worldmodel/training/distributed.py).
        """
        step = 0 if self.cfg.fixed_noise else self.step
        return [sample_generator(self.cfg.seed, step, int(i)) for i in index.tolist()]

    def squared_error(self, batch: dict, sigma: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, T', h, w) squared error of the predicted flow and the σ (B,) it was taken at.

        ``sigma``: these noise levels instead of the sampled ones (``benchmarks/loss_by_sigma.py`` measures the
        error per noise level); noise, joint mask and control dropout still come from the per-sample generators.
        """
        cfg, dev = self.cfg, self.accelerator.device
        enc = self.encode_batch(batch)
        gens = self.sample_generators(batch["index"])
        sampled = torch.cat([sample_sigmas(1, g, cfg.timestep_sampling, cfg.shift, cfg.logit_mean, cfg.logit_std)
                             for g in gens])  # drawn even when given, so the generators' later draws stay the same
        sigma = sampled if sigma is None else sigma.to(sampled)
        noise = torch.stack([torch.randn(enc["x0"].shape[1:], generator=g) for g in gens]).to(dev)
        valid = torch.stack([mask_joints(v, cfg.joint_mask_prob, g)
                             for v, g in zip(batch["valid"], gens, strict=True)]).to(dev)
        if cfg.control_dropout > 0:  # whole-sample control dropout: the model also learns the control-off mode
            keep = torch.stack([torch.rand((), generator=g) >= cfg.control_dropout for g in gens]).to(dev)
            valid = valid & keep[:, None, None]
        x_t, target = flow_matching_pair(enc["x0"], noise, sigma.to(dev))
        model = self._unwrapped
        # The control module (~20 k parameters, projective geometry) always runs in float32, outside autocast.
        with warnings.catch_warnings():
            if cfg.control_dropout > 0:  # dropped samples are intended, not worth the module's warning
                warnings.filterwarnings("ignore", message=".*every joint is invalid.*")
            control, condition = model.control_maps(batch["joints"].to(dev), batch["K"].to(dev), enc["condition"],
                                                    valid)
        with self.accelerator.autocast():
            timestep = (sigma * self.components.scheduler.config.num_train_timesteps).to(dev)
            pred = self.model(x_t, timestep, condition, control, enc["prompt_embeds"], enc["image_embeds"])
        return (pred.float() - target.float()).square(), sigma

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's training loss (the flow-matching MSE, plus the hand and bell-curve weights when set) and σ."""
        cfg, dev = self.cfg, self.accelerator.device
        sq_err, sigma = self.squared_error(batch)
        per_sample = sq_err.flatten(1).mean(1)
        if cfg.hand_weight:  # the hand region again, on the latent cells that see it
            per_sample = per_sample + cfg.hand_weight * hand_term(sq_err, self.hand_cells(batch, sq_err.shape[2:]))
        if cfg.timestep_sampling == "upstream":  # per-sample loss times the bell weight of its step
            per_sample = per_sample * loss_weights(sigma, cfg.timestep_sampling, cfg.shift).to(dev)
        return per_sample.mean(), sigma

    def hand_cells(self, batch: dict, latent_size: tuple[int, int, int]) -> torch.Tensor:
        """(B, T', h, w) bool latent cells that see the hand, projected once per clip window (0.27 s a batch of 8
        17-frame windows at 128², 8 % of a 4× tiny-sim step, otherwise spent again every epoch)."""
        r = self.cfg.hand_radius_px
        keys = [(i, s, r) for i, s in zip(batch["index"].tolist(), batch["start"].tolist(), strict=True)]
        new = [i for i, k in enumerate(keys) if k not in self._hand_cells]
        if new:
            pixels = hand_pixel_masks(batch["joints"][new], batch["valid"][new], batch["K"][new],
                                      (self.height, self.width), r)
            self._hand_cells.update({keys[i]: m for i, m in zip(new, latent_hand_mask(pixels, latent_size),
                                                                 strict=True)})
        return torch.stack([self._hand_cells[k] for k in keys])

    def train_step(self, batch: dict | list[dict]) -> dict:
        """One optimiser step over one batch or a list of micro-batches (gradient accumulation).

        The reported loss and σ are means over micro-batches and processes.
        """
        self.model.train()
        batches = [batch] if isinstance(batch, dict) else list(batch)
        n = len(batches)
        losses, sigmas = [], []
        for i, micro in enumerate(batches):
            with no_sync_unless_last(self.accelerator, self.model, i, n):
                loss, sigma = self.compute_loss(micro)
                self.accelerator.backward(loss / n)
            losses.append(loss.detach())
            sigmas.append(sigma.mean())
        loss = global_mean(self.accelerator, torch.stack(losses).mean())
        sigma = torch.tensor(global_mean(self.accelerator, torch.stack(sigmas).mean()))
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.sharded:
            average_gradients(self._unwrapped.control)  # the replicated part; FSDP has reduced the transformer's
            if self.cfg.max_grad_norm:
                clip_grad_norm(params, self.cfg.max_grad_norm)
        elif self.cfg.max_grad_norm:
            self.accelerator.clip_grad_norm_(params, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        lrs = self.lr_scheduler.get_last_lr()
        return {"loss": loss, "sigma": float(sigma), "lr_lora": lrs[0], "lr_control": lrs[1]}

    # ------------------------------------------------------------------ loop
    def train(self, steps: int | None = None) -> list[float]:
        """Run until ``steps`` (default ``cfg.steps``) optimiser steps in total; returns this call's losses."""
        from tqdm.auto import tqdm

        cfg, acc = self.cfg, self.accelerator
        target = steps if steps is not None else cfg.steps
        losses = []
        self.out.mkdir(parents=True, exist_ok=True)
        if acc.is_main_process:
            self._truncate_log()
        bar = tqdm(total=target, initial=self.step, disable=not (cfg.progress and acc.is_main_process),
                   desc="train", dynamic_ncols=True)
        while self.step < target:
            # accelerate's loader re-seeds its sampler from its own epoch counter on every __iter__: set both.
            self.loader.set_epoch(self.epoch)
            self.sampler.set_epoch(self.epoch)
            self.dataset.set_epoch(self.epoch)
            loader = self.loader if self.batch_in_epoch == 0 else acc.skip_first_batches(self.loader,
                                                                                         self.batch_in_epoch)
            accum = cfg.gradient_accumulation_steps
            for batch in micro_batches(loader, accum):
                t0 = time.perf_counter()
                rec = self.train_step(batch)
                self.step += 1
                self.batch_in_epoch += accum
                losses.append(rec["loss"])
                if acc.is_main_process:
                    self._log({"step": self.step, "epoch": self.epoch, **rec,
                               "seconds": round(time.perf_counter() - t0, 4)})
                    bar.update(1)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}")
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                # sharded: every process takes part in each forward (the weights are gathered), the main one writes
                if cfg.sample_every and self.step % cfg.sample_every == 0 and (acc.is_main_process or self.sharded):
                    self.sample_video(self.out / "samples" / f"step_{self.step:06d}.mp4")
                if self.step >= target:
                    break
            else:
                self.epoch += 1
                self.batch_in_epoch = 0
        bar.close()
        return losses

    def _log(self, rec: dict) -> None:
        with open(self.out / "loss.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")

    def _truncate_log(self) -> None:
        """On resume, drop log lines past the restored step (they belong to the interrupted tail)."""
        from embodiments.io_utils import atomic_path

        log = self.out / "loss.jsonl"
        if not log.exists():
            return
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
        keep = [ln for ln in lines if json.loads(ln).get("step", 0) <= self.step]
        if len(keep) != len(lines):
            with atomic_path(log) as tmp:
                tmp.write_text("".join(ln + "\n" for ln in keep))

    # ------------------------------------------------------------------ samples
    @torch.no_grad()
    def sample_video(self, path: Path, index: int = 0) -> Path:
        """Generate from clip ``index``'s first frame and joints; write [generated | ground truth] side by side."""
        from embodiments.sparse import SparseJoints
        from worldmodel.evaluation.video import side_by_side, write_video

        if self.cfg.cache is None:
            item = self.dataset[index]
        else:  # the cache holds no pixels: sample from the raw clips
            from worldmodel.training.data import ClipDataset

            item = ClipDataset(self.cfg.data, self.num_frames, self.height, self.width, seed=self.cfg.seed)[index]
        ref = ((item["video"][:, 0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        joints = SparseJoints(item["joints"].numpy(), item["valid"].numpy(), K=item["K"].numpy(), frame="camera")
        pe = item["prompt_embeds"]
        neg = None
        if pe is not None and self.pipe.text_encoder is None and self.pipe.prompt_embedder is None:
            neg = torch.zeros_like(pe)  # no text encoder to embed "": an all-padding negative prompt
        self.model.eval()
        with torch.random.fork_rng(devices=[]):
            out = self.pipe(ref, joints, prompt=None if pe is not None else item["prompt"], prompt_embeds=pe,
                            negative_prompt_embeds=neg,
                            height=self.height, width=self.width, seed=self.cfg.seed,
                            num_inference_steps=self.cfg.sample_steps or self.components.defaults.num_inference_steps,
                            progress=False)
        gt = ((item["video"].permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1).numpy()
        if self.accelerator.is_main_process:
            write_video(path, side_by_side(out.frames, gt), fps=joints.fps)
        return path

    # ------------------------------------------------------------------ checkpoints
    def resolve_checkpoint(self, resume: str | os.PathLike) -> Path:
        return self._resolve(self.out, resume)

    @staticmethod
    def _resolve(out: Path, resume: str | os.PathLike) -> Path:
        """``"latest"`` → the checkpoint the run's ``latest`` file names; anything else is a path."""
        if str(resume) == "latest":
            pointer = out / "latest"
            if not pointer.exists():
                raise FileNotFoundError(f"no checkpoint to resume in {out} (no 'latest' file)")
            return out / pointer.read_text().strip()
        return Path(resume)

    def save_checkpoint(self, path: str | os.PathLike | None = None) -> Path:
        """Write the checkpoint atomically (temp dir, then rename) and point ``latest`` at it."""
        from safetensors.torch import save_file

        from embodiments.io_utils import atomic_path

        acc = self.accelerator
        acc.wait_for_everyone()
        path = Path(path) if path is not None else self.out / f"checkpoint-{self.step:06d}"
        model = self._unwrapped
        # Collective: the full trainable weights and optimiser state arrive on the main process (sharded or not).
        state = gather_state_dict(model, trainable_only=not self.cfg.train_base)
        optimizer_state = gather_optimizer_state(model, self._torch_optimizer)
        if acc.is_main_process:
            tstate = {k.removeprefix("transformer."): v for k, v in state.items() if k.startswith("transformer.")}
            with _writer_errors_as_output_errors(path), atomic_dir(path) as tmp:
                model.control.save_pretrained(tmp / "control")  # replicated: every process holds all of it
                save_lora(model.transformer, tmp / "lora", state=tstate)
                save_file(patch_embedding_state(model.transformer, tstate), tmp / "patch_embedding.safetensors")
                if self.cfg.train_base:  # the base weights changed too: store them (non-LoRA keys)
                    save_file(base_state_dict(model.transformer, tstate), tmp / TRANSFORMER_WEIGHTS)
                torch.save({"optimizer": optimizer_state, "lr_scheduler": self.lr_scheduler.state_dict(),
                            "rng": _rng_state()}, tmp / "training_state.pt")
                meta = {"kind": CHECKPOINT_KIND, "version": CHECKPOINT_VERSION, "step": self.step,
                        "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                        "samples_in_epoch": self.batch_in_epoch * self.cfg.batch_size * acc.num_processes,
                        "num_processes": acc.num_processes,
                        "preset": self.components.name, "base_path": self.cfg.base_path,
                        "height": self.height, "width": self.width, "num_frames": self.num_frames,
                        "config": dataclasses.asdict(self.cfg)}
                (tmp / "dexworld_checkpoint.json").write_text(json.dumps(meta, indent=2))
            with atomic_path(self.out / "latest") as tmp:
                tmp.write_text(path.name if path.parent.resolve() == self.out.resolve() else str(path.resolve()))
            self._prune_checkpoints(keep=path)
        acc.wait_for_everyone()
        return path

    def _prune_checkpoints(self, keep: Path) -> None:
        import shutil

        n = self.cfg.keep_checkpoints
        if not n:
            return
        ckpts = sorted(p for p in self.out.glob("checkpoint-*") if p.is_dir())
        for p in ckpts[:-n]:
            if p.resolve() != keep.resolve():
                shutil.rmtree(p, ignore_errors=True)

    def _load_weights(self, path: Path) -> None:
        """Control module, LoRA, patch embedding (and trained base) from a checkpoint, into the unsharded model."""
        from safetensors.torch import load_file

        read_checkpoint_meta(path)
        model = self.model
        control_state = load_file(path / "control" / "diffusion_pytorch_model.safetensors")
        model.control.load_state_dict(control_state)
        if (path / TRANSFORMER_WEIGHTS).exists():
            load_base_state_dict(model.transformer, load_file(path / TRANSFORMER_WEIGHTS))
        load_lora(model.transformer, path / "lora")
        load_patch_embedding_state(model.transformer, load_file(path / "patch_embedding.safetensors"))

    def _load_training_state(self, path: Path) -> None:
        """Optimiser, LR schedule, RNG states, data position and step, once the model is sharded and prepared."""
        meta = read_checkpoint_meta(path)
        state = torch.load(path / "training_state.pt", weights_only=True, map_location="cpu")
        load_optimizer_state(self._unwrapped, self._torch_optimizer, state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        _set_rng_state(state["rng"])
        self.step, self.epoch, self.batch_in_epoch = meta["step"], meta["epoch"], meta["batch_in_epoch"]
        if "samples_in_epoch" in meta:  # written by any process count; re-expressed in this run's batches
            per_batch = self.cfg.batch_size * self.accelerator.num_processes
            if meta["samples_in_epoch"] % per_batch:
                raise ValueError(f"{path}: the checkpoint stopped {meta['samples_in_epoch']} samples into epoch "
                                 f"{meta['epoch']}, not a multiple of batch_size × processes = {per_batch}; resume "
                                 "with the same global batch (batch_size × processes) as the run that wrote it")
            self.batch_in_epoch = meta["samples_in_epoch"] // per_batch


class _EpochPermutation(torch.utils.data.Sampler):
    """A fresh permutation per epoch, seeded by (seed, epoch): the data order is reproducible after a resume."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = ["TrainConfig", "Trainer", "sample_sigmas", "upstream_schedule", "loss_weights", "mask_joints",
           "flow_matching_pair", "lr_schedule_fns", "count_parameters"]
