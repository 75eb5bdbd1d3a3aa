"""Which checkpoint a command-line path means, checked before anything loads it.

``--checkpoint`` accepts a checkpoint folder (``dexworld_checkpoint.json`` inside) or a training run folder written
by ``dexworld train`` (its ``latest`` checkpoint, else the highest ``checkpoint-N``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from embodiments.io_utils import check_safetensors_file, read_json

META = "dexworld_checkpoint.json"
REQUIRED_WEIGHTS = ("patch_embedding.safetensors", "control/diffusion_pytorch_model.safetensors",
                    "lora/adapter_model.safetensors")


def resolve_checkpoint(path: str | os.PathLike, name: str = "--checkpoint") -> Path:
    """The checkpoint folder ``path`` means (itself, or a run folder's latest checkpoint), with its weights checked."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{name} {path}: no such folder")
    if not path.is_dir():
        raise ValueError(f"{name} {path}: expected a checkpoint folder or a training run folder, got a file")
    if not (path / META).exists():
        path = latest_checkpoint(path, name)
    check_checkpoint_files(path, name)
    return path


def latest_checkpoint(run: Path, name: str = "--checkpoint") -> Path:
    """The checkpoint a run folder's ``latest`` file names, else its highest-numbered ``checkpoint-N``."""
    pointer = run / "latest"
    if pointer.is_file():
        target = run / pointer.read_text().strip()
        if (target / META).exists():
            return target
    numbered = sorted((int(m.group(1)), p) for p in run.iterdir()
                      if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and (p / META).exists())
    if not numbered:
        raise FileNotFoundError(f"{name} {run}: neither a checkpoint folder (no {META}) nor a training run folder "
                                "(no checkpoint-N inside)")
    return numbered[-1][1]


def check_checkpoint_files(checkpoint: Path, name: str = "--checkpoint") -> None:
    """Every weights file a checkpoint needs is present and complete (a one-line error naming the file otherwise)."""
    for f in sorted(checkpoint.rglob("*.json")):
        read_json(f, f"{name}: checkpoint file")
    for rel in REQUIRED_WEIGHTS:
        if not (checkpoint / rel).is_file():
            raise FileNotFoundError(f"{name} {checkpoint}: the checkpoint lacks {rel} (incomplete copy?)")
    for f in sorted(checkpoint.rglob("*.safetensors")):
        check_safetensors_file(f, f"{name}: weights file")
