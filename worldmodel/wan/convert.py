"""Convert the authors' released checkpoint (DiffSynth-Studio Wan naming) into a hand-control pipeline folder.

Inputs: either the two files below, or the one file a DiffSynth training run saves, holding both under
``pipe.dit.*`` and ``pipe.hand_controler.*`` (:func:`load_upstream` splits it).

- ``dit.safetensors``: LoRA pairs on every block's self-attention and text cross-attention q, k, v, o and both FFN
  linears, plus the widened 52-input-channel patch embedding, in DiffSynth's / the original Wan's module names
  (``blocks.3.self_attn.q.lora_A.default.weight``, with or without ``.default``, optionally under
  ``diffusion_model.``), optional kohya-style ``<module>.alpha`` scalars;
- the hand controller weights in the authors' parameter names (``coord_encoder.0.weight`` …, optional ``state.`` or
  another common prefix), safetensors or a ``torch.save`` dict (loaded with ``weights_only=True``).

Output: a pipeline folder (``worldmodel.wan.pretrained``) that names the base model instead of copying it:
``transformer_lora/`` (peft's layout on diffusers' module names), ``transformer_patch_embedding.safetensors``,
``control/``, the authors' sampler and CLIP preprocessing, and ``model_index.json`` with their sampling defaults
(:data:`~worldmodel.wan.sampling.UPSTREAM_DEFAULTS`), so ``HandControlPipeline.from_pretrained`` and
``dexworld generate --checkpoint`` read it. No base weights are needed: only names and shapes change.

Base-name mapping (diffusers' ``scripts/convert_wan_to_diffusers.py`` is the authority) — see
``docs/scaling.md#converter`` for the table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from worldmodel.wan.adapter import LORA_TARGET_REGEX, LORA_WEIGHTS, WIDE_IN_CHANNELS

CONVERSION_FILE = "dexworld_conversion.json"  # what was converted (source files, LoRA rank/alpha), beside the index
__all__ = ["DIT_MODULE_NAMES", "convert_dit_lora", "convert_hand", "convert_upstream", "load_state_dict",
           "load_upstream", "split_upstream_state"]

# Original Wan / DiffSynth module path inside ``blocks.N`` → diffusers ``WanTransformerBlock`` path.
DIT_MODULE_NAMES = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
# Modules of the base model the released LoRA must not touch (our adapter excludes them, see wan.LORA_TARGET_REGEX).
_NOT_ADAPTED = {"cross_attn.k_img": "attn2.add_k_proj", "cross_attn.v_img": "attn2.add_v_proj"}

_PREFIXES = ("diffusion_model.", "model.diffusion_model.", "pipe.dit.", "dit.", "model.")
_MODULE = "|".join(re.escape(k) for k in (*DIT_MODULE_NAMES, *_NOT_ADAPTED))
_LORA_KEY = re.compile(rf"^blocks\.(\d+)\.({_MODULE})\.(?:lora_(A|B)(?:\.default)?\.weight|(alpha))$")
_PATCH_KEYS = ("patch_embedding.weight", "patch_embedding.bias")
_PEFT_PREFIX = "base_model.model."


def load_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a ``.safetensors`` file, or of a ``torch.save`` dict (``weights_only=True``)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    if path.suffix == ".safetensors":
        with safe_open(os.fspath(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors vary; the user needs the file name and the expected form
        raise ValueError(f"{path}: not a safetensors file and not loadable with torch.load(weights_only=True): "
                         f"{e}") from None
    for key in ("state_dict", "model", "state"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a dict of tensors (a state dict)")
    return dict(obj), {}


def split_upstream_state(state: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """(dit part, hand-controller part) of one state dict: the controller's keys are those ending in one of the
    authors' parameter names (``….coord_encoder.0.weight`` …, e.g. under ``pipe.hand_controler.``)."""
    from worldmodel.control.module import UPSTREAM_NAMES

    def is_hand(key: str) -> bool:
        return any(key == n or key.endswith("." + n) for n in UPSTREAM_NAMES)

    hand = {k: v for k, v in state.items() if is_hand(k)}
    return {k: v for k, v in state.items() if k not in hand}, hand


def load_upstream(dit: str | os.PathLike, hand: str | os.PathLike | None = None):
    """The authors' weights as (dit state, hand state, hand metadata) from one combined file or two files.

    ``hand=None``: ``dit`` must be a DiffSynth training file holding the controller too (``pipe.hand_controler.*``
    beside ``pipe.dit.*``). Two files: each must hold only its own part.
    """
    dit_state, dit_meta = load_state_dict(dit)
    dit_state, inside = split_upstream_state(dit_state)
    if hand is None:
        if not inside:
            raise ValueError(f"{dit}: no hand-controller weights in this file (expected keys ending in "
                             "coord_encoder.0.weight, joint_id_embed.weight, …); pass the hand controller file too")
        return dit_state, inside, dit_meta
    if inside:
        raise ValueError(f"{dit}: this file holds hand-controller weights ({sorted(inside)[0]} …) and a hand file "
                         f"was given too ({hand}); pass only one of them")
    hand_state, hand_meta = load_state_dict(hand)
    return dit_state, hand_state, hand_meta


def _strip_prefix(keys: list[str]) -> str:
    """The known prefixes all keys share, stacked as they come (``pipe.dit.diffusion_model.`` …)."""
    prefix = ""
    while keys:
        p = next((p for p in _PREFIXES if all(k.startswith(prefix + p) for k in keys)), None)
        if p is None:
            break
        prefix += p
    return prefix


@dataclasses.dataclass
class ConvertedLoRA:
    """peft-layout LoRA state (diffusers names, ``base_model.model.`` prefix), its config values, patch embedding."""

    state: dict[str, torch.Tensor]
    rank: int
    alpha: float
    target_modules: str
    num_blocks: int
    patch_embedding: dict[str, torch.Tensor]


def convert_dit_lora(state_dict: Mapping[str, torch.Tensor], lora_alpha: float | None = None) -> ConvertedLoRA:
    """DiffSynth-named LoRA + widened patch embedding → peft state on diffusers' Wan module names.

    The LoRA scale is ``alpha / rank``. DiffSynth trains with ``lora_alpha = rank`` and merges with scale 1, so
    without ``.alpha`` keys or ``lora_alpha`` the scale is 1 (alpha = rank). Every problem is collected and raised
    as one ValueError naming the offending keys.
    """
    keys = list(state_dict)
    prefix = _strip_prefix(keys)
    pairs: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    alphas: dict[tuple[int, str], float] = {}
    patch: dict[str, torch.Tensor] = {}
    unknown, not_adapted = [], []
    for key in keys:
        name = key[len(prefix):]
        if name in _PATCH_KEYS:
            patch[name] = state_dict[key]
            continue
        m = _LORA_KEY.match(name)
        if m is None:
            unknown.append(key)
            continue
        block, module, ab, is_alpha = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        if module in _NOT_ADAPTED:
            not_adapted.append(key)
        elif is_alpha:
            alphas[(block, module)] = float(state_dict[key].float().reshape(-1)[0])
        else:
            slot = pairs.setdefault((block, module), {})
            if ab in slot:
                raise ValueError(f"dit state dict: two lora_{ab} tensors for blocks.{block}.{module} "
                                 "(with and without '.default'?)")
            slot[ab] = state_dict[key]
    errors = []
    if unknown:
        errors.append(f"unknown keys {sorted(unknown)[:20]}{' …' if len(unknown) > 20 else ''} "
                      f"({len(unknown)} in all); expected blocks.N.{{self_attn,cross_attn}}.{{q,k,v,o}} and "
                      "blocks.N.ffn.{0,2} with .lora_A[.default].weight / .lora_B[.default].weight, and "
                      "patch_embedding.weight/.bias")
    if not_adapted:
        errors.append(f"LoRA on the image cross-attention projections, which our adapter never targets: "
                      f"{sorted(not_adapted)[:6]}")
    half = sorted(f"blocks.{b}.{m}.lora_{'B' if 'A' in s else 'A'}" for (b, m), s in pairs.items() if len(s) != 2)
    if half:
        errors.append(f"LoRA pairs missing their other half: {half[:10]}")
    if "patch_embedding.weight" not in patch:
        errors.append("no patch_embedding.weight (the widened 52-channel patch embedding)")
    if errors:
        raise ValueError("dit state dict: " + "; ".join(errors))
    if not pairs:
        raise ValueError("dit state dict: no LoRA weights found")

    pe_w = patch["patch_embedding.weight"]
    if pe_w.ndim != 5 or pe_w.shape[1] != WIDE_IN_CHANNELS:
        raise ValueError(f"patch_embedding.weight must be (inner, {WIDE_IN_CHANNELS}, 1, 2, 2) — the widened patch "
                         f"embedding — got {tuple(pe_w.shape)}")
    if "patch_embedding.bias" in patch and tuple(patch["patch_embedding.bias"].shape) != (pe_w.shape[0],):
        raise ValueError(f"patch_embedding.bias must be ({pe_w.shape[0]},), got "
                         f"{tuple(patch['patch_embedding.bias'].shape)}")

    ranks = {}
    state: dict[str, torch.Tensor] = {}
    for (block, module), ab in sorted(pairs.items()):
        a, b = ab["A"], ab["B"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise ValueError(f"blocks.{block}.{module}: lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)} must be "
                             "(r, in) and (out, r)")
        ranks[(block, module)] = a.shape[0]
        target = f"{_PEFT_PREFIX}blocks.{block}.{DIT_MODULE_NAMES[module]}"
        state[f"{target}.lora_A.weight"] = a.float().contiguous()
        state[f"{target}.lora_B.weight"] = b.float().contiguous()
    if len(set(ranks.values())) != 1:
        raise ValueError(f"dit state dict: LoRA ranks differ between modules {sorted(set(ranks.values()))}; "
                         "a single rank is supported")
    rank = next(iter(ranks.values()))
    scales = {alphas[k] / ranks[k] for k in alphas}
    if lora_alpha is None:
        if len(scales) > 1:
            raise ValueError(f"dit state dict: the .alpha keys give different scales {sorted(scales)}")
        lora_alpha = scales.pop() * rank if scales else float(rank)
    blocks = sorted({b for b, _ in pairs})
    full = {(b, m) for b in blocks for m in DIT_MODULE_NAMES}
    if set(pairs) == full and blocks == list(range(len(blocks))):
        target_modules = LORA_TARGET_REGEX
    else:  # a partial adapter: name exactly the adapted modules so peft injects nothing else
        names = sorted(f"blocks.{b}.{DIT_MODULE_NAMES[m]}" for b, m in pairs)
        target_modules = "(?:" + "|".join(re.escape(n) for n in names) + ")"
    pe = {"patch_embedding.weight": pe_w.float().contiguous()}
    if "patch_embedding.bias" in patch:
        pe["patch_embedding.bias"] = patch["patch_embedding.bias"].float().contiguous()
    return ConvertedLoRA(state=state, rank=rank, alpha=float(lora_alpha), target_modules=target_modules,
                         num_blocks=len(blocks), patch_embedding=pe)


def convert_hand(state_dict: Mapping[str, torch.Tensor], config: Mapping | None = None):
    """The authors' hand-controller weights → an ``occlusion="upstream"`` :class:`HandControlModule`.

    Any common key prefix (``state.``, ``hand_encoder.`` …) is stripped. Without a config, the sizes come from the
    weight shapes and the rest from the module's defaults (which are the authors' values).
    """
    from worldmodel.control.module import UPSTREAM_NAMES, HandControlModule

    names = list(state_dict)
    prefix = ""
    for key in names:
        for up in UPSTREAM_NAMES:
            if key.endswith(up):
                cand = key[: len(key) - len(up)]
                if all(k.startswith(cand) for k in names):
                    prefix = cand
                break
        if prefix:
            break
    stripped = {k[len(prefix):]: v for k, v in state_dict.items()}
    unknown = sorted(set(stripped) - set(UPSTREAM_NAMES))
    missing = sorted(set(UPSTREAM_NAMES) - set(stripped))
    if unknown or missing:
        raise ValueError(f"hand controller state dict: unknown keys {unknown}, missing keys {missing}; expected the "
                         f"authors' names {sorted(UPSTREAM_NAMES)}")
    cfg = dict(config or {})
    if not cfg:
        half = stripped["coord_encoder.2.weight"].shape[0]
        embed = 2 * half
        cfg = {"num_joints": stripped["joint_id_embed.weight"].shape[0], "embed_dim": embed,
               "vae_channels": stripped["causal_conv1.weight"].shape[1] - embed,
               "output_dim": stripped["causal_conv2.weight"].shape[0]}
    return HandControlModule.from_upstream(stripped, **cfg)


def convert_upstream(dit: str | os.PathLike, hand: str | os.PathLike | None, out: str | os.PathLike, *,
                     base_path: str | os.PathLike | None = None, hand_config: Mapping | None = None,
                     lora_alpha: float | None = None, height: int = 480, width: int = 832,
                     num_frames: int = 81) -> Path:
    """Write a pipeline folder at ``out`` from the authors' ``dit`` and ``hand`` weight files
    (``hand=None``: ``dit`` is DiffSynth's one training file holding both).

    ``base_path`` (a local diffusers-format Wan 2.1 I2V directory) is recorded as the folder's base model; it is also
    where the patch-embedding bias comes from when ``dit`` has none. ``hand_config`` overrides the constructor values
    (else the hand file's ``config`` metadata, else shapes + defaults). ``height``/``width``/``num_frames`` become the
    folder's sampling defaults beside the authors' steps, guidance, shift, sampler and CLIP preprocessing.
    """
    from peft import LoraConfig
    from safetensors.torch import save_file

    from worldmodel.wan.pretrained import WAN_CLASSES, base_classes, write_folder
    from worldmodel.wan.sampling import UPSTREAM_DEFAULTS, upstream_scheduler

    if num_frames < 1 or (num_frames - 1) % 4:
        raise ValueError(f"num_frames must be 4k+1, got {num_frames}")
    for name, v in (("height", height), ("width", width)):
        if v <= 0 or v % 16:
            raise ValueError(f"{name} must be a positive multiple of 16, got {v}")
    dit_state, hand_state, hand_meta = load_upstream(dit, hand)
    hand = dit if hand is None else hand  # where the controller came from, for the record
    lora = convert_dit_lora(dit_state, lora_alpha=lora_alpha)
    if hand_config is None and "config" in hand_meta:
        hand_config = json.loads(hand_meta["config"])
    control = convert_hand(hand_state, hand_config)
    if "patch_embedding.bias" not in lora.patch_embedding:
        if base_path is None:
            raise ValueError(f"{dit} has no patch_embedding.bias; pass base_path= (--base-path) so the base model's "
                             "bias can be used")
        lora.patch_embedding["patch_embedding.bias"] = _base_patch_bias(Path(base_path))
    base = None if base_path is None else Path(base_path).expanduser().resolve()

    def write_lora(directory: Path) -> None:
        directory.mkdir()
        LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=0.0, init_lora_weights=True,
                   target_modules=lora.target_modules).save_pretrained(directory)
        save_file(lora.state, directory / LORA_WEIGHTS, metadata={"format": "pt"})

    out = write_folder(out, control=control, scheduler=upstream_scheduler(UPSTREAM_DEFAULTS.shift),
                       sampling=dataclasses.replace(UPSTREAM_DEFAULTS, height=height, width=width,
                                                    num_frames=num_frames),
                       image_processor=_uncropped_clip_processor(base), base_model=None if base is None else str(base),
                       patch_embedding=lora.patch_embedding, lora_dir_writer=write_lora,
                       classes=WAN_CLASSES if base is None else base_classes(base))
    (out / CONVERSION_FILE).write_text(json.dumps({
        "dit": str(Path(dit).resolve()), "hand": str(Path(hand).resolve()), "lora_blocks": lora.num_blocks,
        "lora_rank": lora.rank, "lora_alpha": lora.alpha}, indent=2) + "\n")
    return out


def _uncropped_clip_processor(base: Path | None):
    """The base's CLIP image processor (CLIP's 224² and normalisation without one) set to resize without cropping.

    The pipeline itself follows the folder's ``clip_preprocess = "resize"`` (the authors' torch bicubic resize of the
    whole frame); this keeps a plain diffusers user of the folder from centre-cropping too.
    """
    from transformers import CLIPImageProcessor

    proc = CLIPImageProcessor() if base is None or not (base / "image_processor").is_dir() else \
        CLIPImageProcessor.from_pretrained(base / "image_processor", local_files_only=True)
    side = proc.crop_size.get("height", 224) if proc.crop_size else 224
    proc.do_center_crop = False
    proc.size = {"height": side, "width": side}
    return proc


def _base_patch_bias(base: Path) -> torch.Tensor:
    """``patch_embedding.bias`` from a diffusers transformer folder, reading only that tensor."""
    from safetensors import safe_open

    files = sorted((base / "transformer").glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{base}: no transformer/*.safetensors to take patch_embedding.bias from")
    for f in files:
        with safe_open(os.fspath(f), framework="pt") as st:
            if "patch_embedding.bias" in st.keys():  # noqa: SIM118
                return st.get_tensor("patch_embedding.bias").float().contiguous()
    raise ValueError(f"{base}: the transformer weights have no patch_embedding.bias")
