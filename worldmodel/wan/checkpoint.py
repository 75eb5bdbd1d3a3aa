"""The dexworld checkpoint folder (``dexworld_checkpoint.json`` + ``control/``, ``lora/``, patch embedding, base).

Training runs write it (with optimiser state for exact resume) and older exports use it; loading one for
inference lives here, below training, so that the pipeline never needs the trainer.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from embodiments.io_utils import atomic_dir
from worldmodel.wan.adapter import ensure_widened, load_base_state_dict, load_lora, load_patch_embedding_state

CHECKPOINT_KIND = "dexworld.hand_control_checkpoint"
TRANSFORMER_WEIGHTS = "transformer.safetensors"  # whole-transformer weights of train_base runs
CHECKPOINT_VERSION = 1


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The JSON a checkpoint carries; a clear error if ``path`` is not a dexworld checkpoint."""
    path = Path(path)
    f = path / "dexworld_checkpoint.json"
    if not f.exists():
        raise FileNotFoundError(f"{path} is not a dexworld checkpoint (no dexworld_checkpoint.json)")
    meta = json.loads(f.read_text())
    if meta.get("kind") != CHECKPOINT_KIND or meta.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: unsupported checkpoint kind/version {meta.get('kind')}/{meta.get('version')}")
    return meta


def load_for_inference(checkpoint: str | os.PathLike, base_path: str | os.PathLike | None = None,
                       torch_dtype: torch.dtype = torch.float32):
    """Base components + trained control module, LoRA and patch embedding → a ready ``HandControlPipeline``."""
    from safetensors.torch import load_file

    from worldmodel.wan.pipeline import HandControlPipeline
    from worldmodel.wan.presets import load_local

    checkpoint = Path(checkpoint)
    meta = read_checkpoint_meta(checkpoint)
    components = load_local(_base_dir(checkpoint, meta, base_path), torch_dtype=torch_dtype)
    ensure_widened(components.transformer)
    if (checkpoint / TRANSFORMER_WEIGHTS).exists():
        load_base_state_dict(components.transformer, load_file(checkpoint / TRANSFORMER_WEIGHTS))
    load_lora(components.transformer, checkpoint / "lora")
    load_patch_embedding_state(components.transformer, load_file(checkpoint / "patch_embedding.safetensors"))
    control_dir = checkpoint / "control"
    cls_name = json.loads((control_dir / "config.json").read_text()).get("_class_name", "HandControlModule")
    if cls_name == "HandControlModule":
        from worldmodel.control.module import HandControlModule as cls
    else:
        raise ValueError(f"{control_dir}: unknown control module class {cls_name!r}")
    control = cls.from_pretrained(control_dir)
    components.transformer.eval()
    control.eval()
    pipe = HandControlPipeline.from_components(components, control)
    pipe.defaults = dataclasses.replace(components.defaults, height=meta["height"], width=meta["width"],
                                        num_frames=meta["num_frames"])
    return pipe


def _base_dir(checkpoint: Path, meta: dict, base_path=None) -> Path:
    """The base directory a checkpoint names; a relative path is relative to the checkpoint (exported models)."""
    base = base_path or meta.get("base_path")
    if base is None:
        raise ValueError(f"{checkpoint}: the checkpoint names no base model; pass base_path=")
    base = Path(base)
    return base if base.is_absolute() or base_path is not None else checkpoint / base


def export_for_inference(checkpoint: str | os.PathLike, out: str | os.PathLike,
                         base_path: str | os.PathLike | None = None) -> Path:
    """Write a self-contained inference folder: ``base/`` + control, LoRA, patch embedding and metadata.

    The base transformer is written with the checkpoint's trained weights (``train_base`` runs) and the widened
    patch embedding, so the folder needs nothing else: :func:`load_for_inference` (and
    ``presets.load_shipped``) read it through the same code as a training checkpoint. No optimiser state.
    """
    import shutil

    from safetensors.torch import load_file

    from worldmodel.wan.presets import load_local

    checkpoint, out = Path(checkpoint), Path(out)
    meta = read_checkpoint_meta(checkpoint)
    components = load_local(_base_dir(checkpoint, meta, base_path))
    ensure_widened(components.transformer)
    if (checkpoint / TRANSFORMER_WEIGHTS).exists():
        load_base_state_dict(components.transformer, load_file(checkpoint / TRANSFORMER_WEIGHTS))
    load_patch_embedding_state(components.transformer, load_file(checkpoint / "patch_embedding.safetensors"))
    meta = {**meta, "base_path": "base", "exported_from": str(checkpoint),
            "config": {**meta.get("config", {}), "base_path": "base"}}
    with atomic_dir(out) as tmp:
        components.save(tmp / "base")
        shutil.copytree(checkpoint / "control", tmp / "control")
        shutil.copytree(checkpoint / "lora", tmp / "lora")
        shutil.copy2(checkpoint / "patch_embedding.safetensors", tmp / "patch_embedding.safetensors")
        (tmp / "dexworld_checkpoint.json").write_text(json.dumps(meta, indent=2))
    return out
