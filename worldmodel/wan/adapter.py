"""Wiring the hand-control module into diffusers' Wan 2.1 I2V transformer.

Transformer input layout (channels, per latent frame t of T' = 1 + (T-1)//4):

    [ noisy latent 16 | mask 4 | image latent 16 | control volume 16 ]  = 52 channels
      0 ............ 15  16..19  20 ......... 35   36 ............. 51
                               ^ t = 0: reference latent (as Wan I2V)
                               ^ t >= 1: motion features from the control module (overwrite)

The first 36 channels are exactly what ``WanImageToVideoPipeline`` feeds the base model; the patch embedding is
widened to 52 with the new input channels zero-initialised, so before training the widened model equals the base.
"""

from __future__ import annotations

import torch
from torch import nn

NOISY_CHANNELS = 16
MASK_CHANNELS = 4
BASE_IN_CHANNELS = 36
CONTROL_CHANNELS = 16
WIDE_IN_CHANNELS = BASE_IN_CHANNELS + CONTROL_CHANNELS

# Self-attention, text cross-attention and both FFN linears of every block. Written as one regex (peft fullmatches
# it against module names) so that the image cross-attention projections (attn2.add_k_proj / add_v_proj) and the
# condition embedder's image FFN (condition_embedder.image_embedder.ff.*) can never be caught by a suffix match.
LORA_TARGET_SUFFIXES = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")
LORA_TARGET_REGEX = r"blocks\.\d+\.(?:(?:attn1|attn2)\.(?:to_q|to_k|to_v|to_out\.0)|ffn\.net\.(?:0\.proj|2))"


def widen_patch_embedding(transformer: nn.Module, extra_channels: int = CONTROL_CHANNELS) -> nn.Module:
    """Append ``extra_channels`` zero-initialised input channels to ``transformer.patch_embedding`` (in place).

    The original kernel and bias are copied, so the widened model computes exactly what the base model computes on
    the first ``in_channels`` inputs. The model config's ``in_channels`` is updated so that ``save_pretrained`` /
    ``from_pretrained`` rebuild the widened layer. Returns the transformer.
    """
    old = transformer.patch_embedding
    if not isinstance(old, nn.Conv3d):
        raise ValueError(f"transformer.patch_embedding must be an nn.Conv3d, got {type(old).__name__}")
    if extra_channels <= 0:
        raise ValueError(f"extra_channels must be positive, got {extra_channels}")
    new = nn.Conv3d(old.in_channels + extra_channels, old.out_channels, kernel_size=old.kernel_size,
                    stride=old.stride, device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    new.weight.requires_grad_(old.weight.requires_grad)
    new.bias.requires_grad_(old.bias.requires_grad)
    transformer.patch_embedding = new
    transformer.register_to_config(in_channels=new.in_channels)
    return transformer


def ensure_widened(transformer: nn.Module) -> nn.Module:
    """Widen a base (36-channel) I2V transformer; accept one that already takes 52 channels; refuse others."""
    c = transformer.config.in_channels
    if c == BASE_IN_CHANNELS:
        return widen_patch_embedding(transformer, CONTROL_CHANNELS)
    if c == WIDE_IN_CHANNELS:
        return transformer
    raise ValueError(f"transformer.config.in_channels must be {BASE_IN_CHANNELS} (Wan I2V) or {WIDE_IN_CHANNELS} "
                     f"(already widened), got {c}")


def zero_control_inputs(transformer: nn.Module) -> nn.Module:
    """Zero the patch-embedding weights of a widened transformer's control channels (in place).

    The model then computes what it would with no control volume, as a freshly widened base does; its other weights
    (a trained video prior) are kept. The motion features, which enter through the I2V condition, are untouched.
    """
    ensure_widened(transformer)
    with torch.no_grad():
        transformer.patch_embedding.weight[:, BASE_IN_CHANNELS:] = 0
    return transformer


def apply_motion_features(condition: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """Overwrite the image-latent channels of the I2V condition with motion features for latent frames t >= 1.

    Args:
        condition: (B, 4 + C, T', h, w) Wan I2V condition ``[mask, image latent]``.
        motion: (B, C, T', h, w) motion features from the control module.
    Returns a new tensor; frame 0 keeps the reference latent and the mask channels are untouched.
    """
    if condition.ndim != 5 or motion.ndim != 5:
        raise ValueError(f"condition and motion must be 5-D (B, C, T', h, w), got {tuple(condition.shape)} and "
                         f"{tuple(motion.shape)}")
    b, c, t, h, w = condition.shape
    if motion.shape != (b, c - MASK_CHANNELS, t, h, w):
        raise ValueError(f"motion features must have shape {(b, c - MASK_CHANNELS, t, h, w)} to match the "
                         f"condition {tuple(condition.shape)}, got {tuple(motion.shape)}")
    lat = torch.cat([condition[:, MASK_CHANNELS:, :1], motion[:, :, 1:].to(condition.dtype)], dim=2)
    return torch.cat([condition[:, :MASK_CHANNELS], lat], dim=1)


def transformer_input(noisy: torch.Tensor, condition: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
    """(B, 16 + 20 + 16, T', h, w): noisy latent, I2V condition (already carrying motion features), control."""
    if not (noisy.shape[0] == condition.shape[0] == control.shape[0]
            and noisy.shape[2:] == condition.shape[2:] == control.shape[2:]):
        raise ValueError(f"noisy {tuple(noisy.shape)}, condition {tuple(condition.shape)} and control "
                         f"{tuple(control.shape)} must agree in batch, frames, height and width")
    return torch.cat([noisy, condition.to(noisy.dtype), control.to(noisy.dtype)], dim=1)


def lora_config(rank: int = 64, alpha: float | None = None, dropout: float = 0.0):
    """peft ``LoraConfig`` for the blocks' attention (q, k, v, o) and FFN linears; image projections excluded."""
    from peft import LoraConfig

    if rank <= 0:
        raise ValueError(f"LoRA rank must be positive, got {rank}")
    return LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, lora_dropout=dropout,
                      init_lora_weights=True, target_modules=LORA_TARGET_REGEX)


def add_lora(transformer: nn.Module, rank: int = 64, alpha: float | None = None, dropout: float = 0.0,
             adapter_name: str = "default") -> None:
    """Inject a LoRA adapter with diffusers' peft integration (``add_adapter``). B starts at zero: output unchanged."""
    transformer.add_adapter(lora_config(rank, alpha, dropout), adapter_name=adapter_name)


def lora_module_names(transformer: nn.Module) -> list[str]:
    """Names of modules that carry LoRA layers."""
    return sorted(n for n, m in transformer.named_modules() if hasattr(m, "lora_A") and len(m.lora_A) > 0)


def set_trainable(transformer: nn.Module, control: nn.Module, train_base: bool = False) -> list[nn.Parameter]:
    """Freeze everything except LoRA weights, the patch embedding and the control module; return trainable params.

    ``train_base=True`` (presets without pretrained weights, e.g. ``tiny-sim``) trains the whole transformer too.
    """
    transformer.requires_grad_(train_base)
    for name, p in transformer.named_parameters():
        if "lora_" in name or name.startswith("patch_embedding."):
            p.requires_grad_(True)
    control.requires_grad_(True)
    return [p for p in transformer.parameters() if p.requires_grad] + list(control.parameters())


def patch_embedding_state(transformer: nn.Module, state: dict[str, torch.Tensor] | None = None
                          ) -> dict[str, torch.Tensor]:
    """The widened patch embedding's weights, keyed as in the transformer's state dict.

    ``state``: a (gathered) transformer state dict to read from instead of the module (sharded training).
    """
    state = transformer.state_dict() if state is None else state
    return {k: state[k].detach().contiguous() for k in ("patch_embedding.weight", "patch_embedding.bias")}


def load_patch_embedding_state(transformer: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load :func:`patch_embedding_state` output into an already-widened transformer, with shape checks."""
    pe = transformer.patch_embedding
    for key, param in (("patch_embedding.weight", pe.weight), ("patch_embedding.bias", pe.bias)):
        if key not in state:
            raise ValueError(f"patch embedding state is missing {key!r}")
        if tuple(state[key].shape) != tuple(param.shape):
            raise ValueError(f"{key} has shape {tuple(state[key].shape)}, the transformer expects "
                             f"{tuple(param.shape)}")
        with torch.no_grad():
            param.copy_(state[key].to(param.dtype))


class HandControlledWan(nn.Module):
    """The widened Wan transformer together with the hand-control module: one denoiser call.

    Holds no weights of its own; it exists so that training and sampling run the exact same conditioning code.
    """

    def __init__(self, transformer: nn.Module, control: nn.Module):
        super().__init__()
        ensure_widened(transformer)
        self.transformer = transformer
        self.control = control

    def control_maps(self, joints: torch.Tensor, K: torch.Tensor, condition: torch.Tensor,
                     valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the control module on the reference latent (image-latent channels of condition frame 0).

        Returns (control volume (B, 16, T', h, w), condition with motion features applied (B, 20, T', h, w)).
        """
        z0 = condition[:, MASK_CHANNELS:, 0].float()
        control, motion = self.control(joints.float(), K.float(), z0, valid)
        if control.shape[2:] != condition.shape[2:]:
            raise ValueError(f"control volume {tuple(control.shape)} does not match the latent grid "
                             f"{tuple(condition.shape[2:])}; joints must have 4k+1 frames matching the video and K "
                             "must be the pixel intrinsics of the generated resolution")
        if not getattr(getattr(self.control, "config", None), "use_propagation", True):
            return control, condition  # ablation: no motion features, the plain I2V condition
        return control, apply_motion_features(condition, motion)

    def forward(self, noisy: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor,
                control: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_hidden_states_image: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity prediction (B, 16, T', h, w) from an already-built condition and control volume."""
        x = transformer_input(noisy, condition, control).to(self.transformer.dtype)
        return self.transformer(hidden_states=x, timestep=timestep, encoder_hidden_states=encoder_hidden_states,
                                encoder_hidden_states_image=encoder_hidden_states_image, return_dict=False)[0]


def base_state_dict(transformer: nn.Module, state: dict[str, torch.Tensor] | None = None
                    ) -> dict[str, torch.Tensor]:
    """The transformer's own (non-LoRA) weights under the plain model's keys (peft's ``.base_layer`` removed).

    What a checkpoint of a run that trains the base (``train_base``) stores beside the LoRA adapter. ``state``: a
    (gathered) transformer state dict to read from instead of the module.
    """
    state = transformer.state_dict() if state is None else state
    return {k.replace(".base_layer.", "."): v.detach().contiguous() for k, v in state.items() if "lora_" not in k}


def load_base_state_dict(transformer: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load :func:`base_state_dict` output into ``transformer`` (with or without a LoRA adapter); all keys needed."""
    own = {k: v for k, v in transformer.state_dict().items() if "lora_" not in k}
    plain = {k.replace(".base_layer.", "."): k for k in own}
    missing = sorted(set(plain) - set(state))
    unexpected = sorted(set(state) - set(plain))
    if missing or unexpected:
        raise ValueError(f"transformer weights do not fit the model: {len(missing)} missing, {len(unexpected)} "
                         f"unexpected keys (e.g. {(missing + unexpected)[:2]})")
    bad = [k for k, real in plain.items() if tuple(state[k].shape) != tuple(own[real].shape)]
    if bad:
        raise ValueError(f"transformer weight {bad[0]!r} has shape {tuple(state[bad[0]].shape)}, the model expects "
                         f"{tuple(own[plain[bad[0]]].shape)}")
    transformer.load_state_dict({plain[k]: v for k, v in state.items()}, strict=False)


LORA_WEIGHTS = "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model."


def save_lora(transformer: nn.Module, directory, adapter_name: str = "default",
              state: dict[str, torch.Tensor] | None = None) -> None:
    """Write the adapter in peft's on-disk layout: ``adapter_config.json`` + ``adapter_model.safetensors``.

    Keys carry peft's ``base_model.model.`` prefix, so ``peft.PeftModel.from_pretrained(transformer, directory)``
    reads the folder as well as :func:`load_lora` does. ``state``: a (gathered) transformer state dict to read the
    adapter from instead of the module (sharded training).
    """
    from pathlib import Path

    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = transformer.peft_config[adapter_name]
    config.save_pretrained(directory)
    state = get_peft_model_state_dict(transformer, state_dict=state, adapter_name=adapter_name)
    save_file({_PEFT_PREFIX + k: v.detach().float().contiguous() for k, v in state.items()},
              directory / LORA_WEIGHTS, metadata={"format": "pt"})


def load_lora(transformer: nn.Module, directory, adapter_name: str = "default") -> None:
    """Load a :func:`save_lora` folder into ``transformer``, injecting the adapter first if it is not there."""
    from pathlib import Path

    from peft import LoraConfig, set_peft_model_state_dict
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / LORA_WEIGHTS).exists():
        raise FileNotFoundError(f"no LoRA adapter at {directory} (expected {LORA_WEIGHTS})")
    if adapter_name not in getattr(transformer, "peft_config", {}):
        transformer.add_adapter(LoraConfig.from_pretrained(directory), adapter_name=adapter_name)
    state = {k.removeprefix(_PEFT_PREFIX): v for k, v in load_file(directory / LORA_WEIGHTS).items()}
    result = set_peft_model_state_dict(transformer, state, adapter_name=adapter_name)
    unexpected = [k for k in result.unexpected_keys if "lora_" in k]
    expected = {n for n, _ in transformer.named_parameters() if "lora_" in n and f".{adapter_name}." in n}
    missing = [k for k in result.missing_keys if k in expected]
    if unexpected or missing:
        raise ValueError(f"LoRA adapter at {directory} does not fit the transformer: "
                         f"{len(missing)} missing, {len(unexpected)} unexpected keys (e.g. "
                         f"{(missing + unexpected)[:2]})")
