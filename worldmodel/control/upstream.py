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


def check_reference(path: str | os.PathLike, dtype: torch.dtype = torch.float64) -> dict:
    """Run ``HandControlModule.from_upstream`` on the file's inputs; max abs differences to its outputs.

    The module runs in ``dtype``: float64 by default, as the reference files were computed (stored in float32);
    in float32 the rounding alone reaches ~1e-6 of the output's magnitude (1.3e-5 where the 21 zero-filled
    joints of a missing hand stack on cell (0, 0)). When the file has a ``present`` mask (B, T, N), the module
    runs twice: on the joints as given (zero-filled where not present) and with those joints NaN and marked
    invalid; both must match. Returns {"out", "occ_latent": the larger max abs difference over the runs,
    "runs": {name: {"out", "occ_latent"}}, "passed": bool, "tolerance": float, "shape": tuple}.
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
    torch.nn.Module.to(model, dtype)  # (ModelMixin.to warns about fp32 modules, of which this one has none)
    runs = {"as given": (tensors["joints"], None)}
    if "present" in tensors:  # the zero-filled joints again, as NaN marked invalid: must encode the same
        present = tensors["present"].to(torch.bool)
        if tuple(present.shape) != tuple(tensors["joints"].shape[:3]):
            raise ValueError(f"{path}: 'present' must be (B, T, N) = {tuple(tensors['joints'].shape[:3])}, "
                             f"got {tuple(present.shape)}")
        nan = torch.where(present[..., None], tensors["joints"], torch.full_like(tensors["joints"], float("nan")))
        runs["missing as NaN, marked invalid"] = (nan, present)
    diffs = {"out": 0.0, "occ_latent": 0.0}
    per_run = {}
    with torch.no_grad():
        for name, (joints, valid) in runs.items():
            control, motion = model(joints.to(dtype), tensors["K"].to(dtype), tensors["z0"].to(dtype), valid)
            d = {"out": (control.double() - tensors["out"].double()).abs().max().item(),
                 "occ_latent": (motion.double() - tensors["occ_latent"].double()).abs().max().item()}
            per_run[name] = d
            diffs = {k: max(diffs[k], d[k]) for k in diffs}
    return {
        **diffs,
        "runs": per_run,
        "passed": max(diffs.values()) <= TOLERANCE,
        "tolerance": TOLERANCE,
        "shape": tuple(control.shape),
    }
