"""Which checkpoint a command-line path means, checked before anything loads it.

``--checkpoint`` accepts a saved pipeline folder (``model_index.json``, what ``save_pretrained`` writes), a training
checkpoint folder (``dexworld_checkpoint.json``), a training run folder written by ``dexworld train`` (its
``latest`` checkpoint, else the highest ``checkpoint-N``) or, as ``from_pretrained`` does, the name of a model shipped
in ``worldmodel/checkpoints`` (``tiny-sim``, ``tiny-sim-bimanual``) when no such folder exists here.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from embodiments.io_utils import check_safetensors_file, read_json

META = "dexworld_checkpoint.json"
PIPELINE_INDEX = "model_index.json"
REQUIRED_WEIGHTS = ("patch_embedding.safetensors", "control/diffusion_pytorch_model.safetensors",
                    "lora/adapter_model.safetensors")


def shipped_model_for(hands: Iterable[str]) -> str:
    """The shipped model a command loads without ``--checkpoint`` for clips of ``hands`` (embodiment names):
    ``tiny-sim`` when every hand is a right hand, ``tiny-sim-bimanual`` (fine-tuned on two-hand and left-hand clips
    as well, docs/results.md) when any is a left hand, which ``tiny-sim`` never saw. The two record the same
    sampling defaults (size, frames, steps), so sources can be read before the choice is made."""
    import embodiments

    return "tiny-sim-bimanual" if any(embodiments.get(h).side == "left" for h in hands) else "tiny-sim"


def resolve_checkpoint(path: str | os.PathLike, name: str = "--checkpoint") -> Path:
    """The checkpoint folder ``path`` means (itself, or a run folder's latest checkpoint), with its weights checked."""
    path = Path(path)
    if not path.exists() and len(path.parts) == 1:  # a shipped model's name, as from_pretrained takes it
        from worldmodel.wan.presets import shipped_path

        with contextlib.suppress(FileNotFoundError):
            path = shipped_path(path.name)
    if not path.exists():
        raise FileNotFoundError(f"{name} {path}: no such folder")
    if not path.is_dir():
        raise ValueError(f"{name} {path}: expected a checkpoint folder or a training run folder, got a file")
    if not _is_model(path):
        path = latest_checkpoint(path, name)
    if (path / PIPELINE_INDEX).exists():
        check_pipeline_files(path, name)
    else:
        check_checkpoint_files(path, name)
    return path


def latest_checkpoint(run: Path, name: str = "--checkpoint") -> Path:
    """The checkpoint a run folder's ``latest`` file names, else its highest-numbered ``checkpoint-N``."""
    pointer = run / "latest"
    if pointer.is_file():
        target = run / pointer.read_text().strip()
        if _is_model(target):
            return target
    numbered = sorted((int(m.group(1)), p) for p in run.iterdir()
                      if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and _is_model(p))
    if not numbered:
        raise FileNotFoundError(f"{name} {run}: neither a saved model ({PIPELINE_INDEX}), a checkpoint folder "
                                f"({META}) nor a training run folder (no checkpoint-N inside)")
    return numbered[-1][1]


def _is_model(path: Path) -> bool:
    return (path / META).exists() or (path / PIPELINE_INDEX).exists()


def check_checkpoint_files(checkpoint: Path, name: str = "--checkpoint") -> None:
    """Every weights file a checkpoint needs is present and complete (a one-line error naming the file otherwise)."""
    for rel in REQUIRED_WEIGHTS:
        if not (checkpoint / rel).is_file():
            raise FileNotFoundError(f"{name} {checkpoint}: the checkpoint lacks {rel} (incomplete copy?)")
    check_weight_files(checkpoint, name)


# Components of a saved pipeline that carry weights (a prompt embedder, scheduler or processor has none).
WEIGHTED_COMPONENTS = ("transformer", "vae", "control", "image_encoder", "text_encoder")


def check_pipeline_files(folder: Path, name: str = "--checkpoint") -> None:
    """A saved pipeline folder: its index parses, every weighted component it lists has its weights (unless a base
    model folder provides them), a LoRA adapter folder has its weights, and every file is complete."""
    index = read_json(folder / PIPELINE_INDEX, f"{name}: model index")
    listed = [k for k, v in index.items() if isinstance(v, list) and len(v) == 2 and v[0] is not None]
    if index.get("base_model") is None:
        for comp in listed:
            if comp in WEIGHTED_COMPONENTS and not any((folder / comp).glob("*.safetensors*")):
                raise FileNotFoundError(f"{name} {folder}: the model lacks the weights of {comp}/ (incomplete copy?)")
    elif "control" in listed and not any((folder / "control").glob("*.safetensors*")):
        raise FileNotFoundError(f"{name} {folder}: the model lacks the weights of control/ (incomplete copy?)")
    lora = folder / "transformer_lora"
    if (lora / "adapter_config.json").exists() and not (lora / "adapter_model.safetensors").is_file():
        raise FileNotFoundError(f"{name} {folder}: the model lacks transformer_lora/adapter_model.safetensors "
                                "(incomplete copy?)")
    check_weight_files(folder, name)


def check_weight_files(checkpoint: Path, name: str = "--checkpoint") -> None:
    """Every JSON file of a folder parses and every safetensors file in it is complete."""
    for f in sorted(checkpoint.rglob("*.json")):
        read_json(f, f"{name}: checkpoint file")
    for f in sorted(checkpoint.rglob("*.safetensors")):
        check_safetensors_file(f, f"{name}: weights file")
