"""Resumable probe training: the state :func:`~worldmodel.evaluation.probe_training.train_probe` saves while it runs.

A probe stage is an hour or more on a CPU; a killed run continues from its last saved step instead of starting
over. The state (network, AdamW, one-cycle schedule, the batch generator, losses so far) is one ``train_state.pt``
in the output folder, written atomically, read back with ``weights_only=True`` and removed once the probe is saved.
Continuing gives the same probe as an uninterrupted run: every random draw comes from the restored generator.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

TRAIN_STATE_FILE = "train_state.pt"


def train_fingerprint(embodiments: Sequence[str], size: int, num_renders: int, steps: int, batch_size: int,
                      lr: float, seed: int, hidden_weight: float = 1.0, sample_weights: Sequence[float] | None = None,
                      hand_style: str | None = None, two_hands: float = 0.0, **network) -> dict:
    """What a saved state must share with a run for the run to continue it (``network``: widths, head stride)."""
    return {"embodiments": list(embodiments), "size": int(size), "num_renders": int(num_renders),
            "steps": int(steps), "batch_size": int(batch_size), "lr": float(lr), "seed": int(seed),
            "hidden_weight": float(hidden_weight),
            "sample_weights": None if sample_weights is None else [float(w) for w in sample_weights],
            "hand_style": hand_style, "two_hands": float(two_hands),
            **{k: list(v) if isinstance(v, tuple | list) else v for k, v in network.items()}}


def read_train_state(out_dir: str | os.PathLike) -> dict | None:
    """The interrupted run's state saved in ``out_dir``, or None when there is none."""
    path = Path(out_dir) / TRAIN_STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: name it, never a traceback
        raise ValueError(f"{path}: not a readable probe training state ({str(e).splitlines()[0]}); delete it to "
                         "start over") from None
    if not isinstance(state, dict) or not {"fingerprint", "step", "model"} <= set(state):
        raise ValueError(f"{path}: not a probe training state (no fingerprint/step/model); delete it to start over")
    return state


def resume_mismatch(state: dict, fingerprint: dict) -> str | None:
    """Why ``state`` cannot continue a run of ``fingerprint`` (keys both record that differ), or None when it can."""
    saved = state["fingerprint"]
    diff = [f"{k} {saved[k]} (now {fingerprint[k]})" for k in fingerprint if k in saved and saved[k] != fingerprint[k]]
    return "; ".join(diff) or None


def save_train_state(out_dir: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``out_dir/train_state.pt`` atomically (a kill mid-write keeps the previous state)."""
    from embodiments.io_utils import atomic_path

    path = Path(out_dir) / TRAIN_STATE_FILE
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path
