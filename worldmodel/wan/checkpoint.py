"""The training checkpoint folder (``dexworld_checkpoint.json`` + ``control/``, ``lora/``, patch embedding, base).

Training runs write it (with optimiser state for exact resume); exports before the pipeline-folder layout used it
too. :func:`read_checkpoint` turns one into components + control module + metadata for
``HandControlPipeline.from_pretrained``; this module sits below the pipeline and never imports it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from worldmodel.wan.adapter import ensure_widened, load_base_state_dict, load_lora, load_patch_embedding_state

CHECKPOINT_KIND = "dexworld.hand_control_checkpoint"
CHECKPOINT_FILE = "dexworld_checkpoint.json"
TRANSFORMER_WEIGHTS = "transformer.safetensors"  # whole-transformer weights of train_base runs
CHECKPOINT_VERSION = 1


def is_checkpoint(path: str | os.PathLike) -> bool:
    return (Path(path) / CHECKPOINT_FILE).is_file()


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The JSON a checkpoint carries; a clear error if ``path`` is not a dexworld checkpoint."""
    path = Path(path)
    f = path / CHECKPOINT_FILE
    if not f.exists():
        raise FileNotFoundError(f"{path} is not a dexworld checkpoint (no {CHECKPOINT_FILE})")
    meta = json.loads(f.read_text())
    if meta.get("kind") != CHECKPOINT_KIND or meta.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: unsupported checkpoint kind/version {meta.get('kind')}/{meta.get('version')}")
    return meta


def read_checkpoint(checkpoint: str | os.PathLike, base_path: str | os.PathLike | None = None,
                    torch_dtype: torch.dtype = torch.float32):
    """Base components with the trained LoRA, patch embedding (and base weights), the control module, the metadata.

    Returns ``(components, control, meta)``; ``components.defaults`` carries the checkpoint's frame size and count.
    """
    from safetensors.torch import load_file

    from worldmodel.control.module import HandControlModule
    from worldmodel.wan.presets import load_local

    checkpoint = Path(checkpoint)
    meta = read_checkpoint_meta(checkpoint)
    components = load_local(checkpoint_base_dir(checkpoint, meta, base_path), torch_dtype=torch_dtype)
    ensure_widened(components.transformer)
    if (checkpoint / TRANSFORMER_WEIGHTS).exists():
        load_base_state_dict(components.transformer, load_file(checkpoint / TRANSFORMER_WEIGHTS))
    load_lora(components.transformer, checkpoint / "lora")
    load_patch_embedding_state(components.transformer, load_file(checkpoint / "patch_embedding.safetensors"))
    control_dir = checkpoint / "control"
    cls_name = json.loads((control_dir / "config.json").read_text()).get("_class_name", "HandControlModule")
    if cls_name != "HandControlModule":
        raise ValueError(f"{control_dir}: unknown control module class {cls_name!r}")
    control = HandControlModule.from_pretrained(control_dir)
    components.transformer.eval()
    control.eval()
    components.defaults = dataclasses.replace(components.defaults, height=meta["height"], width=meta["width"],
                                              num_frames=meta["num_frames"])
    return components, control, meta


def checkpoint_base_dir(checkpoint: Path, meta: dict, base_path=None) -> Path:
    """The base directory a checkpoint names; a relative path is relative to the checkpoint (exported models)."""
    base = base_path or meta.get("base_path")
    if base is None:
        raise ValueError(f"{checkpoint}: the checkpoint names no base model; pass base_path=")
    base = Path(base)
    return base if base.is_absolute() or base_path is not None else checkpoint / base
