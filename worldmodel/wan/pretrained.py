"""The pipeline folder behind ``HandControlPipeline.from_pretrained`` / ``save_pretrained`` (diffusers' layout).

::

    model_index.json      diffusers' index: [library, class] per component, plus ``sampling`` (the folder's
                          SamplingDefaults) and ``base_model`` (where components absent from the folder come from)
    transformer/          the widened (52-channel) Wan transformer under plain diffusers names (LoRA fused or not)
    transformer_lora/     the LoRA as a peft adapter (adapter_config.json + adapter_model.safetensors), if kept apart
    transformer_patch_embedding.safetensors   the widened patch embedding, when the transformer comes from base_model
    control/              HandControlModule, indexed as ["worldmodel.control.module", "HandControlModule"]
    vae/  scheduler/  image_encoder/  image_processor/  text_encoder/ + tokenizer/  or  prompt_embedder/

diffusers' own loader reads every subfolder (the control module and the tiny presets' prompt embedder through the
module path in the index); this module adds what diffusers has no notion of: the LoRA adapter beside the
transformer, components taken from a base model kept elsewhere (a 14B folder need not be copied), and the older
``dexworld_checkpoint.json`` folders (training checkpoints, earlier exports), which still load with a note to re-save.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import warnings
from pathlib import Path

import torch

from worldmodel.wan.adapter import (
    WIDE_IN_CHANNELS,
    base_state_dict,
    ensure_widened,
    load_lora,
    load_patch_embedding_state,
    lora_module_names,
    patch_embedding_state,
    save_lora,
)
from worldmodel.wan.checkpoint import checkpoint_base_dir, is_checkpoint, read_checkpoint
from worldmodel.wan.presets import SHIPPED_DIR, _own_storage
from worldmodel.wan.sampling import UPSTREAM_DEFAULTS, SamplingDefaults, upstream_scheduler

MODEL_INDEX = "model_index.json"
LORA_DIR = "transformer_lora"
PATCH_FILE = "transformer_patch_embedding.safetensors"
LORA_MODES = ("adapter", "fused")
# Components whose weights a folder may leave to its base model; scheduler, image processor and control module
# (configs, or trained here) are always written.
BASE_COMPONENTS = ("transformer", "vae", "image_encoder", "text_encoder", "tokenizer", "prompt_embedder")
# What a Wan 2.1 I2V base folder holds, for folders written without the base at hand (the converter).
WAN_CLASSES = {"transformer": ["diffusers", "WanTransformer3DModel"], "vae": ["diffusers", "AutoencoderKLWan"],
               "image_encoder": ["transformers", "CLIPVisionModel"],
               "image_processor": ["transformers", "CLIPImageProcessor"],
               "text_encoder": ["transformers", "UMT5EncoderModel"], "tokenizer": ["transformers", "AutoTokenizer"],
               "prompt_embedder": [None, None]}
PROMPT_EMBEDDER = ["worldmodel.wan.prompt", "HashPromptEmbedder"]


# ---------------------------------------------------------------------------------------------------- loading
def resolve(path: str | os.PathLike) -> Path:
    """A folder path, or the name of a model shipped in the repository (``"tiny-sim"``)."""
    p = Path(path).expanduser()
    if not p.exists() and (SHIPPED_DIR / str(path)).is_dir() and os.sep not in str(path):
        p = SHIPPED_DIR / str(path)
    if not p.is_dir():
        raise FileNotFoundError(f"no model folder at {p}: pass a folder written by save_pretrained, a dexworld "
                                "checkpoint folder or a shipped model name ('tiny-sim')")
    return p


def load(cls, path: str | os.PathLike, torch_dtype: torch.dtype = torch.float32,
         base: str | os.PathLike | None = None):
    """``cls`` (HandControlPipeline) from a pipeline folder or an older dexworld checkpoint folder."""
    folder = resolve(path)
    if not (folder / MODEL_INDEX).is_file():
        if is_checkpoint(folder):
            return _load_checkpoint(cls, folder, torch_dtype, base)
        raise FileNotFoundError(f"{folder} is not a saved pipeline (no {MODEL_INDEX}) nor a dexworld checkpoint "
                                "(no dexworld_checkpoint.json)")
    index = json.loads((folder / MODEL_INDEX).read_text())
    if index.get("_class_name") != cls.__name__:
        raise ValueError(f"{folder / MODEL_INDEX}: a {index.get('_class_name')} folder, not a {cls.__name__} one"
                         + ("; use it as the base model (base=...) of a hand-control folder"
                            if index.get("_class_name") == "WanImageToVideoPipeline" else ""))
    base_dir = _base_dir(folder, base if base is not None else index.get("base_model"))
    passed, from_base = {}, set()
    for name in BASE_COMPONENTS:
        entry = index.get(name)
        if not _is_component(entry) or (folder / name).is_dir():
            continue
        if base_dir is None:
            raise FileNotFoundError(f"{folder}: no {name}/ subfolder and no base model named; pass base= (the local "
                                    "diffusers-format Wan 2.1 I2V folder it was saved against)")
        passed[name] = _load_component(entry, base_dir / name, torch_dtype if name in ("transformer",
                                                                                       "text_encoder") else None)
        from_base.add(name)
    from diffusers import DiffusionPipeline

    dtypes = {"transformer": torch_dtype, "text_encoder": torch_dtype, "default": torch.float32}
    # diffusers' own loader (the class method, run for our class): every subfolder, by the [library, class] it names.
    pipe = DiffusionPipeline.from_pretrained.__func__(cls, folder, dtype=dtypes, local_files_only=True,
                                                      base_model=None if base_dir is None else str(base_dir), **passed)
    transformer = pipe.transformer
    if pipe.control is None or transformer is None:
        missing = "control module" if pipe.control is None else "transformer"
        raise ValueError(f"{folder / MODEL_INDEX} names no {missing}; a hand-control pipeline needs both")
    if "transformer" in from_base:
        from safetensors.torch import load_file

        ensure_widened(transformer)
        if not (folder / PATCH_FILE).is_file():
            raise FileNotFoundError(f"{folder}: the transformer comes from the base model but {PATCH_FILE} is missing")
        load_patch_embedding_state(transformer, load_file(folder / PATCH_FILE))
    elif transformer.config.in_channels != WIDE_IN_CHANNELS:
        raise ValueError(f"{folder}/transformer takes {transformer.config.in_channels} input channels, expected the "
                         f"widened {WIDE_IN_CHANNELS}")
    # Fresh, aligned storage as presets.load_local gives (CPU kernels round by alignment; bitwise-equal frames).
    for m in (pipe.transformer, pipe.vae, pipe.image_encoder, pipe.text_encoder):
        _own_storage(m)
    if (folder / LORA_DIR).is_dir():
        load_lora(transformer, folder / LORA_DIR)
    transformer.eval()
    pipe.control.eval()
    pipe._base_components = frozenset(from_base)
    return pipe


def _load_checkpoint(cls, folder: Path, torch_dtype, base):
    """An older ``dexworld_checkpoint.json`` folder: the same pipeline, and a note to re-save."""
    warnings.warn(f"{folder} is a dexworld checkpoint folder (the layout before pipeline folders); it loads, but "
                  "training checkpoints are for resuming: for inference re-save it with "
                  "HandControlPipeline.from_pretrained(PATH).save_pretrained(DIR)", UserWarning, stacklevel=4)
    components, control, meta = read_checkpoint(folder, base_path=base, torch_dtype=torch_dtype)
    pipe = cls.from_components(components, control)
    if "converted_from" in meta:  # written by the converter before pipeline folders: sample as the authors do
        pipe.register_modules(scheduler=upstream_scheduler(UPSTREAM_DEFAULTS.shift))
        pipe.defaults = dataclasses.replace(UPSTREAM_DEFAULTS, height=meta["height"], width=meta["width"],
                                            num_frames=meta["num_frames"])
    base_dir = checkpoint_base_dir(folder, meta, base).resolve()
    if folder.resolve() not in base_dir.parents:  # a base kept elsewhere (the 14B model): re-saves stay small
        pipe.register_to_config(base_model=str(base_dir))
        trained_base = (folder / "transformer.safetensors").exists()
        pipe._base_components = frozenset(n for n in BASE_COMPONENTS if not (trained_base and n == "transformer"))
    return pipe


def _base_dir(folder: Path, base) -> Path | None:
    if base is None:
        return None
    base = Path(base).expanduser()
    base = base if base.is_absolute() else folder / base
    if not base.is_dir():
        raise FileNotFoundError(f"base model folder {base} (named by {folder / MODEL_INDEX}) does not exist; pass "
                                "base= the local diffusers-format Wan 2.1 I2V folder")
    return base.resolve()


def _is_component(entry) -> bool:
    return isinstance(entry, list | tuple) and len(entry) == 2 and entry[0] is not None


def _load_component(entry, directory: Path, torch_dtype):
    """One component from a base folder, by the [library, class] the index names (local files only)."""
    if not directory.is_dir():
        raise FileNotFoundError(f"the base model has no {directory.name}/ subfolder at {directory}")
    obj = getattr(importlib.import_module(entry[0]), entry[1])
    kw = {}
    if issubclass(obj, torch.nn.Module):
        from transformers import PreTrainedModel

        kw["dtype" if issubclass(obj, PreTrainedModel) else "torch_dtype"] = torch_dtype or torch.float32
    if entry[0] in ("diffusers", "transformers"):
        kw["local_files_only"] = True
    module = obj.from_pretrained(directory, **kw)
    return module.eval() if isinstance(module, torch.nn.Module) else module


# ---------------------------------------------------------------------------------------------------- saving
def save(pipe, directory: str | os.PathLike, lora: str = "adapter", base: str | os.PathLike | None = None,
         self_contained: bool = False) -> Path:
    """Write ``pipe`` as a pipeline folder (atomically: a temporary folder, then a rename).

    ``lora``: ``"adapter"`` keeps the LoRA as a peft adapter in ``transformer_lora/``; ``"fused"`` writes
    W + s·B·A into the transformer. ``base``: a base model folder whose VAE, encoders, text side and transformer base
    weights the pipeline shares: they are not written and the folder names the base instead (stays small).
    Default: as loaded (a pipeline read from a folder naming a base keeps naming it); ``self_contained=True``
    writes everything.
    """
    from embodiments.io_utils import atomic_dir

    if lora not in LORA_MODES:
        raise ValueError(f"lora must be one of {LORA_MODES}, got {lora!r}")
    directory = Path(directory)
    _check_target(directory)
    if base is not None:
        base_model, skip = str(Path(base).expanduser().resolve()), set(BASE_COMPONENTS)
    elif self_contained or pipe.config.get("base_model") is None:
        base_model, skip = None, set()
    else:
        base_model, skip = pipe.config.base_model, set(getattr(pipe, "_base_components", ()))
    transformer = pipe.transformer
    has_lora = bool(lora_module_names(transformer))
    if lora == "fused" and has_lora:
        skip.discard("transformer")  # fused weights differ from the base everywhere
    index = {k: v for k, v in pipe.config.items() if not k.startswith("_")}
    index.update(_class_name=type(pipe).__name__, _diffusers_version=_diffusers_version(), base_model=base_model,
                 sampling=pipe.defaults.to_dict())
    for name in ("control", "prompt_embedder"):  # our classes by full module path (diffusers' guess would take
        module = getattr(pipe, name, None)        # worldmodel.wan.* for its own pipelines/wan package)
        index[name] = [None, None] if module is None else [type(module).__module__, type(module).__name__]
    with atomic_dir(directory) as tmp:
        if "transformer" in skip:
            from safetensors.torch import save_file

            save_file(patch_embedding_state(transformer), tmp / PATCH_FILE)
        else:
            save_transformer(transformer, tmp / "transformer", fused=lora == "fused")
        if has_lora and lora == "adapter":
            save_lora(transformer, tmp / LORA_DIR)
        for name in ("vae", "image_encoder", "text_encoder", "tokenizer", "prompt_embedder"):
            module = getattr(pipe, name, None)
            if module is not None and name not in skip:
                module.save_pretrained(tmp / name)
        for name in ("scheduler", "image_processor"):
            if getattr(pipe, name, None) is not None:
                getattr(pipe, name).save_pretrained(tmp / name)
        pipe.control.save_pretrained(tmp / "control")
        (tmp / MODEL_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return directory


def _check_target(directory: Path) -> None:
    """Saving replaces the folder: refuse one that holds anything but a saved model (the user's files)."""
    if directory.exists() and (not directory.is_dir() or (any(directory.iterdir()) and not (
            (directory / MODEL_INDEX).is_file() or is_checkpoint(directory)))):
        raise FileExistsError(f"{directory} exists and is not a saved pipeline; choose a new or empty folder")


def save_transformer(transformer: torch.nn.Module, directory: Path, fused: bool = False) -> None:
    """The transformer in diffusers' model layout under its plain names (peft's wrappers removed).

    ``fused``: each LoRA layer's weight becomes W + Δ with Δ = peft's own ``get_delta_weight`` (what peft's merge adds),
    computed on copies, so the pipeline keeps its adapter. Sharded safetensors via ``huggingface_hub`` as diffusers
    writes them.
    """
    from huggingface_hub import save_torch_state_dict
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    state = base_state_dict(transformer)
    if fused:
        for name in lora_module_names(transformer):
            layer = transformer.get_submodule(name)
            with torch.no_grad():
                for adapter in layer.active_adapters:
                    w = state[f"{name}.weight"]  # as peft's in-place merge: add in the promoted dtype, then cast
                    state[f"{name}.weight"] = (w + layer.get_delta_weight(adapter)).to(w.dtype).contiguous()
    directory.mkdir(parents=True)
    transformer.save_config(directory)
    quiet = are_progress_bars_disabled()
    disable_progress_bars()  # no shard-writing bar inside a save (or a command's own progress display)
    try:
        save_torch_state_dict(state, directory, filename_pattern="diffusion_pytorch_model{suffix}.safetensors",
                              max_shard_size="10GB")
    finally:
        if not quiet:
            enable_progress_bars()


def write_folder(directory: str | os.PathLike, *, control, sampling: SamplingDefaults, scheduler, image_processor,
                 base_model: str | None, patch_embedding: dict, lora_dir_writer, classes: dict | None = None) -> Path:
    """A pipeline folder without a loaded pipeline (the converter): control, LoRA, patch embedding, configs.

    Every other component comes from ``base_model`` (None: passed as ``base=`` when loading). ``lora_dir_writer``
    writes the peft adapter folder it is given; ``classes`` overrides :data:`WAN_CLASSES` entries.
    """
    from safetensors.torch import save_file

    from embodiments.io_utils import atomic_dir

    _check_target(Path(directory))
    classes = {**WAN_CLASSES, **(classes or {})}
    index = {"_class_name": "HandControlPipeline", "_diffusers_version": _diffusers_version(),
             "base_model": base_model, "sampling": sampling.to_dict(), "boundary_ratio": None,
             "expand_timesteps": False, "transformer_2": [None, None],
             "control": ["worldmodel.control.module", "HandControlModule"],
             "scheduler": ["diffusers", type(scheduler).__name__], **classes}
    with atomic_dir(directory) as tmp:
        save_file(patch_embedding, tmp / PATCH_FILE)
        lora_dir_writer(tmp / LORA_DIR)
        control.save_pretrained(tmp / "control")
        scheduler.save_pretrained(tmp / "scheduler")
        image_processor.save_pretrained(tmp / "image_processor")
        (tmp / MODEL_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return Path(directory)


def base_classes(base: Path) -> dict:
    """[library, class] of the text side a base folder holds (UMT5 + tokenizer, or the tiny prompt embedder)."""
    text = {"text_encoder": [None, None], "tokenizer": [None, None], "prompt_embedder": [None, None]}
    if (base / "prompt_embedder").is_dir():
        text["prompt_embedder"] = PROMPT_EMBEDDER
    else:
        text.update(text_encoder=WAN_CLASSES["text_encoder"], tokenizer=WAN_CLASSES["tokenizer"])
    if not (base / "image_encoder").is_dir():
        text.update(image_encoder=[None, None])
    return text


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__


__all__ = ["LORA_DIR", "MODEL_INDEX", "PATCH_FILE", "base_classes", "load", "resolve", "save", "save_transformer",
           "write_folder"]
