"""Models shipped inside the repository, loaded by default by the demo, the editor and ``dexworld generate``."""

from __future__ import annotations

import os
from pathlib import Path

CHECKPOINTS = Path(__file__).parent / "checkpoints"
TINY_SIM = CHECKPOINTS / "tiny-sim"


def load_pipeline(checkpoint: str | os.PathLike | None = None, device: str | None = None):
    """A ready ``HandControlPipeline`` from ``checkpoint`` (default: the shipped tiny-sim model)."""
    import torch

    from .training import load_for_inference

    path = Path(checkpoint) if checkpoint is not None else TINY_SIM
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with 'dexworld train --preset tiny-sim' "
                                "or pass --checkpoint DIR")
    pipe = load_for_inference(path)
    return pipe.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
