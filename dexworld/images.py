"""Reading the reference images users pass and writing the ones commands make (one-line errors naming the file)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_image(path: str | os.PathLike, name: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file; a one-line error naming ``name`` if it is missing or not an image."""
    import PIL.Image

    if not Path(path).is_file():
        raise FileNotFoundError(f"{name} {path}: no such image file")
    try:
        with PIL.Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as e:
        raise ValueError(f"{name} {path}: not a readable image (expected PNG, JPEG, ...; {type(e).__name__})") \
            from None


def save_image(path: str | os.PathLike, frame: np.ndarray, name: str = "image") -> None:
    """Write one (H, W, 3) uint8 frame as a PNG or JPEG (from the suffix), atomically."""
    import PIL.Image

    from embodiments.io_utils import atomic_path

    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"{name} must end in .png or .jpg, got {path.name!r}")
    with atomic_path(path) as tmp:
        PIL.Image.fromarray(frame).save(tmp, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")
