"""Check our upstream-compatible control module against a reference vector file of the authors' module.

The file (safetensors) holds inputs ``joints``, ``K``, ``z0``, the authors' weights under ``state.*``, outputs
``out`` and ``occ_latent``, and the constructor values as JSON in the metadata key ``config``.
"""

from __future__ import annotations

import json
import os

import torch
from safetensors import safe_open

from embodiments.io_utils import check_safetensors_file
from worldmodel.control.module import HandControlModule

__all__ = ["check_reference", "TOLERANCE"]

TOLERANCE = 1e-5
_REQUIRED = ("joints", "K", "z0", "out", "occ_latent")


def check_reference(path: str | os.PathLike) -> dict:
    """Run ``HandControlModule.from_upstream`` on the file's inputs; max abs differences to its outputs.

    Returns {"out": float, "occ_latent": float, "passed": bool, "tolerance": float, "shape": tuple}.
    """
    check_safetensors_file(path, "reference vector file")
    with safe_open(os.fspath(path), framework="pt") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
    missing = [k for k in _REQUIRED if k not in tensors]
    if missing:
        raise ValueError(f"{path}: reference file lacks tensors {missing}")
    if "config" not in metadata:
        raise ValueError(f"{path}: reference file lacks the metadata key 'config' (JSON constructor values)")
    config = json.loads(metadata["config"])
    state = {k: v for k, v in tensors.items() if k.startswith("state.")}
    model = HandControlModule.from_upstream(state, **config).eval()
    with torch.no_grad():
        control, motion = model(tensors["joints"], tensors["K"], tensors["z0"])
    diffs = {
        "out": (control - tensors["out"]).abs().max().item(),
        "occ_latent": (motion - tensors["occ_latent"]).abs().max().item(),
    }
    return {
        **diffs,
        "passed": max(diffs.values()) <= TOLERANCE,
        "tolerance": TOLERANCE,
        "shape": tuple(control.shape),
    }
